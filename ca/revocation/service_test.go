package revocation

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
)

type fakeTrigger struct {
	mu     sync.Mutex
	shards []int
}

func (f *fakeTrigger) Trigger(shard int) {
	f.mu.Lock()
	f.shards = append(f.shards, shard)
	f.mu.Unlock()
}

type fakeUpdater struct {
	serials []string
	err     error
}

func (f *fakeUpdater) Update(_ context.Context, serial string) error {
	f.serials = append(f.serials, serial)
	return f.err
}

func TestParseAndCheckReason(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Reason
		parseOK bool
		allowed bool
	}{
		{"name", "keyCompromise", KeyCompromise, true, true},
		{"case-insensitive", "KEYCOMPROMISE", KeyCompromise, true, true},
		{"code", "4", Superseded, true, true},
		{"unspecified", "unspecified", Unspecified, true, true},
		{"hold is not a revocation", "certificateHold", CertificateHold, true, false},
		{"removeFromCRL", "8", RemoveFromCRL, true, false},
		{"unused 7", "7", 0, false, false},
		{"out of range", "11", 0, false, false},
		{"negative", "-1", 0, false, false},
		{"garbage", "lost", 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseReason(tt.in)
			if (err == nil) != tt.parseOK {
				t.Fatalf("ParseReason(%q) err = %v", tt.in, err)
			}
			if err != nil {
				if !errors.Is(err, ErrBadReason) {
					t.Fatalf("err %v is not ErrBadReason", err)
				}
				return
			}
			if r != tt.want {
				t.Fatalf("got %v want %v", r, tt.want)
			}
			if err := CheckRevocationReason(r); (err == nil) != tt.allowed || (err != nil && !errors.Is(err, ErrBadReason)) {
				t.Fatalf("CheckRevocationReason(%v) = %v", r, err)
			}
		})
	}
	if err := CheckRevocationReason(Reason(7)); !errors.Is(err, ErrBadReason) {
		t.Fatalf("reason 7: %v", err)
	}
}

