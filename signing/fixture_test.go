package signing

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"github.com/mohr-hix/mohr/internal/testenv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// t0 is the pinned "now" of the tests.
var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

var tsaPolicy = asn1.ObjectIdentifier{2, 999, 1742, 6, 1}

type mapRegistry map[string]Registration

func (m mapRegistry) Registration(_ context.Context, n string) (Registration, error) {
	r, ok := m[n]
	if !ok {
		return Registration{}, ErrUnknownPhysician
	}
	return r, nil
}

type fixture struct {
	pki       *testpki.PKI
	doc       *testpki.Leaf
	physician rxgen.Physician
	tsaLeaf   *testpki.Leaf
	tsa       *TSA
	gen       *rxgen.Generator
	registry  mapRegistry
	roots     *x509.CertPool
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	p, err := testpki.New(t0)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{pki: p, gen: rxgen.New(1), registry: mapRegistry{}}
	f.gen.Now = p.Clock.Now
	f.physician = f.gen.Physician()
	f.doc = f.issuePhysician(t, f.physician, testpki.LeafOptions{})
	if f.tsaLeaf, err = p.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "Mohr Test TSA"}); err != nil {
		t.Fatal(err)
	}
	if f.tsa, err = NewTSA(f.tsaLeaf.Key, f.tsaLeaf.Chain, TSAConfig{Policy: tsaPolicy, Accuracy: time.Second, Now: p.Clock.Now}); err != nil {
		t.Fatal(err)
	}
	f.roots = x509.NewCertPool()
	f.roots.AddCert(p.Root)
	return f
}

func (f *fixture) issuePhysician(t testing.TB, ph rxgen.Physician, o testpki.LeafOptions) *testpki.Leaf {
	t.Helper()
	o.CommonName, o.NationalCode, o.CouncilNumber = "Dr. "+ph.Given+" "+ph.Family, ph.NationalCode, ph.CouncilNumber
	l, err := f.pki.Issue(testpki.PhysicianSigning, o)
	if err != nil {
		t.Fatal(err)
	}
	f.registry[ph.CouncilNumber] = Registration{CouncilNumber: ph.CouncilNumber, NationalCode: ph.NationalCode, Status: "active",
		ValidFrom: t0.AddDate(-5, 0, 0), ValidUntil: t0.AddDate(5, 0, 0)}
	return l
}

// trust is the fixture's trust policy: its root, its intermediate as the signer CA, testpki's physician
// policy and its TSA.
func (f *fixture) trust() *TrustPolicy {
	return &TrustPolicy{Anchors: []*x509.Certificate{f.pki.Root}, SignerCAs: []*x509.Certificate{f.pki.Intermediate},
		PrescriberPolicies: []asn1.ObjectIdentifier{testpki.OIDPhysicianSigningPolicy}, TSAs: []TrustedTSA{{Cert: f.tsaLeaf.Cert}}}
}

// crls serves the test PKI's CRLs by distribution point.
func (f *fixture) crls() CRLSource {
	return CRLFunc(func(_ context.Context, url string) ([]byte, error) {
		if url == testpki.RootCRLURL {
			return f.pki.RootCRL()
		}
		return nil, errors.New("no CRL at " + url)
	})
}

func (f *fixture) verifier(t testing.TB, mod func(*VerifierConfig)) *Verifier {
	t.Helper()
	cfg := VerifierConfig{Trust: f.trust(), Registry: f.registry, Now: f.pki.Clock.Now, CRLs: f.crls(),
		Revocation: RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return f.pki.OCSP(c) })}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// signBB signs a fresh prescription by leaf (physician ph) at the clock's time.
func (f *fixture) signBB(t testing.TB, leaf *testpki.Leaf, ph rxgen.Physician) []byte {
	t.Helper()
	content, err := f.gen.Prescription(ph)
	if err != nil {
		t.Fatal(err)
	}
	der, err := Sign(context.Background(), content, SignOptions{Signer: leaf.Key, Chain: leaf.Chain, Now: f.pki.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (f *fixture) toBT(t testing.TB, der []byte) []byte {
	t.Helper()
	out, err := AddSignatureTimestamp(context.Background(), der, f.tsa)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fixture) toBLT(t testing.TB, der []byte, leaf *testpki.Leaf) []byte {
	t.Helper()
	resp, err := f.pki.OCSP(leaf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	tsaResp, err := f.pki.OCSP(f.tsaLeaf.Cert)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := f.pki.RootCRL()
	if err != nil {
		t.Fatal(err)
	}
	out, err := AddValidationData(der, ValidationData{OCSPs: [][]byte{resp, tsaResp}, CRLs: [][]byte{crl}, Certs: [][]byte{f.pki.Responder.Cert.Raw, f.tsaLeaf.Cert.Raw}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var toolMu sync.Mutex

// needTool skips unless the outside tool is installed.
func needTool(t *testing.T, name string) string {
	t.Helper()
	return testenv.Tool(t, name)
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// serveTSA answers RFC 3161 HTTP requests (RFC 3161 §3.4) with t: the tests' stand-in for the api package's
// POST /tsa handler.
func serveTSA(t *TSA) http.Handler {
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
