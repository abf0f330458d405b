package api

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The fuzz targets drive the JSON decoders of issuance, revocation, enrolment and registry import through the
// whole handler (enforce, limits, decoding, validation), in process. The property: no 5xx; every refusal is a
// problem document and reaches no service; a wrong media type is 415, an oversized body 413, malformed JSON
// 400; only a valid body reaches the service, exactly once. Seeds: testdata/fuzz/<target>/.

const (
	fuzzJSONLimit   = 2048
	fuzzImportLimit = 4096
)

type fuzzEnv struct {
	srv   *Server
	rec   *recorder
	admin string
}

func newFuzzEnv(f *testing.F) *fuzzEnv {
	e := newEnv(f, func(c *Config, _ *Services) {
		c.MaxJSONBody, c.MaxImportBody = fuzzJSONLimit, fuzzImportLimit
	})
	return &fuzzEnv{srv: e.srv, rec: e.rec, admin: e.admin}
}

func (fe *fuzzEnv) check(t *testing.T, method, path string, admin bool, limit int, ctype string, body []byte) {
	fe.rec.reset()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.RemoteAddr = "127.0.0.1:40000"
	if admin {
		req.Header.Set("Authorization", "Bearer "+fe.admin)
	}
	req.Header.Set("Content-Type", ctype)
	w := httptest.NewRecorder()
	fe.srv.Handler().ServeHTTP(w, req)
	calls := fe.rec.total()

	if w.Code >= 500 {
		t.Fatalf("status %d for %q %q: %s", w.Code, ctype, body, w.Body)
	}
	mt, _, err := mime.ParseMediaType(ctype)
	jsonType := err == nil && mt == ctJSON
	switch {
	case !jsonType:
		expectStatus(t, w, 415)
	case len(body) > limit:
		expectStatus(t, w, 413)
	case !json.Valid(body):
		expectStatus(t, w, 400)
	}
	if w.Code >= 400 {
		if ct := w.Header().Get("Content-Type"); ct != ProblemContentType {
			t.Fatalf("refusal %d with content type %q", w.Code, ct)
		}
		var p Problem
		dec := json.NewDecoder(w.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil || p.Status != w.Code || p.Title == "" {
			t.Fatalf("bad problem document %v %+v", err, p)
		}
		if calls != 0 {
			t.Fatalf("refused request (%d) reached the service %d times", w.Code, calls)
		}
		return
	}
	switch {
	case w.Code == http.StatusAccepted:
		// A dual-control request (e.g. a profile only operators issue under dual control): pending, not executed.
		if calls != 0 {
			t.Fatalf("pending request reached the service %d times", calls)
		}
	case calls != 1:
		t.Fatalf("accepted request (%d) reached the service %d times", w.Code, calls)
	}
	if !jsonType || len(body) > limit || !json.Valid(body) {
		t.Fatalf("accepted a body that must be refused: %q %q", ctype, body)
	}
}

func expectStatus(t *testing.T, w *httptest.ResponseRecorder, want int) {
	t.Helper()
	if w.Code != want {
		t.Fatalf("status %d, want %d: %s", w.Code, want, w.Body)
	}
}

func fuzzTarget(f *testing.F, method, path string, admin bool, limit int, valid string) {
	fe := newFuzzEnv(f)
	f.Add(ctJSON, []byte(valid))
	f.Add("application/json; charset=utf-8", []byte(valid))
	f.Add("text/plain", []byte(valid))
	f.Add(ctJSON, []byte(valid+valid))
	f.Add(ctJSON, []byte(strings.Repeat(" ", limit)+valid))
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		fe.check(t, method, path, admin, limit, ctype, body)
	})
}

func validIssueBody(t testing.TB) string {
	return `{"profile":"facility-adapter","csr":"` + b64(testCSR(t)) + `","subject":{"siamId":"SIAM-1001","licenceNumber":"L-1"}}`
}

func validEnrolBody(t testing.TB) string {
	return `{"code":"code-12345678","csr":"` + b64(testCSR(t)) + `","kind":"physical"}`
}

func FuzzIssueBody(f *testing.F) {
	fuzzTarget(f, "POST", "/v1/certificates", true, fuzzJSONLimit, validIssueBody(f))
}

func FuzzRevokeBody(f *testing.F) {
	fuzzTarget(f, "POST", "/v1/certificates/0a1b/revoke", true, fuzzJSONLimit, `{"reason":4}`)
}

func FuzzEnrolBody(f *testing.F) {
	fuzzTarget(f, "POST", "/v1/enrolment", false, fuzzJSONLimit, validEnrolBody(f))
}

func FuzzImportFacilities(f *testing.F) {
	fuzzTarget(f, "POST", "/v1/registry/facilities", true, fuzzImportLimit,
		`{"facilities":[{"siamId":"SIAM-1001","name":"Clinic","licenceNumber":"L-1","licenceNotAfter":"2027-01-01T00:00:00Z","licenceStatus":"active"}]}`)
}

func FuzzImportPhysicians(f *testing.F) {
	fuzzTarget(f, "POST", "/v1/registry/physicians", true, fuzzImportLimit,
		`{"physicians":[{"nationalCode":"0499370899","councilNumber":"12345","name":"Dr Test","status":"active","registeredUntil":"2027-01-01T00:00:00Z"}]}`)
}

// TestDecodersRefuseWithoutSideEffects runs the cases the fuzz property names, deterministically.
func TestDecodersRefuseWithoutSideEffects(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Services) { c.MaxJSONBody = fuzzJSONLimit })
	fe := &fuzzEnv{srv: e.srv, rec: e.rec, admin: e.admin}
	valid := validIssueBody(t)
	for _, tc := range []struct {
		name, ctype, body string
		want              int
	}{
		{"valid", ctJSON, valid, 201},
		{"unknown field", ctJSON, strings.Replace(valid, `"profile"`, `"extra":1,"profile"`, 1), 400},
		{"unknown nested field", ctJSON, strings.Replace(valid, `"siamId"`, `"x":1,"siamId"`, 1), 400},
		{"trailing data", ctJSON, valid + "{}", 400},
		{"truncated", ctJSON, valid[:len(valid)-3], 400},
		{"wrong type", ctJSON, `{"profile":7}`, 400},
		{"bad base64", ctJSON, `{"profile":"p","csr":"!!"}`, 400},
		{"empty", ctJSON, ``, 400},
		{"null", ctJSON, `null`, 422},
		{"not a CSR", ctJSON, `{"profile":"p","csr":"AAAA"}`, 422},
		{"bad national code", ctJSON, strings.Replace(valid, `"siamId":"SIAM-1001"`, `"nationalCode":"0499370898"`, 1), 422},
		{"xml", "application/xml", valid, 415},
		{"oversized", ctJSON, `{"profile":"` + strings.Repeat("a", fuzzJSONLimit) + `"}`, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe.check(t, "POST", "/v1/certificates", true, fuzzJSONLimit, tc.ctype, []byte(tc.body))
			e.rec.reset()
			req := httptest.NewRequest("POST", "/v1/certificates", strings.NewReader(tc.body))
			req.RemoteAddr = "127.0.0.1:1"
			req.Header.Set("Authorization", "Bearer "+e.admin)
			req.Header.Set("Content-Type", tc.ctype)
			w := httptest.NewRecorder()
			e.srv.Handler().ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			if tc.want >= 400 && e.rec.total() != 0 {
				t.Fatal("refused request reached the service")
			}
		})
	}
}
