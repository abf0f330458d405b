package signing

import (
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
