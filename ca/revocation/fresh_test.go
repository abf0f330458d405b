package revocation

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"sync"
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

// TestSignFreshShared: a fresh "good" response is shared by every call for the same certificate whose notBefore
// is not after its producedAt (one signature for many, also for concurrent calls), and not past it: a call
// asking for a later time, or made after the response's nextUpdate, gets a newly signed one. A revocation
// recorded in between ends the sharing at once: from then on the certificate gets only "revoked" responses,
// never a "good" one produced after its revocation, also for a notBefore the shared response would have
// covered, and those are never shared.
func TestSignFreshShared(t *testing.T) {
	ctx := context.Background()
	f := newOCSPFixture(t, testEpoch)
	good, goodS := f.p.leaf(t, true)
	if err := f.r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	parse := func(der []byte) *ocsp.Response {
		t.Helper()
		resp, err := ocsp.ParseResponseForCert(der, good, f.p.inter)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	fresh := func(notBefore time.Time) ([]byte, int64) {
		t.Helper()
		n0 := f.key.n.Load()
		der, err := f.r.SignFresh(ctx, good, notBefore)
		if err != nil {
			t.Fatal(err)
		}
		if r := parse(der); r.ProducedAt.Before(notBefore.Truncate(time.Second)) || r.ThisUpdate.Before(notBefore) {
			t.Fatalf("asked for >= %s, got producedAt %s thisUpdate %s", notBefore, r.ProducedAt, r.ThisUpdate)
		}
		return der, f.key.n.Load() - n0
	}
	f.p.clock.Add(300 * time.Millisecond) // 12:00:00.3: responses are dated 12:00:01
	first, signed := fresh(f.p.clock.Now())
	if signed != 1 {
		t.Fatalf("first call: %d signatures", signed)
	}
	f.p.clock.Add(400 * time.Millisecond) // 12:00:00.7, still covered
	if der, signed := fresh(f.p.clock.Now()); signed != 0 || !bytes.Equal(der, first) {
		t.Fatalf("a call covered by the shared response signed %d", signed)
	}
	// Concurrent calls share one signing (singleflight) or the response already there.
	f.p.clock.Add(time.Second) // 12:00:01.7: needs 12:00:02
	n0 := f.key.n.Load()
	var wg sync.WaitGroup
	ders := make([][]byte, 16)
	for i := range ders {
		wg.Go(func() {
			der, err := f.r.SignFresh(ctx, good, f.p.clock.Now())
			if err != nil {
				t.Error(err)
			}
			ders[i] = der
		})
	}
	wg.Wait()
	if n := f.key.n.Load() - n0; n != 1 {
		t.Fatalf("16 concurrent calls signed %d responses", n)
	}
	for _, d := range ders[1:] {
		if !bytes.Equal(d, ders[0]) || bytes.Equal(d, first) {
			t.Fatal("concurrent calls got different responses, or the old one")
		}
	}
	second := ders[0]
	// Across the boundary: a notBefore after the shared producedAt gets a new response.
	f.p.clock.Add(500 * time.Millisecond) // 12:00:02.2
	third, signed := fresh(f.p.clock.Now())
	if signed != 1 || bytes.Equal(third, second) {
		t.Fatal("a notBefore after the shared producedAt got the shared response")
	}
	// Past the shared response's nextUpdate it is never served, even for an old notBefore.
	nb := f.p.clock.Now()
	f.p.clock.Add(parse(third).NextUpdate.Sub(nb) + time.Second)
	if der, signed := fresh(nb); signed != 1 || bytes.Equal(der, third) {
		t.Fatal("a response past its nextUpdate was shared")
	}

	// A revocation in between: the shared good response (dated up to a second ahead) is not handed out any more.
	f.p.clock.Add(300 * time.Millisecond)
	covered := f.p.clock.Now()
	shared, _ := fresh(covered)
	sharedAt := parse(shared).ProducedAt
	f.p.clock.Add(200 * time.Millisecond)
	revokedAt := f.p.clock.Now()
	if _, err := f.p.store.Revoke(ctx, goodS, int(KeyCompromise), revokedAt, audit.Event{Kind: "cert.revoked", Actor: "test", Subject: goodS}); err != nil {
		t.Fatal(err)
	}
	if !sharedAt.After(revokedAt) {
		t.Fatalf("test assumption: the shared response (%s) is dated after the revocation (%s)", sharedAt, revokedAt)
	}
	for _, nb := range []time.Time{covered, f.p.clock.Now()} {
		der, err := f.r.SignFresh(ctx, good, nb)
		if err != nil {
			t.Fatal(err)
		}
		if r := parse(der); r.Status != ocsp.Revoked || bytes.Equal(der, shared) {
			t.Fatalf("after the revocation, notBefore %s: status %d (shared %v)", nb, r.Status, bytes.Equal(der, shared))
		}
	}
	// Revoked responses are not shared: each call signs.
	if _, signed := fresh(f.p.clock.Now()); signed != 1 {
		t.Fatalf("a revoked response was shared (%d signatures)", signed)
	}
}
