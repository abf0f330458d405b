package signing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestHTTPRevocation(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		resp, err := f.pki.OCSPForRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write(resp)
	}))
	defer srv.Close()
	cert := *f.doc.Cert
	cert.OCSPServer = []string{srv.URL}
	src := &HTTPRevocation{Timeout: 5 * time.Second}
	der, err := src.OCSP(context.Background(), &cert, f.pki.Intermediate)
	if err != nil {
		t.Fatal(err)
	}
	v := f.verifier(t, func(c *VerifierConfig) { c.Revocation = src })
	issuer, _ := v.cert(f.pki.Intermediate.Raw)
	if r := v.checkOCSP(der, issuer, false); r.err != nil || r.resp.SerialNumber.Cmp(cert.SerialNumber) != 0 {
		t.Fatalf("OCSP response: %v", r.err)
	}
	cert.OCSPServer = nil
	if _, err := src.OCSP(context.Background(), &cert, f.pki.Intermediate); err == nil {
		t.Fatal("no responder URL, no error")
	}
}
