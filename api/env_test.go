package api

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/hixext"
)

// Test identities.
const (
	testSIAM      = "SIAM-1001"
	otherSIAM     = "SIAM-2002"
	testCouncil   = "12345"
	testNatCode   = "0499370899"
	callerNone    = "none"
	callerAdmin   = "admin"
	callerExpired = "expired"
	callerRevoked = "revoked"
	callerOtherCA = "other-ca"
	callerNoRole  = "no-role"
	callerOtherFa = "facility-other"
	callerOp2     = "operator2"
)

// testEnv is a Server behind real TLS on loopback with fake services.
type testEnv struct {
	t       testing.TB
	srv     *Server
	ts      *httptest.Server
	ca      *testCA
	leaves  map[string]testLeaf
	rec     *recorder
	rev     *fakeRevocation
	adm     *fakeCAAdmin
	aud     *fakeAuditor
	admin   string
	now     *fakeClock
	mu      sync.Mutex
	clients map[string]*http.Client
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newEnv(t testing.TB, mutate func(*Config, *Services)) *testEnv {
	t.Helper()
	e := &testEnv{t: t, ca: newTestCA(t, "Mohr Test Health Intermediate CA"), rec: newRecorder(),
		leaves: map[string]testLeaf{}, clients: map[string]*http.Client{}, now: &fakeClock{t: testNow}}
	var svc Services
	svc, e.rev, e.adm, e.aud = fakeServices(e.rec)

	e.leaves[string(RoleOperator)] = e.ca.issue(t, leafOpts{cn: "Operator One", policy: []int{1}})
	e.leaves[callerOp2] = e.ca.issue(t, leafOpts{cn: "Operator Two", policy: []int{1}})
	e.leaves[string(RoleRAOfficer)] = e.ca.issue(t, leafOpts{cn: "RA Officer", policy: []int{2}})
	e.leaves[string(RoleAuditor)] = e.ca.issue(t, leafOpts{cn: "Auditor", policy: []int{3}})
	e.leaves[string(RolePharmacy)] = e.ca.issue(t, leafOpts{cn: "Pharmacy Seal", policy: []int{4}})
	e.leaves[string(RoleInsurer)] = e.ca.issue(t, leafOpts{cn: "Insurer Seal", policy: []int{5}})
	e.leaves[string(RoleFacility)] = e.ca.issue(t, leafOpts{cn: "Adapter 1001", serialNum: testSIAM,
		facility: &hixext.Facility{SIAMID: testSIAM, LicenceNumber: "L-1"}})
	e.leaves[callerOtherFa] = e.ca.issue(t, leafOpts{cn: "Adapter 2002", serialNum: otherSIAM,
		facility: &hixext.Facility{SIAMID: otherSIAM, LicenceNumber: "L-2"}})
	e.leaves[string(RolePhysician)] = e.ca.issue(t, leafOpts{cn: "Dr Test", serialNum: hixext.NationalCodePrefix + testNatCode,
		admission: &hixext.Admission{Authority: "Iran Medical Council", Profession: "Physician", RegistrationNumber: testCouncil}})
	e.leaves[callerExpired] = e.ca.issue(t, leafOpts{cn: "Expired Operator", policy: []int{1},
		notBefore: testNow.Add(-48 * time.Hour), notAfter: testNow.Add(-time.Hour)})
	e.leaves[callerRevoked] = e.ca.issue(t, leafOpts{cn: "Revoked Operator", policy: []int{1}})
	e.rev.revoked[e.leaves[callerRevoked].cert.SerialNumber.String()] = true
	e.leaves[callerOtherCA] = newTestCA(t, "Some Other CA").issue(t, leafOpts{cn: "Foreign Operator", policy: []int{1}})
	e.leaves[callerNoRole] = e.ca.issue(t, leafOpts{cn: "Nobody"})

	tokFile := filepath.Join(t.TempDir(), "admin.token")
	secret, created, err := EnsureAdminCredential(tokFile)
	if err != nil || !created {
		t.Fatalf("EnsureAdminCredential: %v %v", created, err)
	}
	e.admin = secret

	pool := x509.NewCertPool()
	pool.AddCert(e.ca.cert)
	cfg := Config{ClientCAs: pool, AdminTokenFile: tokFile, Now: e.now.Now, RateLimit: 100000, PublicRateLimit: 100000,
		AuthFailLimit: 100000, SignRateLimit: 100000, SignGlobalRateLimit: 100000}
	if mutate != nil {
		mutate(&cfg, &svc)
	}
	e.srv, err = New(cfg, svc)
	if err != nil {
		t.Fatal(err)
	}
	e.ts = httptest.NewUnstartedServer(e.srv.Handler())
	e.ts.TLS = e.srv.TLSConfig()
	e.ts.Config.ReadHeaderTimeout = 5 * time.Second
	e.ts.StartTLS()
	t.Cleanup(e.ts.Close)
	return e
}

// client returns an HTTP client that presents caller's certificate (none for callerNone and callerAdmin).
func (e *testEnv) client(caller string) *http.Client {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.clients[caller]; ok {
		return c
	}
	tr := e.ts.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	if l, ok := e.leaves[caller]; ok {
		// Always send the certificate, even when its issuer is not among the CAs the server names (a Go client
		// would otherwise send none), so the server's own check is what refuses a foreign certificate.
		cert := l.tls
		tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		}
	}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	e.clients[caller] = c
	return c
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *testEnv) do(caller, method, path, ctype string, body []byte) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if caller == callerAdmin {
		req.Header.Set("Authorization", "Bearer "+e.admin)
	}
	resp, err := e.client(caller).Do(req)
	if err != nil {
		e.t.Fatalf("%s %s as %s: %v", method, path, caller, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *testEnv) doJSON(caller, method, path string, v any) response {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(caller, method, path, ctJSON, b)
}

// checkProblem asserts that r is a problem document of status and returns it.
func checkProblem(t testing.TB, r response, status int) Problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, ProblemContentType) {
		t.Fatalf("content type %q, want %s; body %s", ct, ProblemContentType, r.body)
	}
	var p Problem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem document: %v: %s", err, r.body)
	}
	if p.Status != status || p.Title == "" || !strings.HasPrefix(p.Type, problemTypeBase) {
		t.Fatalf("problem document %+v", p)
	}
	return p
}
