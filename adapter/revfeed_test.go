package adapter_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/adapter"
)

// feedServer serves a revocation change feed over HTTP the way `mohr serve` does (GET ?from=N).
type feedServer struct {
	mu      sync.Mutex
	log     []adapter.RevocationChange // position i holds the change with Seq base+i
	base    int64                      // entries before base are other audit events (never changes)
	down    bool
	garbage bool
}

func (f *feedServer) add(c adapter.RevocationChange) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.Seq = f.base + int64(len(f.log))
	f.log = append(f.log, c)
}

func (f *feedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if f.garbage {
		w.Write([]byte(`{"changes":[]}`))
		return
	}
	head := f.base + int64(len(f.log))
	page := struct {
		Next    int64                      `json:"next"`
		Changes []adapter.RevocationChange `json:"changes"`
	}{Next: head, Changes: []adapter.RevocationChange{}}
	if s := r.URL.Query().Get("from"); s != "" {
		from, _ := strconv.ParseInt(s, 10, 64)
		// One change per page, so the follower has to page to the head.
		if from < head {
			page.Changes = append(page.Changes, f.log[from-f.base])
			page.Next = from + 1
		}
	}
	json.NewEncoder(w).Encode(page)
}

// TestRevocationFollower: the gateway learns a revocation from the feed at its next read, whatever the OCSP
// cache still holds; a release goes back to OCSP past the cache; and it fails closed before the first read,
// when the feed is down for longer than MaxLag, and when the feed answers something that is not a feed page.
func TestRevocationFollower(t *testing.T) {
	x := newExchange(t)
	cred := x.enrol("SIAM-1001")
	other := x.enrol("SIAM-2002")
	feed := &feedServer{base: 40}
	srv := httptest.NewServer(feed)
	defer srv.Close()

	var ocspCalls atomic.Int32
	ocsp := &adapter.OCSPChecker{Clock: x.clock.Now}
	cache := &adapter.RevocationCache{Clock: x.clock.Now, MaxTTL: time.Hour, Checker: adapter.RevocationCheckerFunc(
		func(ctx context.Context, cert, issuer *x509.Certificate) (adapter.RevocationStatus, error) {
			ocspCalls.Add(1)
			return ocsp.Check(ctx, cert, issuer)
		})}
	var reported []error
	fol := &adapter.RevocationFollower{Source: &adapter.HTTPRevocationSource{URL: srv.URL}, Checker: cache,
		MaxLag: 4 * time.Second, Clock: x.clock.Now, OnError: func(err error) { reported = append(reported, err) }}
	g := &adapter.Gateway{Roots: x.ca.Pool(), Intermediate: x.ca.Intermediate, Clock: x.clock.Now, Revocation: fol,
		Standing: tokensStanding(x)}
	authorize := func(c *adapter.Credential) error {
		_, err := g.Authorize(context.Background(), &tls.ConnectionState{PeerCertificates: c.Chain})
		return err
	}
	ctx := context.Background()

	if err := authorize(cred); !errors.Is(err, adapter.ErrRevocationUnknown) {
		t.Fatalf("before the feed was read: %v, want ErrRevocationUnknown", err)
	}
	if err := fol.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := authorize(cred); err != nil {
		t.Fatalf("good token: %v", err)
	}
	if err := authorize(cred); err != nil || ocspCalls.Load() != 1 {
		t.Fatalf("second request: %v, %d OCSP calls (want the cached answer)", err, ocspCalls.Load())
	}

	// Revoked at the CA (OCSP would say so too, but the cache holds "good" for an hour): the feed tells.
	serial := fmt.Sprintf("%x", cred.Leaf().SerialNumber)
	if err := x.ca.Revoke(ctx, serial, 1, "test"); err != nil {
		t.Fatal(err)
	}
	if err := authorize(cred); err != nil {
		t.Fatalf("before the next read the cached answer stands (this is the window the feed closes): %v", err)
	}
	feed.add(adapter.RevocationChange{Serial: fmt.Sprintf("%x", other.Leaf().SerialNumber), Status: "issued", NotAfter: other.Leaf().NotAfter})
	feed.add(adapter.RevocationChange{Serial: serial, Status: "revoked", Reason: 1, RevokedAt: x.clock.Now(), NotAfter: cred.Leaf().NotAfter})
	x.clock.Advance(time.Second)
	if err := fol.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := authorize(cred); !errors.Is(err, adapter.ErrRevoked) {
		t.Fatalf("after the feed reported the revocation: %v, want ErrRevoked", err)
	}
	if err := authorize(other); err != nil {
		t.Fatalf("another facility's token is unaffected: %v", err)
	}

	// A hold, then its release: the feed's state is the answer, OCSP is not asked.
	hs := fmt.Sprintf("%x", other.Leaf().SerialNumber)
	feed.add(adapter.RevocationChange{Serial: hs, Status: "hold", Reason: 6, NotAfter: other.Leaf().NotAfter})
	fol.Poll(ctx)
	if err := authorize(other); !errors.Is(err, adapter.ErrRevoked) {
		t.Fatalf("held: %v", err)
	}
	before := ocspCalls.Load()
	feed.add(adapter.RevocationChange{Serial: hs, Status: "issued", NotAfter: other.Leaf().NotAfter})
	fol.Poll(ctx)
	if err := authorize(other); err != nil || ocspCalls.Load() != before {
		t.Fatalf("released: %v (OCSP calls %d -> %d, want none)", err, before, ocspCalls.Load())
	}

	// Fail closed: the feed is down. Within MaxLag of the last good read requests still pass; beyond it,
	// every token is refused as "revocation status unavailable" (503), and admitted again once it answers.
	feed.mu.Lock()
	feed.down = true
	feed.mu.Unlock()
	x.clock.Advance(3 * time.Second)
	if err := fol.Poll(ctx); err == nil {
		t.Fatal("poll of a feed that is down succeeded")
	}
	if err := authorize(other); err != nil {
		t.Fatalf("within MaxLag: %v", err)
	}
	x.clock.Advance(2 * time.Second)
	if err := authorize(other); !errors.Is(err, adapter.ErrRevocationUnknown) {
		t.Fatalf("feed down beyond MaxLag: %v, want ErrRevocationUnknown", err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/x", nil)
	req.TLS = &tls.ConnectionState{PeerCertificates: other.Chain}
	g.Upstream = http.NotFoundHandler()
	g.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("feed down: HTTP %d, want 503", rec.Code)
	}
	feed.mu.Lock()
	feed.down, feed.garbage = false, true
	feed.mu.Unlock()
	if err := fol.Poll(ctx); !errors.Is(err, adapter.ErrRevocationUnknown) {
		t.Fatalf("a feed answer without next: %v", err)
	}
	if err := authorize(other); !errors.Is(err, adapter.ErrRevocationUnknown) {
		t.Fatalf("after a garbage answer: %v, want ErrRevocationUnknown", err)
	}
	feed.mu.Lock()
	feed.garbage = false
	feed.mu.Unlock()
	if err := fol.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := authorize(other); err != nil {
		t.Fatalf("feed back: %v", err)
	}
	if err := authorize(cred); !errors.Is(err, adapter.ErrRevoked) {
		t.Fatalf("feed back, revoked token: %v", err)
	}

	// Run reports an outage once and its end once (as nil).
	events := make(chan error, 16)
	fol.OnError = func(err error) { events <- err }
	fol.Interval = 10 * time.Millisecond
	feed.mu.Lock()
	feed.down = true
	feed.mu.Unlock()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fol.Run(rctx) }()
	wait := func(want bool) {
		t.Helper()
		select {
		case err := <-events:
			if (err != nil) != want {
				t.Fatalf("Run reported %v, want an error: %v", err, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run reported nothing")
		}
	}
	wait(true)
	feed.mu.Lock()
	feed.down = false
	feed.mu.Unlock()
	wait(false)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if len(events) != 0 {
		t.Fatalf("Run reported %d more events than the outage and its end", len(events))
	}
	_ = reported
}

// FuzzRevocationFeedPage feeds arbitrary answers to HTTPRevocationSource: each is either refused as
// ErrRevocationUnknown (the gateway then fails closed) or decoded into a page whose changes re-encode and decode
// to the same values.
func FuzzRevocationFeedPage(f *testing.F) {
	f.Add([]byte(`{"next":7,"changes":[]}`))
	f.Add([]byte(`{"next":9,"changes":[{"seq":8,"serial":"0a","status":"revoked","reason":1,"revokedAt":"2026-12-03T12:00:00Z","notAfter":"2027-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"changes":[]}`))
	f.Add([]byte(`{"next":null}`))
	f.Add([]byte(`[]`))
	var body atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(*body.Load()) }))
	defer srv.Close()
	src := &adapter.HTTPRevocationSource{URL: srv.URL}
	f.Fuzz(func(t *testing.T, b []byte) {
		body.Store(&b)
		next, changes, err := src.Changes(context.Background(), 3)
		if err != nil {
			if !errors.Is(err, adapter.ErrRevocationUnknown) {
				t.Fatalf("error not ErrRevocationUnknown: %v", err)
			}
			return
		}
		enc, err := json.Marshal(changes)
		if err != nil {
			t.Fatal(err)
		}
		var again []adapter.RevocationChange
		if err := json.Unmarshal(enc, &again); err != nil || len(again) != len(changes) {
			t.Fatalf("changes do not round-trip: %v", err)
		}
		for i := range again {
			a, c := again[i], changes[i]
			if a.Seq != c.Seq || a.Serial != c.Serial || a.Status != c.Status || a.Reason != c.Reason || !a.RevokedAt.Equal(c.RevokedAt) || !a.NotAfter.Equal(c.NotAfter) {
				t.Fatalf("change %d differs after a round trip: %+v vs %+v", i, a, c)
			}
		}
		_ = next
	})
}
