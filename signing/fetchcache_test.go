package signing

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
)

// countingResponder is the test PKI's OCSP responder over HTTP, counting requests; when gate is not nil each
// request waits for it to close.
type countingResponder struct {
	srv  *httptest.Server
	n    atomic.Int64
	gate chan struct{}
}

func newCountingResponder(t testing.TB, p *testpki.PKI) *countingResponder {
	c := &countingResponder{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		if c.gate != nil {
			<-c.gate
		}
		body, _ := io.ReadAll(r.Body)
		resp, err := p.OCSPForRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write(resp)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// source asks the responder over HTTP (HTTPRevocation) for certificates of the intermediate; like a certificate
// without an AIA OCSP URL, the intermediate itself has no responder (its status comes from the root's CRL).
func (c *countingResponder) source(p *testpki.PKI) RevocationSource {
	h := &HTTPRevocation{Timeout: 10 * time.Second}
	return RevocationFunc(func(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error) {
		if !issuer.Equal(p.Intermediate) {
			return h.OCSP(ctx, cert, issuer) // it names no responder: ErrNoOCSPResponder
		}
		cp := *cert
		cp.OCSPServer = []string{c.srv.URL}
		return h.OCSP(ctx, &cp, issuer)
	})
}

// countingCRLs serves the root CRL and counts fetches.
func countingCRLs(f *fixture, n *atomic.Int64) CRLSource {
	inner := f.crls()
	return CRLFunc(func(ctx context.Context, url string) ([]byte, error) {
		n.Add(1)
		return inner.CRL(ctx, url)
	})
}

func verifyAll(t *testing.T, v *Verifier, docs [][]byte) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, len(docs))
	for _, d := range docs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := v.Verify(context.Background(), d); !r.Passed() {
				errs <- r.Summary()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestFetchedRevocationCachedPerSigner: N documents of one signer, verified concurrently, cost one OCSP request
// and one CRL fetch; after the responses' nextUpdate (the clock advanced by days) they are fetched again.
func TestFetchedRevocationCachedPerSigner(t *testing.T) {
	f := newFixture(t)
	resp := newCountingResponder(t, f.pki)
	var crls atomic.Int64
	resp.gate = make(chan struct{})
	v := f.verifier(t, func(c *VerifierConfig) {
		c.Revocation, c.CRLs, c.RevocationCache = resp.source(f.pki), countingCRLs(f, &crls), 100
	})
	const n = 40
	var docs [][]byte
	for range n {
		docs = append(docs, f.signBB(t, f.doc, f.physician))
	}
	// Hold the first request until it is in, so the other documents arrive while it is under way: they must
	// share it rather than ask again.
	done := make(chan struct{})
	go func() {
		defer close(done)
		verifyAll(t, v, docs)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for resp.n.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(resp.gate)
	<-done
	if got := resp.n.Load(); got != 1 {
		t.Fatalf("%d OCSP requests for %d documents of one signer, want 1", got, n)
	}
	if got := crls.Load(); got != 1 {
		t.Fatalf("%d CRL fetches for %d documents, want 1", got, n)
	}
	r := v.Verify(context.Background(), docs[0])
	if r.Used == nil || len(r.Used.OCSPs) != 1 {
		t.Fatalf("the report does not name the cached OCSP response it used: %+v", r.Used)
	}

	// Within the validity (nextUpdate is one hour after thisUpdate): still one request.
	f.pki.Clock.Advance(59 * time.Minute)
	verifyAll(t, v, docs[:5])
	if got := resp.n.Load(); got != 1 {
		t.Fatalf("%d OCSP requests before nextUpdate, want 1", got)
	}
	// Two days later both the OCSP response (1 h) and the CRL (1 day) are past nextUpdate: fetched again,
	// once.
	f.pki.Clock.Advance(48 * time.Hour)
	verifyAll(t, v, docs)
	if got := resp.n.Load(); got != 2 {
		t.Fatalf("%d OCSP requests after nextUpdate, want 2", got)
	}
	if got := crls.Load(); got != 2 {
		t.Fatalf("%d CRL fetches after nextUpdate, want 2", got)
	}
}

// TestFetchedRevocationNotCachedWhenOff: without RevocationCache every document asks the responder (the
// behaviour the cache removes); a revocation is then seen at once.
func TestFetchedRevocationNotCachedWhenOff(t *testing.T) {
	f := newFixture(t)
	resp := newCountingResponder(t, f.pki)
	v := f.verifier(t, func(c *VerifierConfig) { c.Revocation = resp.source(f.pki) })
	for range 3 {
		if r := v.Verify(context.Background(), f.signBB(t, f.doc, f.physician)); !r.Passed() {
			t.Fatal(r.Summary())
		}
	}
	if got := resp.n.Load(); got != 3 {
		t.Fatalf("%d OCSP requests for 3 documents without the cache, want 3", got)
	}
}

// TestFetchedRevocationRevokedAfterExpiry: a cached "good" answer ends at its nextUpdate; the refetched answer
// says revoked and the document fails.
func TestFetchedRevocationRevokedAfterExpiry(t *testing.T) {
	f := newFixture(t)
	resp := newCountingResponder(t, f.pki)
	v := f.verifier(t, func(c *VerifierConfig) { c.Revocation, c.RevocationCache = resp.source(f.pki), 10 })
	doc := f.signBB(t, f.doc, f.physician)
	if r := v.Verify(context.Background(), doc); !r.Passed() {
		t.Fatal(r.Summary())
	}
	f.pki.Revoke(f.doc.Cert.SerialNumber, f.pki.Clock.Now(), 1)
	f.pki.Clock.Advance(2 * time.Hour)
	if r := v.Verify(context.Background(), doc); r.Passed() {
		t.Fatal("a revoked signer passed: a cached answer was served after its nextUpdate")
	}
	if got := resp.n.Load(); got != 2 {
		t.Fatalf("%d OCSP requests, want 2", got)
	}
}

// TestFetchCacheValidity: the cache never serves an entry outside [thisUpdate - skew, nextUpdate), never keeps
// an answer without nextUpdate or already expired, and stays within its bound.
func TestFetchCacheValidity(t *testing.T) {
	clk := &testpki.Clock{}
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	clk.Set(t0)
	c := newFetchCache(clk.Now, time.Minute, 0, 16, true)
	der := []byte{1}
	c.put(c.ocsps, "a", der, t0.Add(-time.Hour), t0.Add(time.Hour))
	c.put(c.ocsps, "future", der, t0.Add(2*time.Minute), t0.Add(time.Hour))
	c.put(c.ocsps, "nonext", der, t0.Add(-time.Hour), time.Time{})
	c.put(c.ocsps, "expired", der, t0.Add(-2*time.Hour), t0)
	for _, tc := range []struct {
		name string
		at   time.Time
		key  string
		want bool
	}{
		{"within", t0, "a", true},
		{"just before nextUpdate", t0.Add(time.Hour - time.Nanosecond), "a", true},
		{"at nextUpdate", t0.Add(time.Hour), "a", false},
		{"days later", t0.Add(72 * time.Hour), "a", false},
		{"thisUpdate beyond the skew", t0, "future", false},
		{"thisUpdate within the skew", t0.Add(time.Minute), "future", true},
		{"no nextUpdate", t0, "nonext", false},
		{"already expired", t0, "expired", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk.Set(tc.at)
			if got := c.get(c.ocsps, tc.key) != nil; got != tc.want {
				t.Fatalf("served %v, want %v", got, tc.want)
			}
			clk.Set(t0)
		})
	}
	ttl := newFetchCache(clk.Now, time.Minute, 10*time.Minute, 16, true)
	ttl.put(ttl.ocsps, "a", der, t0.Add(-time.Hour), t0.Add(time.Hour))
	clk.Set(t0.Add(10*time.Minute - time.Nanosecond))
	if ttl.get(ttl.ocsps, "a") == nil {
		t.Fatal("an entry within its TTL not served")
	}
	clk.Set(t0.Add(10 * time.Minute))
	if ttl.get(ttl.ocsps, "a") != nil {
		t.Fatal("an entry served past its TTL")
	}
	clk.Set(t0)
	for i := range 100 {
		c.put(c.crls, string(rune('a'+i)), der, t0, t0.Add(time.Hour))
	}
	if len(c.crls) > 16 {
		t.Fatalf("%d entries in a cache bounded to 16", len(c.crls))
	}
}

// BenchmarkVerifyOCSPOneSigner is what `mohr verify --ocsp` does with a batch of B-B prescriptions of one signer
// (no revocation data embedded): the BatchVerifier on all cores over a Verifier with HTTPRevocation, HTTP CRLs
// and the revocation cache, against the test PKI's OCSP responder over HTTP. In the same run it measures the
// bare ECDSA P-256 verification each document needs (its signature; the chain is the same for all) and reports
// the throughput ratio. Set MOHR_BENCH_DOCS for the batch size (2,000 by default; the README figure uses 10,000) and
// MOHR_BENCH_NO_REVOCATION_CACHE=1 to measure without the cache (scripts/bench-verify-ocsp.sh runs both).
func BenchmarkVerifyOCSPOneSigner(b *testing.B) {
	n := 2000
	if s := os.Getenv("MOHR_BENCH_DOCS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	cache := 100000
	if os.Getenv("MOHR_BENCH_NO_REVOCATION_CACHE") != "" { // the behaviour before the cache, for comparison
		cache = 0
	}
	f := newFixture(b)
	resp := newCountingResponder(b, f.pki)
	docs := make([][]byte, n)
	for i := range docs {
		docs[i] = f.signBB(b, f.doc, f.physician)
	}
	type bare struct {
		digest, sig []byte
	}
	bares := make([]bare, n)
	pub := f.doc.Cert.PublicKey.(*ecdsa.PublicKey)
	for i, d := range docs {
		sd, err := parseOne(d)
		if err != nil {
			b.Fatal(err)
		}
		si := &sd.signers[0]
		h := sha256.New()
		h.Write([]byte{0x31})
		h.Write(si.signedAttrsRaw[1:])
		bares[i] = bare{h.Sum(nil), si.signature}
	}
	old := debug.SetGCPercent(400) // as mohr verify's --gogc default
	defer debug.SetGCPercent(old)
	ctx := context.Background()
	var mohrT, bareT, mohrCPU, bareCPU time.Duration
	b.ResetTimer()
	for range b.N {
		v := f.verifier(b, func(c *VerifierConfig) {
			c.Revocation, c.RevocationCache, c.CacheClock = resp.source(f.pki), cache, f.pki.Clock.Now
		})
		start, cpu := time.Now(), cpuTime()
		in := make(chan BatchItem, 64)
		out := make(chan *Report, 64)
		go (&BatchVerifier{Verifier: v}).Run(ctx, in, out)
		go func() {
			for i, d := range docs {
				in <- BatchItem{Index: i, DER: d}
			}
			close(in)
		}()
		var st BatchStats
		for r := range out {
			st.Add(r)
		}
		mohrT, mohrCPU = mohrT+time.Since(start), mohrCPU+cpuTime()-cpu
		if st.Passed != n {
			b.Fatalf("%+v", st)
		}
		start, cpu = time.Now(), cpuTime()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					if !ecdsa.VerifyASN1(pub, bares[i].digest, bares[i].sig) {
						b.Error("bare verify failed")
					}
				}
			}()
		}
		wg.Wait()
		bareT, bareCPU = bareT+time.Since(start), bareCPU+cpuTime()-cpu
	}
	b.ReportMetric(float64(b.N*n)/mohrT.Seconds(), "docs/s")
	b.ReportMetric(float64(b.N*n)/bareT.Seconds(), "bare-verifies/s")
	b.ReportMetric(bareT.Seconds()/mohrT.Seconds(), "ratio")
	b.ReportMetric(bareCPU.Seconds()/mohrCPU.Seconds(), "cpu-ratio")
	b.ReportMetric(float64(resp.n.Load())/float64(b.N), "ocsp-requests/batch")
}

