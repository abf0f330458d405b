package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/hixext"
)

func TestProblemDocuments(t *testing.T) {
	var logBuf syncBuffer
	e := newEnv(t, func(c *Config, _ *Services) {
		c.Logger = slog.New(slog.NewJSONHandler(&logBuf, nil))
	})
	op := string(RoleOperator)

	t.Run("router 404", func(t *testing.T) {
		e.t = t
		checkProblem(t, e.do(op, "GET", "/v1/nope", "", nil), 404)
		checkProblem(t, e.do(callerNone, "GET", "/", "", nil), 404)
	})
	t.Run("router 405", func(t *testing.T) {
		e.t = t
		checkProblem(t, e.do(op, "DELETE", "/v1/certificates", "", nil), 405)
	})
	sentinels := []struct {
		name   string
		err    error
		status int
	}{
		{"not found", fmt.Errorf("store: %w", ca.ErrNotFound), 404},
		{"conflict", fmt.Errorf("store: %w", ca.ErrConflict), 409},
		{"duplicate serial", fmt.Errorf("store: %w", ca.ErrDuplicateSerial), 409},
		{"behaviour invalid", invalidErr{}, 422},
		{"deadline", context.DeadlineExceeded, 503},
		{"unknown", errors.New("pq: relation certs violates constraint at 10.1.2.3 PIN=1234"), 500},
	}
	for _, tc := range sentinels {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.rec.reset()
			e.rec.setErr(tc.err)
			r := e.do(op, "GET", "/v1/certificates/ab", "", nil)
			p := checkProblem(t, r, tc.status)
			if strings.Contains(string(r.body), "pq:") || strings.Contains(string(r.body), "PIN") ||
				strings.Contains(string(r.body), "store:") {
				t.Fatalf("internal detail leaked: %s", r.body)
			}
			if tc.status == 500 {
				if p.ID == "" || p.Detail != "" {
					t.Fatalf("500 needs an opaque id and no detail: %+v", p)
				}
				if !strings.Contains(logBuf.String(), p.ID) {
					t.Fatalf("access log lacks the error id %s", p.ID)
				}
			}
		})
	}
	t.Run("panic", func(t *testing.T) {
		e.t = t
		e.rec.reset()
		e.rec.panics = true
		r := e.do(op, "GET", "/v1/certificates/ab", "", nil)
		p := checkProblem(t, r, 500)
		if p.ID == "" || strings.Contains(string(r.body), "secret") {
			t.Fatalf("panic answer: %s", r.body)
		}
	})
	t.Run("no bearer or body in log", func(t *testing.T) {
		e.t = t
		e.rec.reset()
		e.do(callerAdmin, "POST", "/v1/enrolment-codes", ctJSON, []byte(`{"siamId":"SIAM-LOGSECRET"}`))
		if s := logBuf.String(); strings.Contains(s, e.admin) || strings.Contains(s, "LOGSECRET") {
			t.Fatalf("log holds a secret or a body")
		}
	})
}

type invalidErr struct{}

func (invalidErr) Error() string { return "ca: profile facility-adapter needs a SIAM ID (internal)" }
func (invalidErr) Invalid() bool { return true }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestNotImplemented(t *testing.T) {
	e := newEnv(t, func(_ *Config, s *Services) { *s = Services{Revocation: s.Revocation} })
	checkProblem(t, e.do(string(RoleOperator), "GET", "/v1/certificates/ab", "", nil), 501)
	checkProblem(t, e.do(callerNone, "POST", "/ocsp", ctOCSPReq, []byte("x")), 501)
	// Authorisation comes first: a caller without the role learns nothing about the deployment.
	checkProblem(t, e.do(string(RoleInsurer), "GET", "/v1/certificates/ab", "", nil), 403)
	if r := e.do(callerNone, "GET", "/healthz", "", nil); r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
}

func TestNewRequiresRevocationChecker(t *testing.T) {
	ca := newTestCA(t, "x")
	pool := ca.cert
	_ = pool
	if _, err := New(Config{}, Services{}); err == nil {
		t.Fatal("New without ClientCAs")
	}
	e := newEnv(t, nil)
	if _, err := New(Config{ClientCAs: e.srv.cfg.ClientCAs}, Services{}); err == nil {
		t.Fatal("New without a revocation checker must fail")
	}
	if _, err := New(Config{ClientCAs: e.srv.cfg.ClientCAs, AllowNoRevocationCheck: true}, Services{}); err != nil {
		t.Fatal(err)
	}
}