func TestNormalizeSerial(t *testing.T) {
	for in, want := range map[string]string{"0x00AB": "ab", "ab:cd": "abcd", " 1F ": "1f"} {
		if got, err := NormalizeSerial(in); err != nil || got != want {
			t.Errorf("NormalizeSerial(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0", "xyz", "-1", "+1", "0x"} {
		if _, err := NormalizeSerial(in); !errors.Is(err, ErrBadSerial) {
			t.Errorf("NormalizeSerial(%q) err = %v", in, err)
		}
	}
}

func TestServiceRevokeHoldRelease(t *testing.T) {
	ctx := context.Background()
	p := newTestPKI(t, testEpoch, 4)
	trig, upd := &fakeTrigger{}, &fakeUpdater{}
	svc := &Service{Store: p.store, Now: p.clock.Now, CRL: trig, OCSP: upd}
	_, a := p.leaf(t, true)
	_, b := p.leaf(t, true)
	pending, _ := p.leaf(t, false)
	p.record(t, pending, ca.StatusPending)
	failed, _ := p.leaf(t, false)
	p.record(t, failed, ca.StatusFailed)

	// Bad requests.
	badCases := []struct {
		name string
		do   func() error
		want error
	}{
		{"unknown serial", func() error { _, err := svc.Revoke(ctx, "abcdef", KeyCompromise, "cli:root"); return err }, ErrUnknownSerial},
		{"bad serial", func() error { _, err := svc.Revoke(ctx, "zz", KeyCompromise, "cli:root"); return err }, ErrBadSerial},
		{"removeFromCRL", func() error { _, err := svc.Revoke(ctx, a, RemoveFromCRL, "cli:root"); return err }, ErrBadReason},
		{"unknown code", func() error { _, err := svc.Revoke(ctx, a, Reason(11), "cli:root"); return err }, ErrBadReason},
		{"hold via revoke", func() error { _, err := svc.Revoke(ctx, a, CertificateHold, "cli:root"); return err }, ErrBadReason},
		{"pending", func() error {
			_, err := svc.Revoke(ctx, ca.SerialHex(pending.SerialNumber), KeyCompromise, "cli:root")
			return err
		}, ErrNotIssued},
		{"failed", func() error { _, err := svc.Hold(ctx, ca.SerialHex(failed.SerialNumber), "cli:root"); return err }, ErrNotIssued},
		{"no actor", func() error { _, err := svc.Revoke(ctx, a, KeyCompromise, ""); return err }, ErrNoActor},
	}
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	before := len(p.store.eventKinds())

	// Revoke a, twice: the second is a no-op.
	p.clock.Add(time.Minute)
	res, err := svc.Revoke(ctx, "0x"+a, KeyCompromise, "api:operator:01")
	if err != nil || !res.Changed || res.Status != ca.StatusRevoked || res.Reason != KeyCompromise || !res.RevokedAt.Equal(p.clock.Now()) {
		t.Fatalf("Revoke = %+v, %v", res, err)
	}
	res2, err := svc.Revoke(ctx, a, KeyCompromise, "api:operator:01")
	if err != nil || res2.Changed || !res2.RevokedAt.Equal(res.RevokedAt) {
		t.Fatalf("second Revoke = %+v, %v", res2, err)
	}
	if _, err := svc.Revoke(ctx, a, Superseded, "api:operator:01"); !errors.Is(err, ErrAlreadyRevoked) {
		t.Fatalf("re-revoke with another reason: %v", err)
	}
	if _, err := svc.Hold(ctx, a, "cli:root"); !errors.Is(err, ErrAlreadyRevoked) {
		t.Fatalf("hold of revoked: %v", err)
	}
	if _, err := svc.Release(ctx, a, "cli:root"); !errors.Is(err, ErrNotOnHold) {
		t.Fatalf("release of revoked: %v", err)
	}

	// Hold b, hold again (no-op), release, release again (no-op), hold, then revoke for good.
	if res, err := svc.Hold(ctx, b, "api:facility:42"); err != nil || !res.Changed || res.Status != ca.StatusHeld || res.Reason != CertificateHold {
		t.Fatalf("Hold = %+v, %v", res, err)
	}
	if res, err := svc.Hold(ctx, b, "api:facility:42"); err != nil || res.Changed {
		t.Fatalf("second Hold = %+v, %v", res, err)
	}
	if res, err := svc.Release(ctx, b, "api:facility:42"); err != nil || !res.Changed || res.Status != ca.StatusIssued {
		t.Fatalf("Release = %+v, %v", res, err)
	}
	if res, err := svc.Release(ctx, b, "api:facility:42"); err != nil || res.Changed {
		t.Fatalf("second Release = %+v, %v", res, err)
	}
	if _, err := svc.Hold(ctx, b, "cli:root"); err != nil {
		t.Fatal(err)
	}
	if res, err := svc.Revoke(ctx, b, CessationOfOperation, "cli:root"); err != nil || !res.Changed || res.Status != ca.StatusRevoked {
		t.Fatalf("revoke held = %+v, %v", res, err)
	}

	got := p.store.eventKinds()[before:]
	want := []string{EventRevoked, EventHeld, EventReleased, EventHeld, EventRevoked}
	if !slices.Equal(got, want) {
		t.Fatalf("audit events %v, want %v", got, want)
	}
	if len(upd.serials) != 5 || len(trig.shards) != 5 {
		t.Fatalf("propagated %d OCSP updates, %d CRL triggers; want 5 each", len(upd.serials), len(trig.shards))
	}
	// The event names who asked and what.
	p.store.mu.Lock()
	ev := p.store.events[before]
	p.store.mu.Unlock()
	if ev.Actor != "api:operator:01" || ev.Subject != a || len(ev.Data) == 0 {
		t.Fatalf("event %+v", ev)
	}

	// Propagate: a change made by another process reaches this one's CRL and OCSP.
	if err := svc.Propagate(ctx, a); err != nil || len(upd.serials) != 6 || len(trig.shards) != 6 {
		t.Fatalf("Propagate: %v", err)
	}
	if err := svc.Propagate(ctx, "abcdef"); !errors.Is(err, ErrUnknownSerial) {
		t.Fatalf("Propagate unknown: %v", err)
	}

	// An OCSP refresh failure is reported but the revocation stands.
	upd.err = errors.New("boom")
	_, c := p.leaf(t, true)
	res, err = svc.Revoke(ctx, c, Unspecified, "cli:root")
	if !errors.Is(err, ErrRefresh) || !res.Changed {
		t.Fatalf("Revoke with failing OCSP = %+v, %v", res, err)
	}
	if rec, _ := p.store.Certificate(ctx, c); rec.Status != ca.StatusRevoked {
		t.Fatalf("status %s", rec.Status)
	}
}
