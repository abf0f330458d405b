// Package storetest is the conformance suite every tokens.Store implementation passes.
package storetest

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/tokens"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ev(kind string) audit.Event { return audit.Event{Time: t0, Kind: kind, Actor: "test"} }

func facility(siam string) tokens.Facility {
	return tokens.Facility{SIAMID: siam, Name: "F " + siam, LicenceNumber: "L-" + siam, LicenceStatus: tokens.StatusActive,
		LicenceFrom: t0.AddDate(-1, 0, 0), LicenceUntil: t0.AddDate(1, 0, 0), SystemID: "S-" + siam,
		SystemStatus: tokens.StatusActive, SystemFrom: t0.AddDate(-1, 0, 0), SystemUntil: t0.AddDate(1, 0, 0)}
}

// Run runs the suite; newStore returns an empty store.
func Run(t *testing.T, newStore func(t *testing.T) tokens.Store) {
	ctx := context.Background()
	t.Run("Facilities", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Facility(ctx, "SIAM-1"); !errors.Is(err, tokens.ErrNotFound) {
			t.Fatalf("missing facility: %v", err)
		}
		a, b := facility("SIAM-2"), facility("SIAM-1")
		b.SystemID, b.SystemStatus, b.SystemFrom, b.SystemUntil = "", "", time.Time{}, time.Time{}
		if err := s.PutFacilities(ctx, []tokens.Facility{a, b}, ev("import")); err != nil {
			t.Fatal(err)
		}
		got, err := s.Facility(ctx, "SIAM-1")
		if err != nil || !reflect.DeepEqual(got, b) {
			t.Fatalf("Facility = %+v, %v; want %+v", got, err, b)
		}
		a.LicenceStatus = tokens.StatusSuspended
		if err := s.PutFacilities(ctx, []tokens.Facility{a}, ev("update")); err != nil {
			t.Fatal(err)
		}
		all, err := s.Facilities(ctx)
		if err != nil || len(all) != 2 || all[0].SIAMID != "SIAM-1" || all[1].LicenceStatus != tokens.StatusSuspended {
			t.Fatalf("Facilities = %+v, %v", all, err)
		}
	})
	t.Run("Physicians", func(t *testing.T) {
		s := newStore(t)
		p := tokens.Physician{NationalCode: "0499370899", CouncilNo: "123", Name: "Dr", Specialty: "GP",
			Status: tokens.StatusActive, ValidFrom: t0, ValidUntil: t0.AddDate(2, 0, 0)}
		if err := s.PutPhysicians(ctx, []tokens.Physician{p}, ev("import")); err != nil {
			t.Fatal(err)
		}
		got, err := s.Physician(ctx, p.NationalCode)
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Fatalf("Physician = %+v, %v", got, err)
		}
		if _, err := s.Physician(ctx, "1234567891"); !errors.Is(err, tokens.ErrNotFound) {
			t.Fatalf("missing physician: %v", err)
		}
	})
	t.Run("EnrolmentCodes", func(t *testing.T) {
		s := newStore(t)
		c := tokens.EnrolmentCode{ID: "ABCDEFGH", Hash: []byte("0123456789abcdef0123456789abcdef"), SIAMID: "SIAM-1",
			CreatedBy: "ra", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		if err := s.AddEnrolmentCode(ctx, c, ev("code")); err != nil {
			t.Fatal(err)
		}
		if err := s.AddEnrolmentCode(ctx, c, ev("code")); !errors.Is(err, tokens.ErrConflict) {
			t.Fatalf("duplicate code: %v", err)
		}
		got, err := s.EnrolmentCode(ctx, c.ID)
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Fatalf("EnrolmentCode = %+v, %v", got, err)
		}
		tok := token("0a1b", "SIAM-1")
		// Two racing completions: exactly one wins, the other gets ErrCodeUsed.
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				tk := tok
				if i == 1 {
					tk.Serial = "0a1c"
				}
				errs[i] = s.CompleteEnrolment(ctx, c.ID, t0.Add(time.Minute), tk, ev("enrolled"))
			}(i)
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, tokens.ErrCodeUsed):
				t.Fatalf("losing completion: %v", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d completions succeeded", wins)
		}
		got, _ = s.EnrolmentCode(ctx, c.ID)
		if !got.UsedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("UsedAt = %v", got.UsedAt)
		}
		ts, err := s.Tokens(ctx, "SIAM-1")
		if err != nil || len(ts) != 1 {
			t.Fatalf("Tokens = %+v, %v", ts, err)
		}
	})
	t.Run("Tokens", func(t *testing.T) {
		s := newStore(t)
		a, b, c := token("01", "SIAM-1"), token("02", "SIAM-1"), token("03", "SIAM-2")
		b.NotBefore = a.NotBefore.Add(time.Hour)
		for _, tk := range []tokens.Token{b, c, a} {
			if err := s.AddToken(ctx, tk, ev("add")); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddToken(ctx, a, ev("add")); !errors.Is(err, tokens.ErrConflict) {
			t.Fatalf("duplicate token: %v", err)
		}
		ts, err := s.Tokens(ctx, "SIAM-1")
		if err != nil || len(ts) != 2 || ts[0].Serial != "01" || ts[1].Serial != "02" {
			t.Fatalf("Tokens(SIAM-1) = %+v, %v", ts, err)
		}
		if !reflect.DeepEqual(ts[0], a) {
			t.Fatalf("token round trip:\n%+v\n%+v", ts[0], a)
		}
		all, _ := s.Tokens(ctx, "")
		if len(all) != 3 {
			t.Fatalf("Tokens() = %d", len(all))
		}
		if err := s.SetTokenStatus(ctx, "02", tokens.TokenHeld, 6, t0.Add(time.Hour), ev("hold")); err != nil {
			t.Fatal(err)
		}
		got, err := s.Token(ctx, "02")
		if err != nil || got.Status != tokens.TokenHeld || got.Reason != 6 || !got.UpdatedAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("Token = %+v, %v", got, err)
		}
		if err := s.SetTokenStatus(ctx, "ff", tokens.TokenHeld, 6, t0, ev("hold")); !errors.Is(err, tokens.ErrNotFound) {
			t.Fatalf("missing token: %v", err)
		}
		if err := s.AppendAudit(ctx, ev("note")); err != nil {
			t.Fatal(err)
		}
	})
}

func token(serial, siam string) tokens.Token {
	return tokens.Token{Serial: serial, SIAMID: siam, Kind: tokens.KindSoftware, Status: tokens.TokenActive,
		NotBefore: t0, NotAfter: t0.AddDate(0, 1, 0), CreatedAt: t0, UpdatedAt: t0, LicenceNumber: "L-" + siam, SystemID: "S-" + siam}
}
