package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/tokens"
	"github.com/mohr-hix/mohr/tokens/sqlstore"
)

// TestPhysicianHistory checks, on SQLite and PostgreSQL, that every standing change of a physician is kept with
// its effective time and audited in the import's transaction, and that the schema migration gives physicians
// stored before the history one entry (audited once, not again at the next start).
func TestPhysicianHistory(t *testing.T) {
	for _, d := range []struct {
		name    string
		open    func(*testing.T) *sql.DB
		dialect string
	}{{"sqlite", openSQLite, "sqlite"}, {"postgres", freshPostgres, "postgres"}} {
		t.Run(d.name, func(t *testing.T) { testPhysicianHistory(t, d.open(t), d.dialect) })
	}
}

func testPhysicianHistory(t *testing.T, db *sql.DB, dialect string) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	s, err := sqlstore.New(ctx, db, sqlstore.Options{Dialect: dialect, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	svc := &tokens.Service{Store: s, Clock: clock}
	p := tokens.Physician{NationalCode: "0499370899", CouncilNo: "12345", Name: "Dr A", Specialty: "GP",
		Status: tokens.StatusActive, ValidFrom: t0.AddDate(-2, 0, 0), ValidUntil: t0.AddDate(2, 0, 0)}
	if err := svc.ImportPhysicians(ctx, []tokens.Physician{p}, "cli:ra"); err != nil {
		t.Fatal(err)
	}
	// The same again, a name change only: no new standing.
	now = now.Add(time.Hour)
	p.Name = "Dr A. B."
	if err := svc.ImportPhysicians(ctx, []tokens.Physician{p}, "cli:ra"); err != nil {
		t.Fatal(err)
	}
	// Suspended, effective at the import.
	now = now.Add(time.Hour)
	suspendedAt := now
	p.Status = tokens.StatusSuspended
	if err := svc.ImportPhysicians(ctx, []tokens.Physician{p}, "cli:ra"); err != nil {
		t.Fatal(err)
	}
	// Reinstated, with the registry's own effective time (earlier than the import).
	now = now.Add(48 * time.Hour)
	p.Status, p.StatusSince = tokens.StatusActive, now.Add(-24*time.Hour)
	if err := svc.ImportPhysicians(ctx, []tokens.Physician{p}, "api:ra-officer"); err != nil {
		t.Fatal(err)
	}
	h, err := s.PhysicianHistory(ctx, p.NationalCode)
	if err != nil || len(h) != 3 {
		t.Fatalf("history %+v %v", h, err)
	}
	want := []struct {
		st  tokens.Status
		eff time.Time
	}{{tokens.StatusActive, p.ValidFrom}, {tokens.StatusSuspended, suspendedAt}, {tokens.StatusActive, p.StatusSince}}
	for i, w := range want {
		if h[i].Status != w.st || !h[i].EffectiveAt.Equal(w.eff) || h[i].CouncilNo != "12345" {
			t.Errorf("entry %d = %+v, want %s from %s", i, h[i], w.st, w.eff)
		}
	}
	if h[2].Actor != "api:ra-officer" || !h[2].RecordedAt.Equal(now) {
		t.Errorf("entry 2 recorded %+v", h[2])
	}
	bp, bh, err := s.PhysicianByCouncilWithHistory(ctx, "12345")
	if err != nil || bp.NationalCode != p.NationalCode || bp.Status != tokens.StatusActive || len(bh) != len(h) || !bh[1].EffectiveAt.Equal(h[1].EffectiveAt) {
		t.Fatalf("one-query lookup %+v %+v %v", bp, bh, err)
	}
	if _, _, err := s.PhysicianByCouncilWithHistory(ctx, "999"); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("unknown council number: %v", err)
	}
	if _, err := s.PhysicianHistory(ctx, "1234567891"); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("unknown physician: %v", err)
	}
	evs, err := s.AuditOutbox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var changes int
	for _, ev := range evs {
		if ev.Kind == "registry.physician.standing" {
			changes++
			if ev.Subject != p.NationalCode {
				t.Errorf("event %+v", ev)
			}
		}
	}
	if changes != 2 {
		t.Errorf("%d standing events, want 2: %+v", changes, evs)
	}

	// The migration: a physician stored before the history existed (as an older version wrote it).
	if _, err := db.ExecContext(ctx, `DELETE FROM tokens_physician_history WHERE national_code = '0499370899'`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := sqlstore.New(ctx, db, sqlstore.Options{Dialect: dialect, Now: clock}); err != nil {
			t.Fatal(err)
		}
	}
	h, err = s.PhysicianHistory(ctx, p.NationalCode)
	if err != nil || len(h) != 1 || h[0].Status != tokens.StatusActive || !h[0].EffectiveAt.Equal(p.ValidFrom) || h[0].Actor != "system:migration" {
		t.Fatalf("seeded history %+v %v", h, err)
	}
	evs, _ = s.AuditOutbox(ctx)
	seeded := 0
	for _, ev := range evs {
		if ev.Kind == "registry.physicians.history-seeded" {
			seeded++
		}
	}
	if seeded != 1 {
		t.Errorf("%d seeding events, want 1", seeded)
	}

	// The lookup's statement is prepared once and kept (issue 15): it still reads the registry as it is, so a
	// suspension recorded after it was prepared is what the next lookup returns.
	if _, _, err := s.PhysicianByCouncilWithHistory(ctx, "12345"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	p.Status, p.StatusSince = tokens.StatusSuspended, time.Time{}
	if err := svc.ImportPhysicians(ctx, []tokens.Physician{p}, "cli:ra"); err != nil {
		t.Fatal(err)
	}
	if bp, bh, err := s.PhysicianByCouncilWithHistory(ctx, "12345"); err != nil || bp.Status != tokens.StatusSuspended ||
		len(bh) != 2 || bh[1].Status != tokens.StatusSuspended {
		t.Fatalf("lookup after a suspension, through the prepared statement: %+v %+v %v", bp, bh, err)
	}
}
