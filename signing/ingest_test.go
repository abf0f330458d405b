package signing

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"github.com/mohr-hix/mohr/internal/testenv"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
)

type memStore struct {
	mu   sync.Mutex
	recs []Prescription
}

func (m *memStore) SavePrescription(_ context.Context, rec Prescription) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, rec)
	return nil
}

func TestIngest(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	sealLeaf, err := f.pki.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Mohr Health Information Exchange"})
	if err != nil {
		t.Fatal(err)
	}
	store := &memStore{}
	ocspFn := RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return f.pki.OCSP(c) })
	in := &Ingestor{Verifier: f.verifier(t, nil), Timestamper: f.tsa, Revocation: ocspFn, Store: store,
		Seal: Seal{Signer: sealLeaf.Key, Chain: sealLeaf.Chain}, Now: f.pki.Clock.Now}

	bb := f.signBB(t, f.doc, f.physician)
	f.pki.Clock.Advance(time.Minute)
	res, err := in.Ingest(ctx, bb)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Report.Passed() || res.Report.Level != "B-LT" || len(store.recs) != 1 {
		t.Fatalf("report %s, %d stored", res.Report.Summary(), len(store.recs))
	}
	rec := store.recs[0]
	if rec.CouncilNumber != f.physician.CouncilNumber || rec.PrescriberNationalCode != f.physician.NationalCode {
		t.Fatalf("record %+v", rec)
	}
	// The stored B-LT verifies on its own, later, without asking anyone for revocation data.
	later := f.verifier(t, func(c *VerifierConfig) {
		c.Revocation = nil
		c.Now = func() time.Time { return t0.AddDate(2, 0, 0) }
	})
	if r := later.Verify(ctx, rec.Signature); !r.Passed() {
		t.Fatal(r.Summary())
	}
	// The sealed report passes OpenSSL.
	if openssl := testenv.Tool(t, "openssl"); openssl != "" {
		dir := t.TempDir()
		root, _ := f.pki.WritePEM(dir)
		p := writeFile(t, dir, "report.p7s", res.SealedReport)
		out, err := exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", p, "-CAfile", root,
			"-purpose", "any", "-attime", "1772359200").CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"indication":"TOTAL_PASSED"`) {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
	}

	// A tampered prescription is rejected, reported, sealed and not stored.
	bad := flip(t, bb, []byte(`"resourceType"`), 3)
	res, err = in.Ingest(ctx, bad)
	if !errors.Is(err, ErrRejected) || res == nil || res.Report.Passed() || len(res.SealedReport) == 0 || len(store.recs) != 1 {
		t.Fatalf("tampered: err %v", err)
	}
}

// staleThenFresh answers OCSP with a response made earlier (a pre-signed one) and OCSPAfter with whatever fresh
// says; a FreshRevocationSource that ignores notBefore is modelled by fresh returning the old response.
type staleThenFresh struct {
	old   []byte
	fresh func() ([]byte, error)
}

func (s staleThenFresh) OCSP(context.Context, *x509.Certificate, *x509.Certificate) ([]byte, error) {
	return s.old, nil
}

func (s staleThenFresh) OCSPAfter(context.Context, *x509.Certificate, *x509.Certificate, time.Time) ([]byte, error) {
	return s.fresh()
}

// TestIngestRefusesStaleRevocation: B-LT never embeds an OCSP response produced before the signature timestamp
// (docs/signature-policy.md §4). A source that only has a pre-signed response makes ingestion fail with
// ErrStaleRevocation (retryable, nothing stored, not a rejection); a FreshRevocationSource is asked for one
// produced after the timestamp, and is not believed when it answers with an older one.
func TestIngestRefusesStaleRevocation(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	sealLeaf, err := f.pki.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Mohr Health Information Exchange"})
	if err != nil {
		t.Fatal(err)
	}
	old, err := f.pki.OCSP(f.doc.Cert) // pre-signed now
	if err != nil {
		t.Fatal(err)
	}
	f.pki.Clock.Advance(5*time.Minute + time.Second)
	store := &memStore{}
	mk := func(src RevocationSource) *Ingestor {
		return &Ingestor{Verifier: f.verifier(t, nil), Timestamper: f.tsa, Revocation: src, Store: store,
			Seal: Seal{Signer: sealLeaf.Key, Chain: sealLeaf.Chain}, Now: f.pki.Clock.Now}
	}
	bb := f.signBB(t, f.doc, f.physician)
	for name, src := range map[string]RevocationSource{
		"pre-signed only":          RevocationFunc(func(context.Context, *x509.Certificate, *x509.Certificate) ([]byte, error) { return old, nil }),
		"fresh source lies":        staleThenFresh{old: old, fresh: func() ([]byte, error) { return old, nil }},
		"fresh source for another": staleThenFresh{old: old, fresh: func() ([]byte, error) { return f.pki.OCSP(f.tsaLeaf.Cert) }},
	} {
		res, err := mk(src).Ingest(ctx, bb)
		if errors.Is(err, ErrRejected) || err == nil || len(store.recs) != 0 {
			t.Fatalf("%s: err %v, result %+v, %d stored", name, err, res, len(store.recs))
		}
		if name != "fresh source for another" && !errors.Is(err, ErrStaleRevocation) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	res, err := mk(staleThenFresh{old: old, fresh: func() ([]byte, error) { return f.pki.OCSP(f.doc.Cert) }}).Ingest(ctx, bb)
	if err != nil || res.Report.Level != "B-LT" || len(store.recs) != 1 {
		t.Fatalf("fresh: %v", err)
	}
}

// TestUpgrade: a B-B goes to each of B-T, B-LT and B-LTA (verified at that level, B-LTA also by OpenSSL), a
// signature at or above the level comes back unchanged, a bad level and a signature that does not pass are
// refused.
func TestUpgrade(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	ocspFn := RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return f.pki.OCSP(c) })
	in := &Ingestor{Verifier: f.verifier(t, nil), Timestamper: f.tsa, Revocation: ocspFn, Now: f.pki.Clock.Now}
	bb := f.signBB(t, f.doc, f.physician)
	f.pki.Clock.Advance(time.Minute)
	var lta []byte
	for _, level := range []string{"B-T", "B-LT", "B-LTA"} {
		out, r, err := in.Upgrade(ctx, bb, level)
		if err != nil || r.Level != level || !r.Passed() {
			t.Fatalf("%s: %v %v", level, err, r)
		}
		if again, _, err := in.Upgrade(ctx, out, level); err != nil || !bytes.Equal(again, out) {
			t.Fatalf("%s again: %v", level, err)
		}
		lta = out
	}
	if _, _, err := in.Upgrade(ctx, lta, "B-B"); !errors.Is(err, ErrLevel) {
		t.Fatalf("B-B: %v", err)
	}
	if _, r, err := in.Upgrade(ctx, flip(t, bb, []byte(`"resourceType"`), 3), "B-LT"); !errors.Is(err, ErrRejected) || r == nil {
		t.Fatalf("tampered: %v", err)
	}
	dir := t.TempDir()
	root, _ := f.pki.WritePEM(dir)
	out, err := exec.Command(testenv.Tool(t, "openssl"), "cms", "-verify", "-binary", "-inform", "DER", "-in", writeFile(t, dir, "lta.p7s", lta),
		"-CAfile", root, "-purpose", "any", "-attime", "1772359200", "-out", "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl cms -verify B-LTA: %v\n%s", err, out)
	}
}
