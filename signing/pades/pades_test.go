package pades

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"github.com/mohr-hix/mohr/internal/testenv"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// The PKI runs on the wall clock here: pdfsig has no way to validate at a pinned time.
func setup(t *testing.T) (*testpki.PKI, *testpki.Leaf, []byte, string, *signing.Verifier) {
	now := time.Now().UTC().Truncate(time.Second)
	p, err := testpki.New(now)
	if err != nil {
		t.Fatal(err)
	}
	g := rxgen.New(3)
	ph := g.Physician()
	doc, err := p.Issue(testpki.PhysicianSigning, testpki.LeafOptions{CommonName: "Dr. " + ph.Family, NationalCode: ph.NationalCode, CouncilNumber: ph.CouncilNumber})
	if err != nil {
		t.Fatal(err)
	}
	bundle, _ := g.Prescription(ph)
	tsaLeaf, _ := p.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "Mohr Test TSA"})
	tsa, err := signing.NewTSA(tsaLeaf.Key, tsaLeaf.Chain, signing.TSAConfig{Policy: asn1.ObjectIdentifier{2, 999, 1742, 6, 1}, Now: p.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(serveTSA(tsa))
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	v, err := signing.NewVerifier(signing.VerifierConfig{Roots: roots, Now: p.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return p, doc, bundle, srv.URL, v
}

func TestSignAndVerifyPDF(t *testing.T) {
	ctx := context.Background()
	p, doc, bundle, tsaURL, v := setup(t)
	plain, err := Render(bundle)
	if err != nil {
		t.Fatal(err)
	}
	ocspFn := signing.RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return p.OCSP(c) })
	signed, err := Sign(ctx, plain, Options{Signer: doc.Key, Chain: doc.Chain, TSAURL: tsaURL, Revocation: ocspFn,
		Name: doc.Cert.Subject.CommonName, Reason: "Prescription", Location: "Tehran", Now: p.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	reports, err := Verify(ctx, signed, v)
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || !reports[0].Passed() || reports[0].Level != "B-T" {
		t.Fatalf("%d reports: %s", len(reports), reports[0].Summary())
	}

	t.Run("tampered", func(t *testing.T) {
		bad := bytes.Replace(signed, []byte("Medicines"), []byte("Medicinez"), 1)
		rs, err := Verify(ctx, bad, v)
		if err != nil || rs[0].Passed() || rs[0].SubIndication != signing.HashFailure {
			t.Fatalf("tampered PDF: %v %s", err, rs[0].Summary())
		}
	})

	t.Run("pdfsig", func(t *testing.T) {
		pdfsig := testenv.Tool(t, "pdfsig")
		certutil := testenv.Tool(t, "certutil")
		dir := t.TempDir()
		root, _ := p.WritePEM(dir)
		nss := filepath.Join(dir, "nss")
		os.Mkdir(nss, 0o700)
		for _, args := range [][]string{
			{"-N", "-d", "sql:" + nss, "--empty-password"},
			{"-A", "-d", "sql:" + nss, "-n", "root", "-t", "CT,C,C", "-i", root},
		} {
			if out, err := exec.Command(certutil, args...).CombinedOutput(); err != nil {
				t.Fatalf("certutil %v: %v\n%s", args, err, out)
			}
		}
		f := filepath.Join(dir, "rx.pdf")
		os.WriteFile(f, signed, 0o644)
		if d := os.Getenv("PADES_DEBUG_DIR"); d != "" {
			sigs, _ := Signatures(signed)
			os.WriteFile(filepath.Join(d, "sig.p7s"), sigs[0].CMS, 0o644)
			os.WriteFile(filepath.Join(d, "content.bin"), sigs[0].Signed, 0o644)
			p.WritePEM(d)
			os.WriteFile(filepath.Join(d, "rx.pdf"), signed, 0o644)
		}
		// Not -no-ocsp: poppler 22.12 then reports "Unknown issue with Certificate" for certificates that name
		// no revocation source at all, as testpki's do. They name no OCSP URL either, so no request is made.
		out, _ := exec.Command(pdfsig, "-nssdir", "sql:"+nss, f).CombinedOutput()
		s := string(out)
		if !strings.Contains(s, "Signature is Valid") || !strings.Contains(s, "Certificate is Trusted") {
			t.Fatalf("pdfsig:\n%s", s)
		}
	})
}

// serveTSA answers RFC 3161 HTTP requests (RFC 3161 §3.4) with t: the tests' stand-in for the api package's
// POST /tsa handler.
func serveTSA(t *signing.TSA) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		resp, err := t.Respond(r.Context(), body)
		if err != nil {
			http.Error(w, "time-stamping unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/timestamp-reply")
		w.Write(resp)
	})
}
