package api

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"mime/multipart"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/api/web"
	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing"
)

func pagesEnv(t *testing.T) *testEnv {
	t.Helper()
	return newEnv(t, func(c *Config, s *Services) {
		c.PageRateLimit = 3
		p, err := testpki.New(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		v, err := signing.NewVerifier(signing.VerifierConfig{Trust: &signing.TrustPolicy{Anchors: []*x509.Certificate{p.Root},
			SignerCAs: []*x509.Certificate{p.Intermediate}, PrescriberPolicies: []asn1.ObjectIdentifier{testpki.OIDPhysicianSigningPolicy}}})
		if err != nil {
			t.Fatal(err)
		}
		if s.Pages, err = web.New(web.Config{Verifier: func() *signing.Verifier { return v }, MaxUpload: 64 << 10}); err != nil {
			t.Fatal(err)
		}
	})
}

func uploadBody(t *testing.T, data []byte) ([]byte, string) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, _ := mw.CreateFormFile("file", "x.p7s")
	fw.Write(data)
	mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

// TestPagesPublicAndSignedIn: the page needs no certificate; a pharmacy's or insurer's verified certificate
// names it in the header; a revoked, expired or foreign certificate is ignored (the visitor is anonymous).
func TestPagesPublicAndSignedIn(t *testing.T) {
	e := pagesEnv(t)
	for caller, want := range map[string]string{callerNone: "", string(RolePharmacy): "Pharmacy Seal", string(RoleInsurer): "Insurer Seal",
		callerRevoked: "", callerExpired: "", callerOtherCA: "", callerNoRole: ""} {
		r := e.do(caller, "GET", "/verify?lang=en", "", nil)
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s: %d %s", caller, r.status, r.header.Get("Content-Type"))
		}
		signedIn := strings.Contains(string(r.body), "Signed in as")
		if (want != "") != signedIn || want != "" && !strings.Contains(string(r.body), want) {
			t.Errorf("%s: signed in %v, want %q", caller, signedIn, want)
		}
		for _, bad := range []string{"Revoked Operator", "Expired Operator", "Foreign Operator", "Nobody"} {
			if strings.Contains(string(r.body), bad) {
				t.Errorf("%s: page names %q", caller, bad)
			}
		}
	}
	if r := e.do(callerNone, "GET", "/verify/static/style.css", "", nil); r.status != 200 {
		t.Errorf("static: %d", r.status)
	}
	// The API around it is unchanged.
	checkProblem(t, e.do(callerNone, "GET", "/verifyx", "", nil), 404)
}

// TestPagesLimits: uploads are rate limited per visitor, with a page (not a problem document) in Persian;
// a body over the limit is refused before it is read.
func TestPagesLimits(t *testing.T) {
	e := pagesEnv(t)
	body, ct := uploadBody(t, []byte("not a signature"))
	for i := 0; i < 3; i++ {
		r := e.do(callerNone, "POST", "/verify", ct, body)
		if r.status != 422 || !strings.Contains(string(r.body), "این فایل نسخهٔ امضاشده نیست") {
			t.Fatalf("upload %d: %d", i, r.status)
		}
	}
	r := e.do(callerNone, "POST", "/verify", ct, body)
	if r.status != 429 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(r.body), "یک دقیقه صبر کنید") || r.header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d %s", r.status, r.header.Get("Content-Type"))
	}
	// A signed-in pharmacy has its own bucket; the page still answers it.
	if r := e.do(string(RolePharmacy), "POST", "/verify", ct, body); r.status != 422 {
		t.Errorf("pharmacy: %d", r.status)
	}
	// GETs are not counted against uploads.
	if r := e.do(callerNone, "GET", "/verify", "", nil); r.status != 200 {
		t.Errorf("GET after limit: %d", r.status)
	}
	big, ct2 := uploadBody(t, make([]byte, 200<<10))
	if r := e.do(string(RoleInsurer), "POST", "/verify", ct2, big); r.status != 413 || !strings.Contains(string(r.body), "بزرگ‌تر از") {
		t.Errorf("huge: %d", r.status)
	}
	if r := e.do(string(RolePharmacy), "POST", "/v1/verify", ctCMS, []byte{0x30, 0x00}); r.status != 200 {
		t.Fatalf("verify: %d", r.status)
	}
	m := e.do(callerAdmin, "GET", "/metrics", "", nil)
	if !strings.Contains(string(m.body), `mohr_api_requests_total{code="429",method="POST",route="/verify"}`) ||
		!strings.Contains(string(m.body), `mohr_verifications_total{indication="TOTAL_PASSED",source="api"} 1`) {
		t.Errorf("metrics lack the page's route")
	}
}
