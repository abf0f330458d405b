package pades

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/pdf"
	"github.com/digitorus/pkcs7"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

type fixture struct {
	p      *testpki.PKI
	doc    *testpki.Leaf
	bundle []byte
	tsa    *signing.TSA
	tsaURL string
	v      *signing.Verifier
	ocsp   signing.RevocationFunc
}

// The PKI runs on the wall clock here: pdfsig has no way to validate at a pinned time.
func setup(t testing.TB) *fixture {
	now := time.Now().UTC().Truncate(time.Second)
	p, err := testpki.New(now)
	if err != nil {
		t.Fatal(err)
	}
	g := rxgen.New(3)
	ph := g.Physician()
	doc, err := p.Issue(testpki.PhysicianSigning, testpki.LeafOptions{CommonName: "دکتر مریم احمدی", NationalCode: ph.NationalCode, CouncilNumber: ph.CouncilNumber})
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
	ocspFn := signing.RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return p.OCSP(c) })
	v, err := signing.NewVerifier(signing.VerifierConfig{Now: p.Clock.Now, Revocation: ocspFn,
		Trust: &signing.TrustPolicy{Anchors: []*x509.Certificate{p.Root}, SignerCAs: []*x509.Certificate{p.Intermediate},
			PrescriberPolicies: []asn1.ObjectIdentifier{testpki.OIDPhysicianSigningPolicy}, TSAs: []signing.TrustedTSA{{Cert: tsaLeaf.Cert}}},
		CRLs: signing.CRLFunc(func(context.Context, string) ([]byte, error) { return p.RootCRL() })})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{p: p, doc: doc, bundle: bundle, tsa: tsa, tsaURL: srv.URL, v: v, ocsp: ocspFn}
}

func (f *fixture) crl(t testing.TB) []byte {
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: f.p.Clock.Now().Add(-time.Minute), NextUpdate: f.p.Clock.Now().Add(24 * time.Hour),
	}, f.p.Intermediate, f.p.InterKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (f *fixture) sign(t testing.TB, level Level) []byte {
	t.Helper()
	plain, err := Render(f.bundle, f.doc.Cert)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Signer: f.doc.Key, Chain: f.doc.Chain, Name: f.doc.Cert.Subject.CommonName, Location: "Tehran", Now: f.p.Clock.Now}
	switch level {
	case LevelBLT:
		o.Revocation = f.ocsp
		rootCRL, err := f.p.RootCRL() // the intermediate's status, for the TSA's and the signer's chains
		if err != nil {
			t.Fatal(err)
		}
		o.CRLs = [][]byte{f.crl(t), rootCRL}
		fallthrough
	case LevelBT:
		o.Timestamper = &signing.HTTPTimestamper{URL: f.tsaURL}
	}
	signed, got, err := Sign(context.Background(), plain, o)
	if err != nil {
		t.Fatal(err)
	}
	if got != level {
		t.Fatalf("level %s, want %s", got, level)
	}
	return signed
}

func TestPAdESBaselineLevels(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	for _, level := range []Level{LevelBB, LevelBT, LevelBLT} {
		t.Run(string(level), func(t *testing.T) {
			signed := f.sign(t, level)
			sigs, err := Signatures(signed)
			if err != nil || len(sigs) != 1 {
				t.Fatalf("%d signatures: %v", len(sigs), err)
			}
			s := sigs[0]
			if s.SubFilter != SubFilterPAdES {
				t.Fatalf("SubFilter %q", s.SubFilter)
			}
			// EN 319 142-1 §5.2.1: signing-certificate-v2 present, signing-time absent, time in /M.
			p7, err := pkcs7.Parse(s.CMS)
			if err != nil {
				t.Fatal(err)
			}
			var oids []string
			for _, a := range p7.Signers[0].AuthenticatedAttributes {
				oids = append(oids, a.Type.String())
			}
			all := " " + strings.Join(oids, " ") + " "
			if strings.Contains(all, " 1.2.840.113549.1.9.5 ") || !strings.Contains(all, " 1.2.840.113549.1.9.16.2.47 ") ||
				strings.Contains(all, " 1.2.840.113583.1.1.8 ") {
				t.Fatalf("signed attributes %s", all)
			}
			if len(p7.Content) != 0 {
				t.Fatal("the CMS envelops content; PAdES is detached")
			}
			if !regexp.MustCompile(`/M \(D:\d{14}`).Match(signed) {
				t.Fatal("no /M signing time in the signature dictionary")
			}
			hasTS := false
			for _, a := range p7.Signers[0].UnauthenticatedAttributes {
				hasTS = hasTS || a.Type.String() == "1.2.840.113549.1.9.16.2.14"
			}
			if hasTS != (level != LevelBB) {
				t.Fatalf("signature timestamp present: %v at %s", hasTS, level)
			}

			reports, err := Verify(ctx, signed, f.v)
			if err != nil {
				t.Fatal(err)
			}
			if len(reports) != 1 || !reports[0].Passed() || reports[0].Level != string(level) {
				t.Fatalf("%s: %s (level %s)", level, reports[0].Summary(), reports[0].Level)
			}

			dss, err := ReadDSS(signed)
			if err != nil {
				t.Fatal(err)
			}
			if level != LevelBLT {
				if dss != nil {
					t.Fatal("DSS below B-LT")
				}
			} else {
				checkDSS(t, f, s, dss, signed)
			}
			pdfsigValidTrusted(t, f.p, signed)
			qpdfCheck(t, signed)
		})
	}
}

