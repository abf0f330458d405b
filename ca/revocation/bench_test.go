package revocation

import (
	"context"
	"crypto"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// benchOCSP sets up a responder with n issued certificates (a tenth revoked) and returns it with the
// GET paths of requests for them.
func benchOCSP(tb testing.TB, n int) (*ocspFixture, []string) {
	tb.Helper()
	f := newOCSPFixture(tb, time.Now().UTC().Truncate(time.Second))
	ctx := context.Background()
	var paths []string
	for i := 0; i < n; i++ {
		c, s := f.p.leaf(tb, true)
		if i%10 == 0 {
			if _, err := f.svc.Revoke(ctx, s, KeyCompromise, "bench"); err != nil {
				tb.Fatal(err)
			}
		}
		h := crypto.SHA1
		if i%2 == 1 {
			h = crypto.SHA256
		}
		der, err := ocsp.CreateRequest(c, f.p.inter, &ocsp.RequestOptions{Hash: h})
		if err != nil {
			tb.Fatal(err)
		}
		paths = append(paths, "/"+url.PathEscape(base64.StdEncoding.EncodeToString(der)))
	}
	if err := f.r.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	return f, paths
}

// bareOCSPHandler serves GET requests from the responder with only the Content-Type header, the same
// HTTP shape as fixedHandler: the difference to it is the responder's own cost (decode, parse, match,
// look up), without the RFC 5019 caching headers.
func bareOCSPHandler(r *Responder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		der, _ := r.RespondGET(req.Context(), req.URL.Path)
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(der)
	})
}

// fixedHandler is the baseline: a trivial net/http handler returning a fixed response.
func fixedHandler(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(body)
	})
}

// load runs conc keep-alive clients against base+paths for d and returns requests per second.
func load(tb testing.TB, base string, paths []string, conc int, d time.Duration) float64 {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var total atomic.Int64
	var failed atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := c; time.Now().Before(deadline); i += conc {
				resp, err := client.Get(base + paths[i%len(paths)])
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				total.Add(1)
			}
		}(c)
	}
	wg.Wait()
	if failed.Load() > 0 {
		tb.Fatalf("%d failed requests", failed.Load())
	}
	return float64(total.Load()) / d.Seconds()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// BenchmarkOCSPServe measures pre-signed OCSP responses per second through net/http on loopback, against
