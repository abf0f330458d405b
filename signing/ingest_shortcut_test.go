package signing

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
)

// tsFunc is a Timestamper from a function.
type tsFunc func(ctx context.Context, h crypto.Hash, digest []byte) ([]byte, error)

func (f tsFunc) Timestamp(ctx context.Context, h crypto.Hash, digest []byte) ([]byte, error) {
	return f(ctx, h, digest)
}

// TestIngestShortcutsKeepChecks: the ingestion reuses what an earlier pass verified (signature verifications by
// their exact inputs, certificates and chains by fingerprint, the fresh OCSP response's check, the registry's
// answer) but never for bytes the upgrade added. With every cache warm from an accepted prescription of the same
// physician, an upgrade whose added parts are wrong is still refused and nothing is stored: a timestamp token
// over other data, a token whose signature is broken, an OCSP response for another certificate, and a fresh
// response saying the signer was revoked before the timestamp. And the report of an accepted prescription is
// the report a new Verifier, with no cache, gives for the stored signature.
func TestIngestShortcutsKeepChecks(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	sealLeaf, err := f.pki.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Mohr Health Information Exchange"})
	if err != nil {
		t.Fatal(err)
	}
	store := &memStore{}
	good := staleThenFresh{fresh: func() ([]byte, error) { return f.pki.OCSP(f.doc.Cert) }}
	var ts Timestamper = f.tsa
	var rev RevocationSource = good
	v := f.verifier(t, func(c *VerifierConfig) {
		c.Revocation = RevocationFunc(func(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error) {
			if cert.Equal(f.doc.Cert) {
				return rev.OCSP(ctx, cert, issuer) // the physician's pre-signed response
			}
			return f.pki.OCSP(cert)
		})
	})
	in := &Ingestor{Verifier: v, Store: store, Seal: Seal{Signer: sealLeaf.Key, Chain: sealLeaf.Chain}, Now: f.pki.Clock.Now,
		Timestamper: tsFunc(func(ctx context.Context, h crypto.Hash, d []byte) ([]byte, error) { return ts.Timestamp(ctx, h, d) }),
		Revocation:  staleThenFresh{fresh: func() ([]byte, error) { return rev.(staleThenFresh).fresh() }}}
	var err2 error
	if good.old, err2 = f.pki.OCSP(f.doc.Cert); err2 != nil {
		t.Fatal(err2)
	}
	rev = good

	// An accepted prescription warms every cache; its report is what a Verifier without caches says.
	bb := f.signBB(t, f.doc, f.physician)
	res, err := in.Ingest(ctx, bb)
	if err != nil || len(store.recs) != 1 {
		t.Fatalf("accepted: %v", err)
	}
	cold := f.verifier(t, nil)
	got, _ := json.Marshal(res.Report)
	want, _ := json.Marshal(cold.Verify(ctx, store.recs[0].Signature))
	if string(got) != string(want) {
		t.Fatalf("the ingestion's report differs from a full verification of the stored signature:\n%s\n%s", got, want)
	}
	if sealed, _ := Content(res.SealedReport); string(res.ReportJSON) != string(got) || string(sealed) != string(got) {
		t.Fatal("ReportJSON is not the report, or not what the sealed report signs")
	}
	if again, _ := json.Marshal(v.Verify(ctx, store.recs[0].Signature)); string(again) != string(want) {
		t.Fatalf("the warm verifier's report differs:\n%s\n%s", again, want)
	}

	refused := func(name string) {
		t.Helper()
		bb := f.signBB(t, f.doc, f.physician)
		f.pki.Clock.Advance(time.Second)
		res, err := in.Ingest(ctx, bb)
		if err == nil || len(store.recs) != 1 {
			t.Fatalf("%s: accepted (%d stored)", name, len(store.recs))
		}
		if errors.Is(err, ErrRejected) && (res == nil || res.Report.Passed()) {
			t.Fatalf("%s: rejected without a failing report", name)
		}
		t.Logf("%s: %v", name, err)
	}
	ts = tsFunc(func(ctx context.Context, h crypto.Hash, _ []byte) ([]byte, error) {
		other := sha256.Sum256([]byte("another signature"))
		return f.tsa.Timestamp(ctx, h, other[:])
	})
	refused("timestamp token over other data")
	ts = tsFunc(func(ctx context.Context, h crypto.Hash, d []byte) ([]byte, error) {
		tok, err := f.tsa.Timestamp(ctx, h, d)
		if err == nil {
			tok = append([]byte(nil), tok...)
			tok[len(tok)-1] ^= 1 // the last octet of the token's signature value
		}
		return tok, err
	})
	refused("timestamp token with a broken signature")
	ts = f.tsa
	rev = staleThenFresh{old: good.old, fresh: func() ([]byte, error) { return f.pki.OCSP(f.tsaLeaf.Cert) }}
	refused("fresh OCSP response for another certificate")
	rev = staleThenFresh{old: good.old, fresh: func() ([]byte, error) {
		f.pki.Revoke(f.doc.Cert.SerialNumber, f.pki.Clock.Now().Add(-time.Second), 1)
		return f.pki.OCSP(f.doc.Cert)
	}}
	refused("fresh OCSP response: revoked before the timestamp")
}