func checkDSS(t *testing.T, f *fixture, s Signature, dss *DSS, signedPDF []byte) {
	t.Helper()
	if dss == nil {
		t.Fatal("B-LT without a DSS")
	}
	has := func(list [][]byte, b []byte) bool {
		for _, x := range list {
			if bytes.Equal(x, b) {
				return true
			}
		}
		return false
	}
	if !has(dss.Certs, f.doc.Cert.Raw) || !has(dss.Certs, f.tsa.Certificate().Raw) || len(dss.CRLs) != 2 { // the intermediate's and the root's
		t.Fatalf("DSS: %d certs, %d CRLs", len(dss.Certs), len(dss.CRLs))
	}
	// One OCSP response for the signer and one for the TSA (the intermediate's issuer, the root, was not given).
	if len(dss.OCSPs) != 2 {
		t.Fatalf("DSS: %d OCSP responses", len(dss.OCSPs))
	}
	for _, c := range dss.CRLs {
		if _, err := x509.ParseRevocationList(c); err != nil {
			t.Fatalf("DSS CRL: %v", err)
		}
	}
	// The VRI key computed independently: SHA-1 of the /Contents hex string's bytes, upper-case hex.
	m := regexp.MustCompile(`/Contents<([0-9a-fA-F]+)>`).FindSubmatch(signedPDF)
	raw, _ := hex.DecodeString(string(m[1]))
	sum := sha1.Sum(raw)
	if _, ok := dss.VRI[strings.ToUpper(hex.EncodeToString(sum[:]))]; !ok {
		t.Fatalf("no VRI entry under the SHA-1 of /Contents; keys %v", dss.VRI)
	}
	vri, ok := dss.VRI[VRIKey(s.Contents)]
	if !ok || !s.HasVRI || len(vri.OCSPs) != 2 || len(vri.Certs) != len(dss.Certs) || len(vri.CRLs) != 2 {
		t.Fatalf("VRI for %s: %v %+v", VRIKey(s.Contents), ok, len(vri.OCSPs))
	}
	if len(s.Validation.OCSPs) != 2 || len(s.Validation.Certs) != len(dss.Certs) {
		t.Fatal("Signatures did not return the DSS values with the signature")
	}
}

