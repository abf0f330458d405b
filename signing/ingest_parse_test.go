package signing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
)

// parseCounter counts, through parseHook, how often parseSignedData parsed each DER (by SHA-256), and the
// documents among them that envelope content (the prescription's documents; timestamp tokens and sealed reports
// do not contain the bundle).
type parseCounter struct {
	mu      sync.Mutex
	content []byte
	n       map[[32]byte]int
	docs    map[[32]byte]bool
}

func countParses(t *testing.T, content []byte) *parseCounter {
	t.Helper()
	c := &parseCounter{content: content, n: map[[32]byte]int{}, docs: map[[32]byte]bool{}}
	h := func(der []byte) {
		fp := sha256.Sum256(der)
		c.mu.Lock()
		c.n[fp]++
		if bytes.Contains(der, c.content) {
			c.docs[fp] = true
		}
		c.mu.Unlock()
	}
	parseHook.Store(&h)
	t.Cleanup(func() { parseHook.Store(nil) })
	return c
}

// reset returns the counts so far of the documents that envelope the content, and of every DER, and starts again.
func (c *parseCounter) reset() (docs, all map[[32]byte]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	docs = map[[32]byte]int{}
	for fp := range c.docs {
		docs[fp] = c.n[fp]
	}
	all = c.n
	c.n, c.docs = map[[32]byte]int{}, map[[32]byte]bool{}
	return docs, all
}

// TestIngestParsesEachDocumentOnce: an ingestion parses each of its three documents (the B-B input, the B-T it
// builds, the B-LT it stores) exactly once, and hands the parsed form to validation, timestamping, the
// revocation upgrade, re-encoding and the stored content. The checks stay: a tampered content, a tampered
// signature value, a tampered signed attribute and a truncated input are refused (each parsed once, nothing
// stored), and the stored B-LT still passes a new Verifier and carries exactly the B-B's content.
func TestIngestParsesEachDocumentOnce(t *testing.T) {
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
	content, err := Content(bb)
	if err != nil {
		t.Fatal(err)
	}
	f.pki.Clock.Advance(time.Minute)
	c := countParses(t, content)
	res, err := in.Ingest(ctx, bb)
	if err != nil || len(store.recs) != 1 {
		t.Fatalf("ingest: %v (%d stored)", err, len(store.recs))
	}
	parsed, _ := c.reset()
	rec := store.recs[0]
	if len(parsed) != 3 {
		t.Errorf("%d distinct documents parsed, want 3 (B-B, B-T, B-LT)", len(parsed))
	}
	for fp, n := range parsed {
		if n != 1 {
			t.Errorf("document %x parsed %d times", fp[:6], n)
		}
	}
	if parsed[sha256.Sum256(bb)] != 1 || parsed[sha256.Sum256(rec.Signature)] != 1 {
		t.Errorf("input parsed %d times, stored B-LT %d times; want 1 each", parsed[sha256.Sum256(bb)], parsed[sha256.Sum256(rec.Signature)])
	}
	if !bytes.Equal(rec.Content, content) || res.Report.Level != "B-LT" {
		t.Fatalf("stored content differs from the B-B's, or level %s", res.Report.Level)
	}
	parseHook.Store(nil)
	if r := f.verifier(t, nil).Verify(ctx, rec.Signature); !r.Passed() || r.Level != "B-LT" {
		t.Fatalf("stored signature under a new verifier: %s", r.Summary())
	}

	// Tampered inputs are still refused with a failing report, parsed once, and nothing is stored.
	c = countParses(t, content)
	sd, sig := signatureOf(t, bb)
	badSig := bytes.Clone(bb)
	badSig[bytes.Index(bb, sig)+len(sig)-1] ^= 1
	st, _ := findAttr(sd.signers[0].signedAttrs, dSigningTime)
	for _, tc := range []struct {
		name string
		der  []byte
		want SubIndication
	}{
		{"tampered content", flip(t, bb, []byte(`"resourceType"`), 3), HashFailure},
		{"tampered signature value", badSig, SigCryptoFailure},
		{"tampered signing-time", flip(t, bb, st.raw, len(st.raw)-2), SigCryptoFailure},
		{"truncated", bb[:len(bb)-1], FormatFailure},
	} {
		f.pki.Clock.Advance(time.Second)
		res, err := in.Ingest(ctx, tc.der)
		if !errors.Is(err, ErrRejected) || res == nil || res.Report.Passed() || len(res.SealedReport) == 0 || len(store.recs) != 1 {
			t.Fatalf("%s: err %v, %d stored", tc.name, err, len(store.recs))
		}
		if res.Report.SubIndication != tc.want {
			t.Errorf("%s: %s/%s, want %s", tc.name, res.Report.Indication, res.Report.SubIndication, tc.want)
		}
		if _, all := c.reset(); all[sha256.Sum256(tc.der)] != 1 {
			t.Errorf("%s: parsed %d times, want 1", tc.name, all[sha256.Sum256(tc.der)])
		}
	}
}