func TestRevocationFailsClosed(t *testing.T) {
	e := newEnv(t, nil)
	e.rev.mu.Lock()
	e.rev.err = errors.New("ocsp: upstream timeout")
	e.rev.mu.Unlock()
	r := e.do(string(RoleOperator), "GET", "/v1/certificates/ab", "", nil)
	checkProblem(t, r, 503)
	if e.rec.total() != 0 {
		t.Fatal("request reached the service with unknown revocation status")
	}
	// Public routes do not depend on it.
	if r := e.do(string(RoleOperator), "POST", "/ocsp", ctOCSPReq, []byte("x")); r.status != 200 {
		t.Fatalf("OCSP with failing revocation checker: %d", r.status)
	}
}

func TestAdminCredential(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.token")
	s1, created, err := EnsureAdminCredential(path)
	if err != nil || !created {
		t.Fatal(created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	s2, created, err := EnsureAdminCredential(path)
	if err != nil || created || s1 != s2 {
		t.Fatalf("second call: %v %v equal=%v", created, err, s1 == s2)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAdminCredential(path); err == nil {
		t.Fatal("a group- or world-readable credential file must be refused")
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}

	e := newEnv(t, nil)
	// Over loopback TLS without a client certificate.
	r := e.do(callerAdmin, "GET", "/v1/whoami", "", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"admin:local"`) {
		t.Fatalf("admin whoami: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		name, remote, auth string
		want               int
	}{
		{"loopback v4", "127.0.0.1:5555", "Bearer " + e.admin, 200},
		{"loopback v6", "[::1]:5555", "Bearer " + e.admin, 200},
		{"remote peer", "10.0.0.7:5555", "Bearer " + e.admin, 401},
		{"wrong secret", "127.0.0.1:5555", "Bearer " + e.admin[:len(e.admin)-1] + "x", 401},
		{"empty bearer", "127.0.0.1:5555", "Bearer ", 401},
		{"basic scheme", "127.0.0.1:5555", "Basic " + e.admin, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/v1/whoami", nil)
			req.RemoteAddr = tc.remote
			req.Header.Set("Authorization", tc.auth)
			w := httptest.NewRecorder()
			e.srv.Handler().ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
		})
	}
	// The loopback exception of /metrics is for the peer address only.
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.RemoteAddr = "192.0.2.1:4444"
	req.Header.Set("X-Forwarded-For", "127.0.0.1")
	w := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(w, req)
	if w.Code != 401 {
		t.Fatalf("metrics from a remote peer without credential: %d", w.Code)
	}
}

func TestDualControl(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Services) { c.ApprovalTTL = 10 * time.Minute })
	op1, op2 := string(RoleOperator), callerOp2
	// Same person, second certificate: same subject DN as op1.
	op1b := e.ca.issue(t, leafOpts{cn: "Operator One", policy: []int{1}})
	e.leaves["operator1b"] = op1b

	r := e.do(op1, "POST", "/v1/keys/hsm-key-7/destroy", "", nil)
	if r.status != 202 {
		t.Fatalf("request: %d %s", r.status, r.body)
	}
	var ap approval
	if err := json.Unmarshal(r.body, &ap); err != nil || ap.ID == "" || ap.Status != "pending" {
		t.Fatalf("approval %s: %v", r.body, err)
	}
	if e.rec.count("CAAdmin.DestroyKey") != 0 {
		t.Fatal("executed without a second operator")
	}
	approve := "/v1/approvals/" + ap.ID + "/approve"
	checkProblem(t, e.do(op1, "POST", approve, "", nil), 409)
	checkProblem(t, e.do("operator1b", "POST", approve, "", nil), 409)
	checkProblem(t, e.do(string(RoleAuditor), "POST", approve, "", nil), 403)
	if e.rec.count("CAAdmin.DestroyKey") != 0 {
		t.Fatal("executed after a refused approval")
	}
	r = e.do(op2, "POST", approve, "", nil)
	if r.status != 200 {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	if e.rec.count("CAAdmin.DestroyKey") != 1 {
		t.Fatal("not executed after approval")
	}
	want := [2]string{"api:operator:cert:" + fmt.Sprintf("%x", e.leaves[op1].cert.SerialNumber),
		"api:operator:cert:" + fmt.Sprintf("%x", e.leaves[op2].cert.SerialNumber)}
	if len(e.adm.actors) != 1 || e.adm.actors[0] != want {
		t.Fatalf("actors %v, want %v", e.adm.actors, want)
	}
	if got := strings.Join(e.rec.kinds(), ","); got != "approval.requested,approval.granted,approval.executed" {
		t.Fatalf("audit events %s", got)
	}
	// Single use.
	checkProblem(t, e.do(op2, "POST", approve, "", nil), 404)

	// Expiry.
	r = e.do(callerAdmin, "POST", "/v1/ca/intermediate/rekey", "", nil)
	if r.status != 202 {
		t.Fatalf("admin request: %d %s", r.status, r.body)
	}
	_ = json.Unmarshal(r.body, &ap)
	e.now.Add(11 * time.Minute)
	checkProblem(t, e.do(op2, "POST", "/v1/approvals/"+ap.ID+"/approve", "", nil), 404)
	if e.rec.count("CAAdmin.RekeyIntermediate") != 0 {
		t.Fatal("expired approval executed")
	}

	// Audit failure: nothing pending, nothing executed.
	e.aud.fail = true
	r = e.do(op1, "POST", "/v1/ca/intermediate/rekey", "", nil)
	p := checkProblem(t, r, 500)
	if p.ID == "" || strings.Contains(string(r.body), "SQL") {
		t.Fatalf("audit failure answer %s", r.body)
	}
	if aps, _ := e.srv.approvals.PendingApprovals(context.Background()); len(aps) != 0 {
		t.Fatal("approval pending although its audit event was not written")
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Services) { c.RateLimit = 5; c.RateWindow = time.Hour })
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.do(string(RoleAuditor), "GET", "/v1/whoami", "", nil)
			if r.status == 429 {
				checkProblem(t, r, 429)
				if r.header.Get("Retry-After") == "" {
					t.Error("429 without Retry-After")
				}
			}
			mu.Lock()
			codes[r.status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != 5 || codes[429] != 15 {
		t.Fatalf("codes %v, want 5 x 200 and 15 x 429", codes)
	}
	// Another client (another certificate) has its own budget.
	if r := e.do(string(RoleOperator), "GET", "/v1/whoami", "", nil); r.status != 200 {
		t.Fatalf("second client limited: %d", r.status)
	}
}

func TestBodyLimitsAndMediaTypes(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Services) { c.MaxJSONBody = 1024; c.MaxCMSBody = 2048 })
	op := string(RoleOperator)
	big := []byte(`{"siamId":"` + strings.Repeat("A", 2000) + `"}`)
	checkProblem(t, e.do(op, "POST", "/v1/enrolment-codes", ctJSON, big), 413)
	// Without Content-Length (chunked), the limit still holds.
	req, _ := http.NewRequest("POST", e.ts.URL+"/v1/enrolment-codes", struct{ *bytes.Reader }{bytes.NewReader(big)})
	req.Header.Set("Content-Type", ctJSON)
	resp, err := e.client(op).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked oversized body: %d", resp.StatusCode)
	}
	checkProblem(t, e.do(op, "POST", "/v1/enrolment-codes", "text/plain", []byte(`{"siamId":"SIAM-1001"}`)), 415)
	checkProblem(t, e.do(op, "POST", "/v1/enrolment-codes", "", []byte(`{"siamId":"SIAM-1001"}`)), 415)
	checkProblem(t, e.do(string(RolePharmacy), "POST", "/v1/verify", ctCMS, bytes.Repeat([]byte{1}, 4096)), 413)
	checkProblem(t, e.do(callerNone, "POST", "/tsa", ctJSON, []byte("x")), 415)
	if e.rec.total() != 0 {
		t.Fatalf("refused bodies reached services: %v", e.rec.calls)
	}
	if r := e.do(op, "POST", "/v1/enrolment-codes", "application/json; charset=utf-8", []byte(`{"siamId":"SIAM-1001"}`)); r.status != 201 {
		t.Fatalf("with charset parameter: %d %s", r.status, r.body)
	}
}

func TestCRLCaching(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do(callerNone, "GET", "/crl/2.crl", "", nil)
	if r.status != 200 || string(r.body) != "crl-der" || r.header.Get("Content-Type") != ctPKIXCRL {
		t.Fatalf("crl: %d %q %v", r.status, r.body, r.header)
	}
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "max-age=21600") {
		t.Fatalf("Cache-Control %q, want max-age to nextUpdate (6 h)", cc)
	}
	if lm := r.header.Get("Last-Modified"); lm != testNow.Add(-time.Hour).Format(http.TimeFormat) {
		t.Fatalf("Last-Modified %q", lm)
	}
	etag := r.header.Get("ETag")
	if etag == "" || r.header.Get("Expires") == "" {
		t.Fatalf("no ETag or Expires: %v", r.header)
	}
	req, _ := http.NewRequest("GET", e.ts.URL+"/crl/2.crl", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err := e.client(callerNone).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional GET: %d", resp.StatusCode)
	}
	checkProblem(t, e.do(callerNone, "GET", "/crl/9.crl", "", nil), 404)
	checkProblem(t, e.do(callerNone, "GET", "/crl/x.crl", "", nil), 404)
}

func TestBatchStreams(t *testing.T) {
	e := newEnv(t, nil)
	in := strings.Repeat("{\"cms\":\"AA==\"}\n", 1000)
	r := e.do(string(RoleInsurer), "POST", "/v1/verify/batch", ctNDJSON, []byte(in))
	if r.status != 200 || bytes.Count(r.body, []byte("\n")) != 1000 || r.header.Get("Content-Type") != ctNDJSON {
		t.Fatalf("batch: %d, %d lines", r.status, bytes.Count(r.body, []byte("\n")))
	}
}

func TestRoleFromCertificate(t *testing.T) {
	ca := newTestCA(t, "CA")
	for _, tc := range []struct {
		name string
		o    leafOpts
		want Role
	}{
		{"operator", leafOpts{policy: []int{1}}, RoleOperator},
		{"insurer", leafOpts{policy: []int{5}}, RoleInsurer},
		{"unknown role policy", leafOpts{policy: []int{9}}, ""},
		{"facility", leafOpts{facility: &hixext.Facility{SIAMID: testSIAM, LicenceNumber: "L"}}, RoleFacility},
		{"facility with bad SIAM", leafOpts{facility: &hixext.Facility{SIAMID: "x!", LicenceNumber: "L"}}, ""},
		{"physician", leafOpts{serialNum: "IDCIR-" + testNatCode, admission: &hixext.Admission{Profession: "Physician", RegistrationNumber: "1"}}, RolePhysician},
		{"physician bad checksum", leafOpts{serialNum: "IDCIR-0499370898", admission: &hixext.Admission{Profession: "Physician", RegistrationNumber: "1"}}, ""},
		{"physician without national code", leafOpts{admission: &hixext.Admission{Profession: "Physician", RegistrationNumber: "1"}}, ""},
		{"two roles", leafOpts{policy: []int{1}, facility: &hixext.Facility{SIAMID: testSIAM, LicenceNumber: "L"}}, ""},
		{"nothing", leafOpts{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := ca.issue(t, tc.o)
			id, err := RoleFromCertificate(l.cert)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got role %s, want none", id.Role)
				}
				return
			}
			if err != nil || id.Role != tc.want {
				t.Fatalf("role %q err %v, want %s", id.Role, err, tc.want)
			}
		})
	}
}

// TestCachedVerificationExpires: a certificate accepted (and cached) stops working when it expires, and a
// revoked one at its next request.
func TestCachedVerificationExpires(t *testing.T) {
	e := newEnv(t, nil)
	e.leaves["short"] = e.ca.issue(t, leafOpts{cn: "Short-lived Auditor", policy: []int{3}, notAfter: testNow.Add(30 * time.Second)})
	if r := e.do("short", "GET", "/v1/whoami", "", nil); r.status != 200 {
		t.Fatalf("fresh: %d", r.status)
	}
	e.now.Add(31 * time.Second)
	checkProblem(t, e.do("short", "GET", "/v1/whoami", "", nil), 401)

	if r := e.do(string(RoleAuditor), "GET", "/v1/whoami", "", nil); r.status != 200 {
		t.Fatalf("auditor: %d", r.status)
	}
	e.rev.mu.Lock()
	e.rev.revoked[e.leaves[string(RoleAuditor)].cert.SerialNumber.String()] = true
	e.rev.mu.Unlock()
	checkProblem(t, e.do(string(RoleAuditor), "GET", "/v1/whoami", "", nil), 401)
}

// rejectingIngest refuses a prescription but returns the sealed report that says why.
type rejectingIngest struct{}

type rejected struct{}

func (rejected) Error() string { return "signing: prescription rejected" }
func (rejected) Invalid() bool { return true }

func (rejectingIngest) Ingest(context.Context, []byte, Identity) ([]byte, []byte, error) {
	return []byte("sealed-report"), []byte(`{"indication":"TOTAL_FAILED","subIndication":"HASH_FAILURE"}`), rejected{}
}

// TestIngestRejectedKeepsReport: a rejected prescription answers 422 with the report and the sealed report,
// the caller's evidence, not a bare problem document.
func TestIngestRejectedKeepsReport(t *testing.T) {
	e := newEnv(t, func(_ *Config, s *Services) { s.Ingestor = rejectingIngest{} })
	r := e.do(string(RolePhysician), "POST", "/v1/prescriptions", ctCMS, []byte{0x30, 0x00})
	if r.status != 422 || !strings.Contains(string(r.body), "TOTAL_FAILED") || !strings.Contains(string(r.body), "sealedReport") {
		t.Fatalf("rejected ingest: %d %s", r.status, r.body)
	}
}

// TestBatchLineTooLong: an NDJSON line longer than the batch verifier reads is the client's fault, 413 with a
// problem document (it was 500).
func TestBatchLineTooLong(t *testing.T) {
	e := newEnv(t, nil)
	in := "{\"cms\":\"" + strings.Repeat("A", 100<<10) + "\"}\n"
	p := checkProblem(t, e.do(string(RoleInsurer), "POST", "/v1/verify/batch", ctNDJSON, []byte(in)), 413)
	if p.Status != 413 {
		t.Fatalf("problem %+v", p)
	}
}

// headerOCSP is an OCSP responder that knows its GET answers' caching headers (OCSPGETHeaders).
type headerOCSP struct {
	fakeOCSP
	hdr map[string]string
}

func (h headerOCSP) RespondGETHeaders(_ context.Context, b64 string, _ time.Time) ([]byte, map[string]string) {
	return []byte("ocsp-" + b64), h.hdr
}

// TestOCSPGETHeadersFromResponder: with a responder that knows its caching headers, GET answers carry exactly
// those (no parsing of the response per request), and an answer it says must not be cached is sent no-cache.
func TestOCSPGETHeadersFromResponder(t *testing.T) {
	hdr := map[string]string{"Cache-Control": "public, max-age=60, no-transform, must-revalidate",
		"ETag": `"abc"`, "Expires": "Thu, 03 Dec 2026 18:00:00 GMT", "Last-Modified": "Thu, 03 Dec 2026 12:00:00 GMT"}
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want map[string]string
	}{
		{"cacheable", hdr, hdr},
		{"not cacheable", nil, map[string]string{"Cache-Control": "no-cache", "ETag": "", "Expires": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(_ *Config, s *Services) { s.OCSP = headerOCSP{fakeOCSP: fakeOCSP{}, hdr: tc.hdr} })
			r := e.do(callerNone, "GET", "/ocsp/MEQwQjBAMD4", "", nil)
			if r.status != 200 || string(r.body) != "ocsp-MEQwQjBAMD4" || r.header.Get("Content-Type") != ctOCSPResp {
				t.Fatalf("GET: %d %q %v", r.status, r.body, r.header)
			}
			for k, v := range tc.want {
				if got := r.header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

// acceptingIngest accepts with a report that has characters encoding/json escapes.
type acceptingIngest struct{ sealed, report []byte }

func (a acceptingIngest) Ingest(context.Context, []byte, Identity) ([]byte, []byte, error) {
	return a.sealed, a.report, nil
}

// TestIngestAnswerBody: the 201 answer, written without encoding/json (issue 15), is byte for byte what
// encoding/json writes for ingestResult when the report is json.Marshal's output (the ingestor's), and a
// report that is not JSON is still a 500, never sent.
func TestIngestAnswerBody(t *testing.T) {
	rep, err := json.Marshal(map[string]any{"indication": "TOTAL_PASSED", "prescriber": map[string]string{"name": "Dr <A> & \"B\" مهر"}})
	if err != nil {
		t.Fatal(err)
	}
	sealed := []byte{0x30, 0x82, 0x01, 0xff, 0xfe, 0x00, 0x3e}
	e := newEnv(t, func(_ *Config, s *Services) { s.Ingestor = acceptingIngest{sealed, rep} })
	r := e.do(string(RolePhysician), "POST", "/v1/prescriptions", ctCMS, []byte{0x30, 0x00})
	var want bytes.Buffer
	_ = json.NewEncoder(&want).Encode(ingestResult{Report: rep, SealedReport: sealed})
	if r.status != 201 || string(r.body) != want.String() {
		t.Fatalf("answer %d\n%s\nwant\n%s", r.status, r.body, want.String())
	}
	e = newEnv(t, func(_ *Config, s *Services) { s.Ingestor = acceptingIngest{sealed, []byte(`{"indication":`)} })
	checkProblem(t, e.do(string(RolePhysician), "POST", "/v1/prescriptions", ctCMS, []byte{0x30, 0x00}), 500)
}