func TestPAdESRefusesChanges(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	blt := f.sign(t, LevelBLT)
	sigs, _ := Signatures(blt)
	end := sigs[0].ByteRange[2] + sigs[0].ByteRange[3]

	// A page object replaced in an incremental update after the DSS update.
	pageUpdate := func(in []byte) []byte {
		rdr := regexp.MustCompile(`startxref\s+(\d+)\s+%%EOF\s*$`).FindSubmatch(in)
		roots := regexp.MustCompile(`/Root (\d+) 0 R`).FindAllSubmatch(in, -1)
		root := string(roots[len(roots)-1][1])
		var b bytes.Buffer
		b.Write(in)
		off := b.Len()
		b.WriteString("3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>\nendobj\n")
		x := b.Len()
		b.WriteString("xref\n3 1\n")
		b.WriteString(strings.Repeat("0", 10-len(strconv.Itoa(off))) + strconv.Itoa(off) + " 00000 n \n")
		b.WriteString("trailer\n<< /Size 100 /Root " + root + " 0 R /Prev " + string(rdr[1]) + " >>\nstartxref\n" + strconv.Itoa(x) + "\n%%EOF\n")
		return b.Bytes()
	}
	cases := []struct {
		name string
		pdf  []byte
		sub  signing.SubIndication
	}{
		{"content changed", bytes.Replace(blt, []byte("Tf"), []byte("TF"), 1), signing.HashFailure},
		{"page replaced after the DSS", pageUpdate(blt), signing.FormatFailure},
		{"page replaced after the signature", pageUpdate(blt[:end]), signing.FormatFailure},
		{"junk appended", append(bytes.Clone(blt), []byte("1 0 obj\n<< >>\nendobj\n")...), signing.FormatFailure},
		{"SubFilter unknown", bytes.Replace(blt, []byte("/SubFilter /ETSI.CAdES.detached"), []byte("/SubFilter /ETSI.CAdES.detachex"), 1), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs, err := Verify(ctx, c.pdf, f.v)
			if err != nil {
				t.Fatalf("no report: %v", err)
			}
			t.Log(rs[len(rs)-1].Reason)
			if rs[len(rs)-1].Passed() {
				t.Fatalf("accepted: %s", rs[len(rs)-1].Summary())
			}
			if c.sub != "" && rs[len(rs)-1].SubIndication != c.sub {
				t.Fatalf("%s", rs[len(rs)-1].Summary())
			}
		})
	}
	if err := CheckAppended(blt, end); err != nil {
		t.Fatalf("the DSS update itself refused: %v", err)
	}
}

// TestCatalogChangedAfterSignature: an update that keeps every object but rewrites the catalog (here to add
// an /OpenAction) is a change to the document, not validation data.
func TestCatalogChangedAfterSignature(t *testing.T) {
	f := setup(t)
	blt := f.sign(t, LevelBLT)
	rdr, err := pdf.NewReader(bytes.NewReader(blt), int64(len(blt)))
	if err != nil {
		t.Fatal(err)
	}
	root := rdr.Trailer().Key("Root")
	id, _ := objID(root)
	dssID, _ := objID(root.Key("DSS"))
	var b bytes.Buffer
	b.Write(blt)
	off := b.Len()
	fmt.Fprintf(&b, "%d 0 obj\n<< %s /DSS %d 0 R /OpenAction << /S /JavaScript /JS (app.alert\\(1\\)) >> >>\nendobj\n",
		id, catalogSansDSS(root), dssID)
	x := b.Len()
	fmt.Fprintf(&b, "xref\n%d 1\n%010d 00000 n \ntrailer\n<< /Size %d /Root %d 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n",
		id, off, rdr.Trailer().Key("Size").Int64(), id, rdr.XrefInformation.StartPos, x)
	rs, err := Verify(context.Background(), b.Bytes(), f.v)
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Passed() || !strings.Contains(rs[0].Reason, "catalog changed") {
		t.Fatalf("catalog rewritten: %s", rs[0].Summary())
	}
}

