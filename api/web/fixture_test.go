package web

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/pades"
)

// t0 is the tests' pinned clock: 12 Azar 1405, 13:30 in Tehran.
var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

type mapRegistry map[string]signing.Registration

func (m mapRegistry) Registration(_ context.Context, n string) (signing.Registration, error) {
	r, ok := m[n]
	if !ok {
		return signing.Registration{}, signing.ErrUnknownPhysician
	}
	return r, nil
}

// fixture is a test PKI with a physician, a TSA, the exchange's seal, a verifier and the page's handler, and
// three signed prescriptions: one that passes, one changed after signing (fails) and one from a CA the
// verifier does not trust (undetermined).
type fixture struct {
	pki                      *testpki.PKI
	doc                      *testpki.Leaf
	h                        *Handler
	roots                    *x509.CertPool
	pass, fail, undetermined []byte
	unsignedPDF, signedPDF   []byte
}

const (
	council      = "123456"
	doctorCode   = "0499370899"
	patientCode  = "0013542419"
	medicineName = "Amoxicillin 500 mg capsule"
	dosageFa     = "هر ۸ ساعت یک کپسول، به مدت ۷ روز"
	patientFa    = "مریم احمدی"
	doctorFa     = "دکتر علی رضایی"
)

// bundle is a prescription written in Persian, as an EMR at a clinic in Shiraz would send it.
func bundle(t testing.TB, qty int) []byte {
	t.Helper()
	type obj = map[string]any
	pat, prac := "3f1c2b7a-0d7e-4c55-9a51-7b0c4e1d2a10", "7a6e0f55-1f3b-4f22-8f0e-2c9d1a6b5e33"
	b := obj{"resourceType": "Bundle", "id": "b1", "type": "collection", "timestamp": t0.Add(-time.Hour).Format(time.RFC3339),
		"entry": []obj{
			{"fullUrl": "urn:uuid:" + pat, "resource": obj{"resourceType": "Patient", "id": pat,
				"identifier": []obj{{"system": systemNationalCode, "value": patientCode}},
				"name":       []obj{{"family": "احمدی", "given": []string{"مریم"}}}, "gender": "female", "birthDate": "1988-05-14"}},
			{"fullUrl": "urn:uuid:" + prac, "resource": obj{"resourceType": "Practitioner", "id": prac,
				"identifier":    []obj{{"system": systemNationalCode, "value": doctorCode}, {"system": systemCouncilNumber, "value": council}},
				"name":          []obj{{"family": "رضایی", "given": []string{"علی"}, "prefix": []string{"دکتر"}}},
				"qualification": []obj{{"code": obj{"text": "متخصص داخلی"}}}}},
			{"fullUrl": "urn:uuid:m1", "resource": obj{"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
				"medicationCodeableConcept": obj{"text": medicineName},
				"subject":                   obj{"reference": "urn:uuid:" + pat}, "requester": obj{"reference": "urn:uuid:" + prac},
				"authoredOn":        t0.Add(-time.Hour).Format(time.RFC3339),
				"dosageInstruction": []obj{{"text": dosageFa}},
				"dispenseRequest":   obj{"numberOfRepeatsAllowed": 0, "quantity": obj{"value": qty, "unit": "کپسول"}}}},
			{"fullUrl": "urn:uuid:m2", "resource": obj{"resourceType": "MedicationRequest", "id": "m2", "status": "active", "intent": "order",
				"medicationCodeableConcept": obj{"text": "Paracetamol 500 mg tablet"},
				"subject":                   obj{"reference": "urn:uuid:" + pat}, "requester": obj{"reference": "urn:uuid:" + prac},
				"authoredOn":        t0.Add(-time.Hour).Format(time.RFC3339),
				"dosageInstruction": []obj{{"text": "در صورت درد، هر ۶ ساعت یک قرص"}},
				"dispenseRequest":   obj{"numberOfRepeatsAllowed": 1, "quantity": obj{"value": 10, "unit": "قرص"}}}},
		}}
	out, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	p, err := testpki.New(t0.Add(-2 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{pki: p, roots: x509.NewCertPool()}
	f.roots.AddCert(p.Root)
	doc, err := p.Issue(testpki.PhysicianSigning, testpki.LeafOptions{CommonName: "Dr. Ali Rezaei", NationalCode: doctorCode,
		CouncilNumber: council, Profession: "Internal Medicine"})
	if err != nil {
		t.Fatal(err)
	}
	f.doc = doc
	tsaLeaf, err := p.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "Mohr Test TSA"})
	if err != nil {
		t.Fatal(err)
	}
	tsa, err := signing.NewTSA(tsaLeaf.Key, tsaLeaf.Chain, signing.TSAConfig{Policy: asn1.ObjectIdentifier{2, 999, 1742, 6, 1},
		Accuracy: time.Second, Now: p.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	seal, err := p.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Health Information Exchange Seal"})
	if err != nil {
		t.Fatal(err)
	}
	reg := mapRegistry{council: {CouncilNumber: council, NationalCode: doctorCode, Name: doctorFa, Specialty: "متخصص داخلی",
		Status: "active", ValidFrom: t0.AddDate(-5, 0, 0), ValidUntil: t0.AddDate(5, 0, 0)}}

	sign := func(leaf *testpki.Leaf, content []byte) []byte {
		der, err := signing.Sign(ctx, content, signing.SignOptions{Signer: leaf.Key, Chain: leaf.Chain, Now: p.Clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		if der, err = signing.AddSignatureTimestamp(ctx, der, tsa); err != nil {
			t.Fatal(err)
		}
		return der
	}
	f.pass = sign(doc, bundle(t, 21))
	// Changed after signing: the quantity 21 becomes 42 inside the signed bytes.
	f.fail = bytes.Replace(sign(doc, bundle(t, 21)), []byte(`"value":21`), []byte(`"value":42`), 1)
	if bytes.Equal(f.fail, f.pass) || !bytes.Contains(f.fail, []byte(`"value":42`)) {
		t.Fatal("tampering did not apply")
	}
	// Signed under a root the verifier does not trust.
	other, err := testpki.New(t0.Add(-2 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.Issue(testpki.PhysicianSigning, testpki.LeafOptions{CommonName: "Dr. Ali Rezaei", NationalCode: doctorCode,
		CouncilNumber: council, Profession: "Internal Medicine"})
	if err != nil {
		t.Fatal(err)
	}
	f.undetermined = sign(stranger, bundle(t, 21))
	// The printout of the same prescription (signing/pades), unsigned and signed (PAdES B-T).
	if f.unsignedPDF, err = pades.Render(bundle(t, 21), doc.Cert); err != nil {
		t.Fatal(err)
	}
	if f.signedPDF, _, err = pades.Sign(ctx, f.unsignedPDF, pades.Options{Signer: doc.Key, Chain: doc.Chain, Timestamper: tsa,
		Now: p.Clock.Now}); err != nil {
		t.Fatal(err)
	}

	p.Clock.Set(t0)
	trust := &signing.TrustPolicy{Anchors: []*x509.Certificate{p.Root}, SignerCAs: []*x509.Certificate{p.Intermediate},
		PrescriberPolicies: []asn1.ObjectIdentifier{testpki.OIDPhysicianSigningPolicy}, TSAs: []signing.TrustedTSA{{Cert: tsaLeaf.Cert}}}
	v, err := signing.NewVerifier(signing.VerifierConfig{Trust: trust, Registry: reg, Now: p.Clock.Now,
		CRLs:       signing.CRLFunc(func(context.Context, string) ([]byte, error) { return p.RootCRL() }),
		Revocation: signing.RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return p.OCSP(c) })})
	if err != nil {
		t.Fatal(err)
	}
	if f.h, err = New(Config{Verifier: func() *signing.Verifier { return v }, Registry: reg, Seal: &signing.Seal{Signer: seal.Key, Chain: seal.Chain}, Now: p.Clock.Now,
		MaxUpload: 1 << 20, OnError: func(_ *http.Request, ref string, err error) { t.Errorf("OnError %s: %v", ref, err) }}); err != nil {
		t.Fatal(err)
	}
	return f
}

// server serves the handler the way package api mounts it (everything under Prefix).
func (f *fixture) server(t testing.TB) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle(Prefix, f.h)
	mux.Handle(Prefix+"/", f.h)
	// GET /trust-bundle, which package api serves beside the page; the browser check fetches it.
	mux.HandleFunc("/trust-bundle", func(w http.ResponseWriter, r *http.Request) {
		if f.h.cfg.TrustBundle == nil {
			http.NotFound(w, r)
			return
		}
		b, err := f.h.cfg.TrustBundle(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", `application/cose; cose-type="cose-sign1"`)
		w.Write(b)
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}
