package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// TestRxRenderSignVerifyPDF drives the printout through the binary: mohr rx render (prescriber from the
// certificate), mohr sign --pdf at B-LT (a TSA over HTTP, a CRL and an OCSP response into the DSS), mohr verify on the PDF, and
// pdfsig as the outside check; a certificate that names no prescriber is refused by rx render and sign --pdf.
func TestRxRenderSignVerifyPDF(t *testing.T) {
	dir := t.TempDir()
	p, err := testpki.New(time.Now().UTC().Truncate(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ph := rxgen.New(11).Physician()
	doc, err := p.Issue(testpki.PhysicianSigning, testpki.LeafOptions{CommonName: "دکتر سارا احمدی", NationalCode: ph.NationalCode, CouncilNumber: ph.CouncilNumber})
	if err != nil {
		t.Fatal(err)
	}
	seal, _ := p.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Pharmacy seal"})
	tsaLeaf, _ := p.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "Mohr Test TSA"})
	tsa, err := signing.NewTSA(tsaLeaf.Key, tsaLeaf.Chain, signing.TSAConfig{Policy: asn1.ObjectIdentifier{2, 999, 1742, 6, 1}, Now: p.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		resp, err := tsa.Respond(r.Context(), body)
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/timestamp-reply")
		w.Write(resp)
	}))
	defer srv.Close()
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: p.Clock.Now(), NextUpdate: p.Clock.Now().Add(24 * time.Hour)}, p.Intermediate, p.InterKey)
	if err != nil {
		t.Fatal(err)
	}
	ocspDER, err := p.OCSP(doc.Cert) // fetched beforehand, as the exchange would
	if err != nil {
		t.Fatal(err)
	}
	in := func(name string) string { return filepath.Join(dir, name) }
	root, _ := p.WritePEM(dir)
	for _, err := range []error{
		testpki.WriteCerts(in("dr.pem"), doc.Cert), testpki.WriteKey(in("dr-key.pem"), doc.Key),
		testpki.WriteCerts(in("seal.pem"), seal.Cert), testpki.WriteKey(in("seal-key.pem"), seal.Key),
		testpki.WriteCerts(in("tsa.pem"), tsaLeaf.Cert),
		os.WriteFile(in("intermediate.crl"), crl, 0o644),
		os.WriteFile(in("dr.ocsp"), ocspDER, 0o644),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	dd := in("data")
	mustMohr(t, dd, "rx", "generate", "--count", "1", "--seed", "11", "--out", in("rx"), "--national-code", ph.NationalCode, "--council", ph.CouncilNumber)
	rx := in("rx/rx-000001.json")

	if _, errOut, code := mohr(t, dd, "rx", "render", "--in", rx, "--out", in("bad.pdf"), "--signer", in("seal.pem")); code == 0 {
		t.Fatal("rx render printed a seal certificate as prescriber")
	} else if !strings.Contains(errOut, "council number") {
		t.Fatalf("rx render refusal: %s", errOut)
	}
	mustMohr(t, dd, "rx", "render", "--in", rx, "--out", in("rx.pdf"), "--signer", in("dr.pem"))
	if _, errOut, code := mohr(t, dd, "sign", "--pdf", "--key", "file:"+in("seal-key.pem"), "--cert", in("seal.pem"),
		"--chain", in("intermediate.pem"), "--in", in("rx.pdf"), "--out", in("bad-signed.pdf")); code == 0 || !strings.Contains(errOut, "prescriber") {
		t.Fatalf("sign --pdf with a seal certificate: exit %d: %s", code, errOut)
	}
	_, errOut, code := mohr(t, dd, "sign", "--pdf", "--key", "file:"+in("dr-key.pem"), "--cert", in("dr.pem"), "--chain", in("intermediate.pem"),
		"--in", in("rx.pdf"), "--out", in("rx-signed.pdf"), "--tsa", srv.URL, "--crl", in("intermediate.crl"), "--ocsp-response", in("dr.ocsp"))
	if code != 0 || !strings.Contains(errOut, "PAdES B-LT") {
		t.Fatalf("sign --pdf: exit %d: %s", code, errOut)
	}
	// The trust policy: the intermediate as anchor and signer CA (its CRL in the DSS covers the signer and the
	// TSA), the test TSA on the trust list.
	out, errOut, code := mohr(t, dd, "verify", "--no-registry", "--roots", in("chain.pem"), "--signer-cas", in("intermediate.pem"), "--tsa-cert", in("tsa.pem"),
		"--format", "json", in("rx-signed.pdf"))
	if code != 0 || !strings.Contains(out, `"indication":"TOTAL_PASSED"`) || !strings.Contains(out, `"level":"B-LT"`) {
		t.Fatalf("verify: exit %d\n%s\n%s", code, out, errOut)
	}
	// The outside check.
	pdfsig := testenv.Tool(t, "pdfsig")
	certutil := testenv.Tool(t, "certutil")
	nss := in("nss")
	os.Mkdir(nss, 0o700)
	for _, args := range [][]string{{"-N", "-d", "sql:" + nss, "--empty-password"}, {"-A", "-d", "sql:" + nss, "-n", "root", "-t", "CT,C,C", "-i", root}} {
		if o, err := exec.Command(certutil, args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil: %v\n%s", err, o)
		}
	}
	o, _ := exec.Command(pdfsig, "-nssdir", "sql:"+nss, in("rx-signed.pdf")).CombinedOutput()
	if s := string(o); !strings.Contains(s, "Signature is Valid") || !strings.Contains(s, "Certificate is Trusted") {
		t.Fatalf("pdfsig:\n%s", s)
	}
}
