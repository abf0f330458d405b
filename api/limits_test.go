package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestFailedLoginsLimitedAndAudited: rejected credentials (a wrong bearer secret, an expired certificate) are
// written to the audit log and, past AuthFailLimit per source, answered 429 with Retry-After, even for a good
// credential from that source, until the window (on the injected clock) ends.
func TestFailedLoginsLimitedAndAudited(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Services) { c.AuthFailLimit = 3; c.RateWindow = time.Hour })
	wrongBearer := func() response {
		req, _ := http.NewRequest("GET", e.ts.URL+"/v1/whoami", nil)
		req.Header.Set("Authorization", "Bearer not-the-secret")
		resp, err := e.client(callerNone).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return response{status: resp.StatusCode, header: resp.Header, body: b.Bytes()}
	}
	checkProblem(t, wrongBearer(), http.StatusUnauthorized)
	checkProblem(t, wrongBearer(), http.StatusUnauthorized)
	checkProblem(t, e.do(callerExpired, "GET", "/v1/whoami", "", nil), http.StatusUnauthorized)
	if k := e.rec.kinds(); !slices.Equal(k, []string{"auth.failed", "auth.failed", "auth.failed"}) {
		t.Fatalf("audit events %v", k)
	}
	ev := e.rec.events[2]
	if !bytes.Contains(ev.Data, []byte(`"credential":"certificate"`)) || !bytes.Contains(ev.Data, []byte(fingerprint(e.leaves[callerExpired].cert))) {
		t.Fatalf("certificate failure event %s", ev.Data)
	}
	if bytes.Contains(e.rec.events[0].Data, []byte("not-the-secret")) {
		t.Fatal("the presented bearer secret reached the audit log")
	}
	// Over the limit: 429 with Retry-After and one auth.throttled event; then 429 without more events.
	r := wrongBearer()
	checkProblem(t, r, http.StatusTooManyRequests)
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 3600 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	for i := 0; i < 5; i++ {
		checkProblem(t, wrongBearer(), http.StatusTooManyRequests)
	}
	checkProblem(t, e.do(callerAdmin, "GET", "/v1/whoami", "", nil), http.StatusTooManyRequests)
	if k := e.rec.kinds(); len(k) != 4 || k[3] != "auth.throttled" {
		t.Fatalf("audit events %v", k)
	}
	// Calls without a credential are not logins: still 401, not counted.
	checkProblem(t, e.do(callerNone, "GET", "/v1/whoami", "", nil), http.StatusUnauthorized)
	// An hour later the source may try again.
	e.now.Add(time.Hour)
	if r := e.do(callerAdmin, "GET", "/v1/whoami", "", nil); r.status != http.StatusOK {
		t.Fatalf("after the window: %d %s", r.status, r.body)
	}
}

// serveFrom sends one request to the server's handler as if from ip.
func serveFrom(s *Server, ip, method, path, ctype string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.RemoteAddr = ip + ":40000"
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, req)
	return w
}

// TestSigningRateLimits: the TSA (and OCSP when the responder signs on request) is limited per IP and for all
// callers together, with 429 and Retry-After; pre-signed OCSP is not; refused requests never reach the service.
func TestSigningRateLimits(t *testing.T) {
	for _, onDemand := range []bool{false, true} {
		e := newEnv(t, func(c *Config, _ *Services) {
			c.SignRateLimit, c.SignGlobalRateLimit, c.RateWindow, c.OCSPSignsOnDemand = 3, 5, time.Minute, onDemand
		})
		for i := 0; i < 3; i++ {
			if w := serveFrom(e.srv, "192.0.2.1", "POST", "/tsa", ctTSQuery, []byte("q")); w.Code != 200 {
				t.Fatalf("TSA %d: %d", i, w.Code)
			}
		}
		e.rec.reset()
		w := serveFrom(e.srv, "192.0.2.1", "POST", "/tsa", ctTSQuery, []byte("q"))
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || e.rec.total() != 0 {
			t.Fatalf("TSA over the per-IP limit: %d %q, %d service calls", w.Code, w.Header().Get("Retry-After"), e.rec.total())
		}
		// Another address still gets through until the global limit (5) is used up.
		for i, ip := range []string{"192.0.2.2", "192.0.2.3"} {
			if w := serveFrom(e.srv, ip, "POST", "/tsa", ctTSQuery, []byte("q")); w.Code != 200 {
				t.Fatalf("TSA from %s (%d): %d", ip, i, w.Code)
			}
		}
		if w := serveFrom(e.srv, "192.0.2.4", "POST", "/tsa", ctTSQuery, []byte("q")); w.Code != http.StatusTooManyRequests {
			t.Fatalf("TSA over the global limit: %d", w.Code)
		}
		// OCSP: limited only when the responder signs on request.
		got429 := false
		for i := 0; i < 10; i++ {
			w := serveFrom(e.srv, "192.0.2.9", "POST", "/ocsp", ctOCSPReq, []byte("r"))
			got429 = got429 || w.Code == http.StatusTooManyRequests
		}
		if got429 != onDemand {
			t.Fatalf("OCSP limited = %v with OCSPSignsOnDemand %v", got429, onDemand)
		}
		// A minute later the TSA answers again.
		e.now.Add(time.Minute)
		if w := serveFrom(e.srv, "192.0.2.1", "POST", "/tsa", ctTSQuery, []byte("q")); w.Code != 200 {
			t.Fatalf("TSA after the window: %d", w.Code)
		}
	}
}

// TestPKIBodyCap: OCSP and time-stamp requests are capped at 4 KiB, announced or streamed.
func TestPKIBodyCap(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct{ path, ct string }{{"/ocsp", ctOCSPReq}, {"/tsa", ctTSQuery}} {
		e.rec.reset()
		if w := serveFrom(e.srv, "192.0.2.1", "POST", c.path, c.ct, make([]byte, 4096)); w.Code != 200 {
			t.Fatalf("%s 4096 bytes: %d", c.path, w.Code)
		}
		e.rec.reset()
		w := serveFrom(e.srv, "192.0.2.1", "POST", c.path, c.ct, make([]byte, 4097))
		if w.Code != http.StatusRequestEntityTooLarge || e.rec.total() != 0 {
			t.Fatalf("%s 4097 bytes: %d, %d service calls", c.path, w.Code, e.rec.total())
		}
		// Without Content-Length (chunked): the reader stops at the limit.
		req := httptest.NewRequest("POST", c.path, struct{ *bytes.Reader }{bytes.NewReader(make([]byte, 64*1024))})
		req.ContentLength = -1
		req.Header.Set("Content-Type", c.ct)
		rw := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rw, req)
		if rw.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s streamed 64 KiB: %d", c.path, rw.Code)
		}
	}
}