// TestNoOCSPResponderAskedOnce: a certificate the source says names no OCSP responder (ErrNoOCSPResponder, as
// HTTPRevocation answers for one without an AIA OCSP URL) is not asked about again, and its status still comes
// from its issuer's CRL: once the intermediate is revoked, documents fail. Any other failure is not remembered:
// the source is asked again for every document.
func TestNoOCSPResponderAskedOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int64
	}{
		{"no responder", fmt.Errorf("wrapped: %w", ErrNoOCSPResponder), 1},
		{"other failure", errors.New("connection refused"), 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			var asked atomic.Int64
			v := f.verifier(t, func(c *VerifierConfig) {
				c.RevocationCache = 100
				c.Revocation = RevocationFunc(func(_ context.Context, cert, _ *x509.Certificate) ([]byte, error) {
					if cert.Equal(f.pki.Intermediate) {
						asked.Add(1)
						return nil, tc.err
					}
					return f.pki.OCSP(cert)
				})
			})
			doc := f.signBB(t, f.doc, f.physician)
			for range 3 {
				if r := v.Verify(context.Background(), doc); !r.Passed() {
					t.Fatal(r.Summary())
				}
			}
			f.pki.Revoke(f.pki.Intermediate.SerialNumber, f.pki.Clock.Now(), 1)
			f.pki.Clock.Advance(25 * time.Hour) // past the cached root CRL's nextUpdate
			r := v.Verify(context.Background(), doc)
			if r.Passed() || r.SubIndication != RevokedCANoPOE {
				t.Fatalf("a revoked intermediate: got %s, want %s", r.Summary(), RevokedCANoPOE)
			}
			if got := asked.Load(); got != tc.want {
				t.Fatalf("the source was asked %d times about the intermediate, want %d", got, tc.want)
			}
		})
	}
}
