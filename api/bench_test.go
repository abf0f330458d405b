package api

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// benchConcurrency is the fixed number of concurrent clients of the load benchmarks.
const benchConcurrency = 32

// runLoad issues requests from benchConcurrency goroutines over real TLS on loopback until b.N requests are
// done, and reports requests/s and the 99th percentile latency. Any non-200 answer fails the benchmark.
func runLoad(b *testing.B, e *testEnv, caller string, mk func() *http.Request) {
	tr := e.client(caller).Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = benchConcurrency * 2
	tr.MaxConnsPerHost = benchConcurrency * 2
	tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()

	var (
		mu   sync.Mutex
		lats = make([]time.Duration, 0, b.N)
		errs int
		next = make(chan struct{}, benchConcurrency)
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < benchConcurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, b.N/benchConcurrency+1)
			bad := 0
			for range next {
				t0 := time.Now()
				resp, err := c.Do(mk())
				if err != nil {
					bad++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					bad++
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, local...)
			errs += bad
			mu.Unlock()
		}()
	}
	for i := 0; i < b.N; i++ {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if errs > 0 {
		b.Fatalf("%d of %d requests failed", errs, b.N)
	}
	slices.Sort(lats)
	p99 := lats[min(len(lats)-1, len(lats)*99/100)]
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
}

// BenchmarkVerify: POST /v1/verify as a pharmacy (mTLS, role and revocation check, body limit) with a
// stub verifier, 32 concurrent clients.
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b, nil)
	body := bytes.Repeat([]byte{0x30}, 2048) // the size of a small signed prescription
	runLoad(b, e, string(RolePharmacy), func() *http.Request {
		req, _ := http.NewRequest("POST", e.ts.URL+"/v1/verify", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctCMS)
		return req
	})
}

// BenchmarkOCSPPost: POST /ocsp without a client certificate, stub responder, 32 concurrent clients.
func BenchmarkOCSPPost(b *testing.B) {
	e := newEnv(b, nil)
	body := bytes.Repeat([]byte{0x30}, 83) // the size of a one-certificate OCSP request
	runLoad(b, e, callerNone, func() *http.Request {
		req, _ := http.NewRequest("POST", e.ts.URL+"/ocsp", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctOCSPReq)
		return req
	})
}

// BenchmarkOCSPGet: GET /ocsp/{base64} (RFC 6960 A.1), the cacheable form.
func BenchmarkOCSPGet(b *testing.B) {
	e := newEnv(b, nil)
	runLoad(b, e, callerNone, func() *http.Request {
		req, _ := http.NewRequest("GET", e.ts.URL+"/ocsp/MFEwTzBNMEswSTAJBgUrDgMCGgUABBQ%2Fo2b%2BAAAAAAAAAAAAAAAAAAAAAAQU", nil)
		return req
	})
}
