package revocation

import (
	"context"
	"crypto"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/internal/audit"
)

// TestSignFresh: every answer is produced at or after the time asked for (also with a fractional second),
// carries the store's current status (not the pre-signed one), and is refused for another CA's certificate or a
// time beyond the allowed skew.
func TestSignFresh(t *testing.T) {
	ctx := context.Background()
	f := newOCSPFixture(t, testEpoch)
	good, _ := f.p.leaf(t, true)
	rev, revS := f.p.leaf(t, true)
	never, _ := f.p.leaf(t, false)
	if _, err := f.r.SignFresh(ctx, good, f.p.clock.Now()); !errors.Is(err, ErrNotReady) {
		t.Fatalf("before Start: %v", err)
	}
	if err := f.r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	presigned, _ := f.ask(t, good, crypto.SHA256)
	for _, step := range []time.Duration{0, 700 * time.Millisecond, 13 * time.Hour, 23*time.Hour + 500*time.Millisecond} {
		f.p.clock.Add(step)
		at := f.p.clock.Now()
		der, err := f.r.SignFresh(ctx, good, at)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ocsp.ParseResponseForCert(der, good, f.p.inter)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != ocsp.Good || resp.ThisUpdate.Before(at) || resp.ProducedAt.Before(at) || resp.ThisUpdate.Sub(at) > time.Second {
			t.Fatalf("asked for >= %s: status %d thisUpdate %s producedAt %s", at, resp.Status, resp.ThisUpdate, resp.ProducedAt)
		}
	}
	if presigned.ThisUpdate.Equal(f.p.clock.Now().Truncate(time.Second)) {
		t.Fatal("test assumption: the pre-signed response should be old by now")
	}
	// Status comes from the store, even before the cache is updated.
	if _, err := f.p.store.Revoke(ctx, revS, int(KeyCompromise), f.p.clock.Now(), audit.Event{Kind: "cert.revoked", Actor: "test", Subject: revS}); err != nil {
		t.Fatal(err)
	}
	der, err := f.r.SignFresh(ctx, rev, f.p.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := ocsp.ParseResponseForCert(der, rev, f.p.inter); err != nil || resp.Status != ocsp.Revoked {
		t.Fatalf("revoked in the store: %v %+v", err, resp)
	}
	der, err = f.r.SignFresh(ctx, never, f.p.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := ocsp.ParseResponseForCert(der, never, f.p.inter); err != nil || resp.Status != ocsp.Unknown {
		t.Fatalf("never issued: %v %+v", err, resp)
	}
	// Refusals.
	if _, err := f.r.SignFresh(ctx, good, f.p.clock.Now().Add(MaxFreshAhead+time.Second)); !errors.Is(err, ErrFreshTooEarly) {
		t.Fatalf("future: %v", err)
	}
	other := newTestPKI(t, testEpoch, 1)
	stranger, _ := other.leaf(t, false)
	if _, err := f.r.SignFresh(ctx, stranger, f.p.clock.Now()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("another CA's certificate: %v", err)
	}
	// Copy the issuer name but not the signature: still refused.
	forged := *stranger
	forged.RawIssuer = good.RawIssuer
	if _, err := f.r.SignFresh(ctx, &forged, f.p.clock.Now()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("forged issuer name: %v", err)
	}
}

// BenchmarkSignFresh compares a response signed for one ingestion with serving the pre-signed one (the
// baseline, measured in the same run).
func BenchmarkSignFresh(b *testing.B) {
	ctx := context.Background()
	f := newOCSPFixture(b, testEpoch)
	good, _ := f.p.leaf(b, true)
	if err := f.r.Start(ctx); err != nil {
		b.Fatal(err)
	}
	req, _ := ocsp.CreateRequest(good, f.p.inter, &ocsp.RequestOptions{Hash: crypto.SHA256})
	b.Run("presigned", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := f.r.Respond(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fresh", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := f.r.SignFresh(ctx, good, f.p.clock.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