// TestTokenArchiveDue: for an ingested B-B, the archive due time computed from the token the ingestion added
// equals NextArchiveDueUnder over the whole stored signature, under the default algorithms and under policies
// whose algorithm rules end before the TSA certificate; a B-T input (two signature timestamps) carries no token.
func TestTokenArchiveDue(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	sealLeaf, err := f.pki.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Mohr Health Information Exchange"})
	if err != nil {
		t.Fatal(err)
	}
	store := &memStore{}
	in := &Ingestor{Verifier: f.verifier(t, nil), Timestamper: f.tsa, Store: store, Now: f.pki.Clock.Now,
		Revocation: RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return f.pki.OCSP(c) }),
		Seal:       Seal{Signer: sealLeaf.Key, Chain: sealLeaf.Chain}}
	if _, err := in.Ingest(ctx, f.signBB(t, f.doc, f.physician)); err != nil {
		t.Fatal(err)
	}
	rec := store.recs[0]
	if rec.SignatureTimestamp == nil {
		t.Fatal("no signature timestamp token recorded")
	}
	sunset := f.pki.Clock.Now().AddDate(0, 0, 200)
	with := func(rules ...AlgorithmRule) *TrustPolicy { p := f.trust(); p.Algorithms = rules; return p }
	for name, p := range map[string]*TrustPolicy{
		"default":      nil,
		"sha256 end":   with(AlgorithmRule{Name: "sha256", NotAfter: sunset}, AlgorithmRule{Name: "ecdsa-p256"}),
		"p256 end":     with(AlgorithmRule{Name: "sha256"}, AlgorithmRule{Name: "ecdsa-p256", NotAfter: sunset.AddDate(0, 0, 9)}),
		"not admitted": with(AlgorithmRule{Name: "sha384"}),
	} {
		for _, window := range []time.Duration{0, 60 * 24 * time.Hour} {
			want, werr := NextArchiveDueUnder(rec.Signature, window, p)
			got, gerr := TokenArchiveDue(rec.SignatureTimestamp, window, p)
			cached, cerr := in.Verifier.TokenArchiveDue(rec.SignatureTimestamp, window, p)
			if werr != nil || gerr != nil || cerr != nil || !got.Equal(want) || !cached.Equal(want) {
				t.Fatalf("%s, window %s: token %s %v, through the verifier %s %v, signature %s %v", name, window, got, gerr, cached, cerr, want, werr)
			}
		}
	}
	// A signature that already had a signature timestamp gets a second: no token, the store parses.
	if _, err := in.Ingest(ctx, f.toBT(t, f.signBB(t, f.doc, f.physician))); err != nil {
		t.Fatal(err)
	}
	if store.recs[1].SignatureTimestamp != nil {
		t.Fatal("a token recorded for a signature with two signature timestamps")
	}
}
