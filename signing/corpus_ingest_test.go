package signing

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
)

// corpusIngestOnline lists the corpus rows whose manifest expectation assumes a validator with no way to fetch
// revocation data (TestCorpus validates offline), and what the ingestion node, which asks the OCSP responder
// and fetches CRLs, must decide instead ("" = accepted), and why.
var corpusIngestOnline = map[string]struct {
	want SubIndication
	why  string
}{
	"level-bb.p7s":                  {"", "B-B: TRY_LATER only offline; the node fetches the signer's status, timestamps and upgrades it"},
	"level-bt.p7s":                  {"", "B-T: TRY_LATER only offline; the node fetches the status"},
	"good-no-ts.p7s":                {"", "embedded OCSP too old; the node fetches a fresh one"},
	"ocsp-stale.p7s":                {"", "embedded OCSP before the timestamp; the node fetches a fresh one"},
	"crl-wrong-shard.p7s":           {"", "only another shard's CRL embedded; the node asks the OCSP responder"},
	"ocsp-responder-by-root.p7s":    {Revoked, "the rogue 'good' answer is ignored and the real responder says revoked before the timestamp"},
	"ocsp-responder-no-eku.p7s":     {Revoked, "the rogue 'good' answer is ignored and the real responder says revoked before the timestamp"},
	"ocsp-responder-no-nocheck.p7s": {Revoked, "the rogue 'good' answer is ignored and the real responder says revoked before the timestamp"},
	"ocsp-responder-seal.p7s":       {Revoked, "the rogue 'good' answer is ignored and the real responder says revoked before the timestamp"},
}

// TestCorpusThroughIngestion submits every enveloping file of the conformance corpus to the ingestion path
// (Ingestor: validate, add a signature timestamp, add fresh revocation data, validate the B-LT, store, seal):
// a file is accepted and stored exactly when the manifest expects TOTAL_PASSED, and refused (ErrRejected, a
// sealed report) with the manifest's indication and sub-indication otherwise, except the rows of
// corpusIngestOnline, whose expectation assumes no revocation source (checked against the listed outcome
// instead). Detached (PAdES) rows are skipped: ingestion takes enveloping CAdES. The ingestor trusts the corpus
// trust policy (root.pem, intermediate.pem, tsa.pem) and fetches revocation data as a node does; its TSA and
// OCSP responder are the corpus generator's own, regenerated here deterministically (its certificates must equal the
// committed trust material, so the keys are those the corpus was made with; OCSP producedAt is not pinned,
// so the files themselves are submitted as committed).
func TestCorpusThroughIngestion(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 12)
	g := generateCorpus(t)
	var entries []corpusEntry
	b, err := os.ReadFile(filepath.Join(corpusDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &entries); err != nil {
		t.Fatal(err)
	}
	// The regenerated PKI is the committed one (same keys): its root, intermediate and TSA certificates are.
	tp := corpusTrust(t, corpusDir)
	if !tp.Anchors[0].Equal(g.f.pki.Root) || !tp.SignerCAs[0].Equal(g.f.pki.Intermediate) || !tp.TSAs[0].Cert.Equal(g.f.tsaLeaf.Cert) {
		t.Fatal("the regenerated corpus PKI differs from the committed one: the generator is not deterministic")
	}
	online := RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return g.f.pki.OCSP(c) })
	v, err := NewVerifier(VerifierConfig{Trust: tp, Now: func() time.Time { return corpusNow }, Revocation: online, CRLs: g.f.crls()})
	if err != nil {
		t.Fatal(err)
	}
	sealLeaf, err := g.f.pki.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Mohr Health Information Exchange"})
	if err != nil {
		t.Fatal(err)
	}
	// The exchange's TSA and OCSP responder answer a minute before the validation time.
	g.f.pki.Clock.Set(corpusNow.Add(-time.Minute))
	store := &memStore{}
	in := &Ingestor{Verifier: v, Timestamper: g.f.tsa, Store: store, Now: g.f.pki.Clock.Now,
		Revocation: RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return g.f.pki.OCSP(c) }),
		Seal:       Seal{Signer: sealLeaf.Key, Chain: sealLeaf.Chain}}
	ctx := context.Background()
	accepted, refused := 0, 0
	for _, e := range entries {
		t.Run(e.File, func(t *testing.T) {
			want := e.SubIndication
			if o, ok := corpusIngestOnline[e.File]; ok {
				want = o.want
				t.Logf("%s: expected %s instead of %s/%s: %s", e.File, want.Indication(), e.Indication, e.SubIndication, o.why)
			}
			if e.Content != "" {
				t.Skip("detached (PAdES) row: ingestion takes an enveloping CAdES prescription")
			}
			der, err := os.ReadFile(filepath.Join(corpusDir, e.File))
			if err != nil {
				t.Fatal(err)
			}
			n := len(store.recs)
			res, err := in.Ingest(ctx, der)
			if want.Indication() == TotalPassed {
				if err != nil {
					t.Fatalf("%s (%s): not accepted: %v", e.File, e.Tests, err)
				}
				if !res.Report.Passed() || res.Report.Level != "B-LT" || len(store.recs) != n+1 || len(res.SealedReport) == 0 {
					t.Fatalf("%s: report %s level %s, %d stored", e.File, res.Report.Summary(), res.Report.Level, len(store.recs)-n)
				}
				accepted++
				return
			}
			if !errors.Is(err, ErrRejected) || res == nil || len(res.SealedReport) == 0 {
				t.Fatalf("%s (%s): want a sealed refusal, got %v", e.File, e.Tests, err)
			}
			if res.Report.Indication != want.Indication() || res.Report.SubIndication != want {
				t.Fatalf("%s (%s): refused with %s", e.File, e.Tests, res.Report.Summary())
			}
			if len(store.recs) != n {
				t.Fatalf("%s: refused but stored", e.File)
			}
			refused++
		})
	}
	if accepted == 0 || refused == 0 {
		t.Fatalf("ingestion: %d accepted, %d refused: the corpus should give both", accepted, refused)
	}
	t.Logf("ingestion: %d accepted, %d refused as expected", accepted, refused)
}