// TestDSSIsUsed: a verifier with no revocation source of its own validates B-LT from the DSS alone, and
// cannot validate B-T (no revocation data anywhere).
func TestDSSIsUsed(t *testing.T) {
	f := setup(t)
	trust := f.v.Trust()
	offline, err := signing.NewVerifier(signing.VerifierConfig{Trust: &trust, Now: f.p.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Verify(context.Background(), f.sign(t, LevelBLT), offline)
	if err != nil || !rs[0].Passed() || rs[0].Level != "B-LT" {
		t.Fatalf("B-LT offline: %v %s", err, rs[0].Summary())
	}
	rs, err = Verify(context.Background(), f.sign(t, LevelBT), offline)
	if err != nil || rs[0].Indication != signing.Indeterminate {
		t.Fatalf("B-T offline: %v %s", err, rs[0].Summary())
	}
}

// TestAddDSSTwice: a second DSS update keeps the first one's values and this signature's VRI entry.
func TestAddDSSTwice(t *testing.T) {
	f := setup(t)
	blt := f.sign(t, LevelBLT)
	more, err := AddDSS(blt, ValidationValues{Certs: [][]byte{f.p.Root.Raw}})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := ReadDSS(blt)
	after, err := ReadDSS(more)
	if err != nil {
		t.Fatal(err)
	}
	sigs, _ := Signatures(more)
	vri := after.VRI[VRIKey(sigs[0].Contents)]
	if len(after.Certs) != len(before.Certs)+1 || len(after.OCSPs) != len(before.OCSPs) || len(after.CRLs) != len(before.CRLs) ||
		len(vri.Certs) != len(before.Certs)+1 || len(vri.OCSPs) != 2 {
		t.Fatalf("second DSS: %d certs (was %d), %d OCSPs, VRI %d certs %d OCSPs", len(after.Certs), len(before.Certs), len(after.OCSPs), len(vri.Certs), len(vri.OCSPs))
	}
	rs, err := Verify(context.Background(), more, f.v)
	if err != nil || !rs[0].Passed() {
		t.Fatalf("after a second DSS update: %v %s", err, rs[0].Summary())
	}
	qpdfCheck(t, more)
	pdfsigValidTrusted(t, f.p, more)
}

func TestSignRefusesNonPrescribers(t *testing.T) {
	f := setup(t)
	plain, _ := Render(f.bundle, nil)
	for _, pr := range []testpki.Profile{testpki.OrganisationSeal, testpki.FacilityAdapter, testpki.OCSPResponder, testpki.TSA} {
		l, err := f.p.Issue(pr, testpki.LeafOptions{CommonName: "not a prescriber", SIAMID: "SIAM-10001", Licence: "LIC/1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := Sign(context.Background(), plain, Options{Signer: l.Key, Chain: l.Chain}); !errors.Is(err, ErrNotPrescriber) {
			t.Errorf("profile %d: %v", pr, err)
		}
	}
}

// TestVerifyRefusesNonPrescriberPDF: a printout signed (bypassing Sign's own check) with a certificate that
// is not a prescriber's does not pass verification (issue 12 item 4: the detached path checks the signer).
func TestVerifyRefusesNonPrescriberPDF(t *testing.T) {
	f := setup(t)
	plain, _ := Render(f.bundle, nil)
	for _, pr := range []testpki.Profile{testpki.OrganisationSeal, testpki.FacilityAdapter, testpki.OCSPResponder} {
		l, err := f.p.Issue(pr, testpki.LeafOptions{CommonName: "not a prescriber", SIAMID: "SIAM-10001", Licence: "LIC/1"})
		if err != nil {
			t.Fatal(err)
		}
		signed, _, err := signUnchecked(context.Background(), plain, Options{Signer: l.Key, Chain: l.Chain, Timestamper: f.tsa}, false)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := Verify(context.Background(), signed, f.v)
		if err != nil || rs[0].Passed() {
			t.Errorf("profile %d: %v %s", pr, err, rs[0].Summary())
		}
	}
}

func TestSignRefusesBLTWithoutTimestamp(t *testing.T) {
	f := setup(t)
	plain, _ := Render(f.bundle, f.doc.Cert)
	if _, _, err := Sign(context.Background(), plain, Options{Signer: f.doc.Key, Chain: f.doc.Chain, Revocation: f.ocsp}); err != ErrLevel {
		t.Fatalf("B-LT without B-T: %v", err)
	}
}

func tool(t *testing.T, name string) string {
	t.Helper()
	return testenv.Tool(t, name)
}

func pdfsigValidTrusted(t *testing.T, p *testpki.PKI, signed []byte) {
	t.Helper()
	pdfsig, certutil := tool(t, "pdfsig"), tool(t, "certutil")
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
	// Not -no-ocsp: poppler 22.12 then reports "Unknown issue with Certificate" for certificates that name
	// no revocation source at all, as testpki's do. They name no OCSP URL either, so no request is made.
	out, _ := exec.Command(pdfsig, "-nssdir", "sql:"+nss, f).CombinedOutput()
	s := string(out)
	if !strings.Contains(s, "Signature is Valid") || !strings.Contains(s, "Certificate is Trusted") ||
		!strings.Contains(s, "ETSI.CAdES.detached") {
		t.Fatalf("pdfsig:\n%s", s)
	}
}

func qpdfCheck(t *testing.T, pdf []byte) {
	t.Helper()
	qpdf := tool(t, "qpdf")
	f := filepath.Join(t.TempDir(), "x.pdf")
	os.WriteFile(f, pdf, 0o644)
	if out, err := exec.Command(qpdf, "--check", f).CombinedOutput(); err != nil {
		t.Fatalf("qpdf --check: %v\n%s", err, out)
	}
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
