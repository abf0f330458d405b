package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

type prescriptionStore interface {
	SavePrescription(context.Context, PrescriptionRecord, audit.Event) error
	Prescription(context.Context, string) (PrescriptionRecord, error)
	AuditSize(context.Context) (int64, error)
}

func testPrescriptions(t *testing.T, st prescriptionStore) {
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	rec := PrescriptionRecord{ID: "abc123", ReceivedAt: now, SigningTime: now.Add(-time.Minute), PrescriberCode: "0499370899",
		CouncilNumber: "123456", PatientCode: "0012345679", Indication: "TOTAL_PASSED", Signature: []byte{1, 2, 3}, SealedReport: []byte{4}}
	ev := audit.Event{Time: now, Kind: "rx.ingested", Actor: "test", Subject: rec.ID}
	n0, _ := st.AuditSize(ctx)
	if err := st.SavePrescription(ctx, rec, ev); err != nil {
		t.Fatal(err)
	}
	if err := st.SavePrescription(ctx, rec, ev); !errors.Is(err, ca.ErrConflict) {
		t.Fatalf("duplicate: %v, want ErrConflict", err)
	}
	if n1, _ := st.AuditSize(ctx); n1 != n0+1 {
		t.Fatalf("audit size %d -> %d, want one event", n0, n1)
	}
	got, err := st.Prescription(ctx, rec.ID)
	if err != nil || string(got.Signature) != "\x01\x02\x03" || !got.SigningTime.Equal(rec.SigningTime) || got.CouncilNumber != "123456" {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := st.Prescription(ctx, "nope"); !errors.Is(err, ca.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

func TestPrescriptionsSQLite(t *testing.T)   { testPrescriptions(t, OpenTestSQLite(t)) }
func TestPrescriptionsPostgres(t *testing.T) { testPrescriptions(t, OpenTestPostgres(t)) }

// TestPrescriptionArchiveColumns: submitter and archive due time are kept; PrescriptionsDue lists only what is
// due; UpdatePrescriptionSignature replaces only the signature it was given (another node's renewal wins).
func TestPrescriptionArchiveColumns(t *testing.T) {
	for name, st := range map[string]interface {
		prescriptionStore
		PrescriptionsDue(context.Context, time.Time, int) ([]PrescriptionRecord, error)
		UpdatePrescriptionSignature(context.Context, string, []byte, []byte, time.Time, audit.Event) error
	}{"sqlite": OpenTestSQLite(t), "postgres": OpenTestPostgres(t)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
			for i, due := range []time.Time{now.AddDate(1, 0, 0), now.AddDate(2, 0, 0), {}} {
				rec := PrescriptionRecord{ID: string(rune('a' + i)), ReceivedAt: now, SigningTime: now, Indication: "TOTAL_PASSED",
					Signature: []byte{byte(i)}, SealedReport: []byte{4}, Submitter: "facility:SIAM-1", ArchiveDue: due}
				if err := st.SavePrescription(ctx, rec, audit.Event{Time: now, Kind: "rx.ingested", Actor: "test", Subject: rec.ID}); err != nil {
					t.Fatal(err)
				}
			}
			got, err := st.Prescription(ctx, "a")
			if err != nil || got.Submitter != "facility:SIAM-1" || !got.ArchiveDue.Equal(now.AddDate(1, 0, 0)) {
				t.Fatalf("%+v %v", got, err)
			}
			due, err := st.PrescriptionsDue(ctx, now.AddDate(1, 6, 0), 10)
			if err != nil || len(due) != 1 || due[0].ID != "a" {
				t.Fatalf("due: %v %v", due, err)
			}
			ev := audit.Event{Time: now, Kind: "rx.archived", Actor: "test", Subject: "a"}
			if err := st.UpdatePrescriptionSignature(ctx, "a", []byte{9}, []byte{7}, now.AddDate(3, 0, 0), ev); !errors.Is(err, ErrStaleSignature) {
				t.Fatalf("stale update: %v", err)
			}
			if err := st.UpdatePrescriptionSignature(ctx, "a", []byte{0}, []byte{7}, now.AddDate(3, 0, 0), ev); err != nil {
				t.Fatal(err)
			}
			if got, _ := st.Prescription(ctx, "a"); string(got.Signature) != "\x07" || !got.ArchiveDue.Equal(now.AddDate(3, 0, 0)) {
				t.Fatalf("after update: %+v", got)
			}
			if due, _ := st.PrescriptionsDue(ctx, now.AddDate(1, 6, 0), 10); len(due) != 0 {
				t.Fatalf("still due: %v", due)
			}
		})
	}
}

// TestPrescriptionsGroupCommit: many concurrent saves share transactions (group commit), with failing saves among
// them: two workers racing for one prescription ID (one wins, the other gets ErrConflict) and saves whose audit
// event cannot be stored. Each failing save leaves nothing behind, every other one is stored with its event, and
// the audit log verifies; on SQLite and PostgreSQL.
func TestPrescriptionsGroupCommit(t *testing.T) {
	for name, st := range map[string]interface {
		prescriptionStore
		audit.Source
	}{"sqlite": OpenTestSQLite(t), "postgres": OpenTestPostgres(t)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
			save := func(id string, ev audit.Event) error {
				rec := PrescriptionRecord{ID: id, ReceivedAt: now, SigningTime: now, Indication: "TOTAL_PASSED",
					Signature: []byte("sig " + id), SealedReport: []byte{4}}
				return st.SavePrescription(ctx, rec, ev)
			}
			evFor := func(id string) audit.Event {
				return audit.Event{Time: now, Kind: "rx.ingested", Actor: "test", Subject: id, Data: json.RawMessage(`{"k": 1}`)}
			}
			bad := audit.Event{Time: now, Kind: "rx.ingested", Actor: "test", Data: json.RawMessage(`{"broken":`)}
			before, _ := st.AuditSize(ctx)
			const workers, each = 32, 5
			var wg sync.WaitGroup
			var won, lost, refused atomic.Int64
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						id := fmt.Sprintf("rx%02x%02x", w, i)
						if err := save(id, evFor(id)); err != nil {
							t.Errorf("save %s: %v", id, err)
						}
						switch i {
						case 1:
							id := fmt.Sprintf("dup%02x", w/2)
							switch err := save(id, evFor(id)); {
							case err == nil:
								won.Add(1)
							case errors.Is(err, ca.ErrConflict):
								lost.Add(1)
							default:
								t.Errorf("duplicate: %v", err)
							}
						case 2:
							if err := save(fmt.Sprintf("bad%02x", w), bad); err != nil {
								refused.Add(1)
							}
						}
					}
				})
			}
			wg.Wait()
			if won.Load() != workers/2 || lost.Load() != workers/2 || refused.Load() != workers {
				t.Fatalf("duplicates %d stored, %d refused; bad events %d refused", won.Load(), lost.Load(), refused.Load())
			}
			for w := range workers {
				if _, err := st.Prescription(ctx, fmt.Sprintf("bad%02x", w)); !errors.Is(err, ca.ErrNotFound) {
					t.Fatalf("a save whose event failed was kept: %v", err)
				}
				for i := range each {
					if got, err := st.Prescription(ctx, fmt.Sprintf("rx%02x%02x", w, i)); err != nil || string(got.Signature) != fmt.Sprintf("sig rx%02x%02x", w, i) {
						t.Fatalf("rx%02x%02x: %v", w, i, err)
					}
				}
			}
			_, vkey, err := audit.GenerateKey("rxgroup")
			if err != nil {
				t.Fatal(err)
			}
			res, err := audit.Verify(ctx, st, vkey)
			if err != nil {
				t.Fatal(err)
			}
			if want := before + workers*each + workers/2; res.Size != want {
				t.Fatalf("audit size %d, want %d", res.Size, want)
			}
		})
	}
}