// a trivial net/http server returning a fixed response of the same size, in the same run, with an
// in-process Go load generator (scripts/bench-ocsp.sh does the same with wrk). Run with -benchtime 1x:
// each iteration alternates the two servers for rounds of MOHR_BENCH_SECONDS (default 3) seconds.
func BenchmarkOCSPServe(b *testing.B) {
	f, paths := benchOCSP(b, 1000)
	sample, err := f.r.RespondGET(context.Background(), paths[1])
	if err != nil {
		b.Fatal(err)
	}
	mohr := httptest.NewServer(ocspHandler(f.r))
	defer mohr.Close()
	fixed := httptest.NewServer(fixedHandler(sample))
	defer fixed.Close()
	secs := 3
	if s, err := strconv.Atoi(os.Getenv("MOHR_BENCH_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	d := time.Duration(secs) * time.Second
	signs := f.key.n.Load()
	var base, got []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for round := 0; round < 3; round++ {
			base = append(base, load(b, fixed.URL, paths, 32, d))
			got = append(got, load(b, mohr.URL, paths, 32, d))
		}
	}
	b.StopTimer()
	if f.key.n.Load() != signs {
		b.Fatalf("serving signed %d responses", f.key.n.Load()-signs)
	}
	b.ReportMetric(median(base), "fixed-req/s")
	b.ReportMetric(median(got), "ocsp-req/s")
	b.ReportMetric(median(got)/median(base), "ratio")
	b.ReportMetric(float64(len(sample)), "resp-bytes")
}

// BenchmarkOCSPHandle is the responder alone, no HTTP: parse, match, cache hit.
func BenchmarkOCSPHandle(b *testing.B) {
	f, paths := benchOCSP(b, 1000)
	ctx := context.Background()
	reqs := make([][]byte, len(paths))
	for i, p := range paths {
		reqs[i], _ = decodeGETPath(p)
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op") }()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := f.r.Respond(ctx, reqs[i%len(reqs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// TestOCSPBenchServer serves the responder and the fixed-response baseline for scripts/bench-ocsp.sh.
// It runs only with MOHR_BENCH_DIR set: it writes the two ports and a wrk Lua script with the request
// paths there, and serves until MOHR_BENCH_DIR/stop exists or MOHR_BENCH_SERVE_SECONDS (default 300) pass.
func TestOCSPBenchServer(t *testing.T) {
	dir := os.Getenv("MOHR_BENCH_DIR")
	if dir == "" {
		t.Skip("for scripts/bench-ocsp.sh (MOHR_BENCH_DIR unset)")
	}
	f, paths := benchOCSP(t, 1000)
	sample, err := f.r.RespondGET(context.Background(), paths[1])
	if err != nil {
		t.Fatal(err)
	}
	if prof := os.Getenv("MOHR_BENCH_CPUPROFILE"); prof != "" {
		pf, err := os.Create(prof)
		if err != nil {
			t.Fatal(err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	serve := func(h http.Handler) (string, *http.Server) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		go srv.Serve(ln)
		return ln.Addr().String(), srv
	}
	mohrAddr, mohrSrv := serve(ocspHandler(f.r))
	fixedAddr, fixedSrv := serve(fixedHandler(sample))
	bareAddr, bareSrv := serve(bareOCSPHandler(f.r))
	defer mohrSrv.Close()
	defer fixedSrv.Close()
	defer bareSrv.Close()
	var lua strings.Builder
	lua.WriteString("local paths = {\n")
	for _, p := range paths {
		fmt.Fprintf(&lua, "  %q,\n", p)
	}
	lua.WriteString("}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n")
	for name, data := range map[string]string{
		"paths.lua": lua.String(), "mohr.addr": mohrAddr, "fixed.addr": fixedAddr, "bare.addr": bareAddr,
		"resp.bytes": strconv.Itoa(len(sample)),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	secs := 300
	if s, err := strconv.Atoi(os.Getenv("MOHR_BENCH_SERVE_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	defer signal.Stop(sig)
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	signs := f.key.n.Load()
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(dir, "stop")); err == nil {
			break
		}
		select {
		case <-sig:
			deadline = time.Now()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if f.key.n.Load() != signs {
		t.Errorf("serving signed %d responses", f.key.n.Load()-signs)
	}
	os.WriteFile(filepath.Join(dir, "signatures.while.serving"), []byte(strconv.FormatInt(f.key.n.Load()-signs, 10)), 0o644)
}

// bigStore is a ca.Store that yields a synthetic population of revoked serials per shard, for CRL
// generation benchmarks. Serials are 16-octet numbers spread over shards as ca.ShardFor does.
type bigStore struct {
	ca.Store // unused methods panic
	shards   int
	revoked  int
	at       time.Time
	numbers  sync.Map
}

func (s *bigStore) RevokedInShard(_ context.Context, shard int, _ time.Time) ([]ca.RevokedEntry, error) {
	base, _ := new(big.Int).SetString("5a17c0ffee0000000000000000000000", 16)
	base.Sub(base, new(big.Int).Mod(base, big.NewInt(int64(s.shards))))
	n := s.revoked / s.shards
	out := make([]ca.RevokedEntry, 0, n)
	x := new(big.Int)
	step := big.NewInt(int64(s.shards) * 7919) // keeps serials in the shard, not consecutive
	x.Add(base, big.NewInt(int64(shard)))
	reasons := []int{0, 1, 3, 4, 5, 6, 9}
	for i := 0; i < n; i++ {
		x.Add(x, step)
		out = append(out, ca.RevokedEntry{Serial: x.Text(16), RevokedAt: s.at.Add(-time.Duration(i) * time.Second), Reason: reasons[i%len(reasons)]})
	}
	return out, nil
}

func (s *bigStore) NextCRLNumber(_ context.Context, shard int) (int64, error) {
	v, _ := s.numbers.LoadOrStore(shard, new(atomic.Int64))
	return v.(*atomic.Int64).Add(1), nil
}

func (s *bigStore) AppendAudit(context.Context, audit.Event) error { return nil }

// processCPU returns the user+system CPU time of the process in nanoseconds. On a shared machine,
// CPU time per operation is steadier than wall time per operation.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func vmHWM() float64 { return procStatusMB("VmHWM:") }
func vmRSS() float64 { return procStatusMB("VmRSS:") }

func procStatusMB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkCRL1M signs CRLs for 1,000,000 revoked serials spread over MOHR_BENCH_SHARDS shards (default
// 16), one shard after the other as the publisher does, and reports time per shard and in total, the
// peak Go heap (sampled every millisecond) and the process's peak RSS (VmHWM). Run one shard count per
// process with -benchtime 1x, so that VmHWM belongs to that run.
func BenchmarkCRL1M(b *testing.B) {
	shards := 16
	if s, err := strconv.Atoi(os.Getenv("MOHR_BENCH_SHARDS")); err == nil && s > 0 {
		shards = s
	}
	const revoked = 1_000_000
	p := newTestPKI(b, testEpoch, shards)
	store := &bigStore{shards: shards, revoked: revoked, at: testEpoch}
	pub, err := NewCRLPublisher(CRLConfig{Issuer: p.issuer, Store: store, Shards: shards, BaseURL: p.crlBase, Now: p.clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// The fake store's own cost (making the entries), to subtract from the totals.
	t0 := time.Now()
	for s := 0; s < shards; s++ {
		if _, err := store.RevokedInShard(ctx, s, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	storeMS := float64(time.Since(t0).Microseconds()) / 1000
	runtime.GC()
	rssBefore := vmRSS()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > peak.Load() {
					peak.Store(ms.HeapAlloc)
				}
			}
		}
	}()
	var perShard []float64
	var size int
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for s := 0; s < shards; s++ {
			t0 := time.Now()
			c, err := pub.Publish(ctx, s)
			if err != nil {
				b.Fatal(err)
			}
			perShard = append(perShard, float64(time.Since(t0).Microseconds())/1000)
			size += len(c.DER)
			if c.Entries != revoked/shards {
				b.Fatalf("shard %d: %d entries", s, c.Entries)
			}
		}
	}
	total := time.Since(start)
	b.StopTimer()
	close(stop)
	<-sampled
	sort.Float64s(perShard)
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-total")
	b.ReportMetric(perShard[len(perShard)/2], "ms/shard-median")
	b.ReportMetric(perShard[len(perShard)-1], "ms/shard-max")
	b.ReportMetric(float64(size)/float64(b.N)/float64(shards)/1e6, "MB/shard-CRL")
	b.ReportMetric(float64(peak.Load())/1e6, "peak-heap-MB")
	b.ReportMetric(vmHWM(), "peak-RSS-MB")
	b.ReportMetric(rssBefore, "RSS-before-MB")
	b.ReportMetric(storeMS, "ms-fake-store")
}

// nullWriter is a ResponseWriter that discards, to time handlers without the network.
type nullWriter struct{ h http.Header }

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nullWriter) WriteHeader(int)             {}

// BenchmarkOCSPHandler times the HTTP handlers alone (GET, cache hit, caching headers) against the
// fixed-response handler: the difference is what the responder adds per request.
func BenchmarkOCSPHandler(b *testing.B) {
	f, paths := benchOCSP(b, 1000)
	sample, _ := f.r.RespondGET(context.Background(), paths[1])
	reqs := make([]*http.Request, len(paths))
	for i, p := range paths {
		reqs[i] = httptest.NewRequest(http.MethodGet, p, nil)
	}
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"fixed", fixedHandler(sample)}, {"ocsp", ocspHandler(f.r)}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			w := &nullWriter{h: http.Header{}}
			cpu0 := processCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clear(w.h)
				bc.h.ServeHTTP(w, reqs[i%len(reqs)])
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkOCSPPresign measures pre-signing: one forced Refresh over MOHR_BENCH_CERTS (default 20,000)
// synthetic certificate records, two responses (SHA-1 and SHA-256 CertIDs) each (one with
// MOHR_BENCH_SHA1ONLY=1), and the cache's heap cost per certificate.
func BenchmarkOCSPPresign(b *testing.B) {
	n := 20000
	if s, err := strconv.Atoi(os.Getenv("MOHR_BENCH_CERTS")); err == nil && s > 0 {
		n = s
	}
	f := newOCSPFixture(b, testEpoch)
	if os.Getenv("MOHR_BENCH_SHA1ONLY") == "1" {
		f.r.cfg.PresignSHA1Only = true
	}
	for i := 0; i < n; i++ {
		s := ca.SerialHex(randSerial(b))
		rec := ca.CertRecord{Serial: s, Status: ca.StatusIssued, NotAfter: testEpoch.Add(365 * 24 * time.Hour)}
		if i%10 == 0 {
			rec.Status, rec.RevokedAt, rec.RevocationReason = ca.StatusRevoked, testEpoch, int(KeyCompromise)
		}
		f.p.store.certs[s] = rec
	}
	ctx := context.Background()
	if _, err := f.r.renew(ctx); err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		runtime.ReadMemStats(&before)
		cpu0 := processCPU()
		t0 := time.Now()
		if err := f.r.Refresh(ctx, true); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/float64(n), "us/cert")
		b.ReportMetric(float64(processCPU()-cpu0)/1e3/float64(n), "cpu-us/cert")
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	b.StopTimer()
	if f.r.Len() < n {
		b.Fatalf("cache holds %d", f.r.Len())
	}
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), "heap-B/cert")
}
