package signing

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/keys"
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

// faultySigner flips one bit of every signature its Signer makes while on is set (a misbehaving key).
type faultySigner struct {
	crypto.Signer
	on *atomic.Bool
}

func (s faultySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := s.Signer.Sign(r, digest, opts)
	if err == nil && s.on.Load() {
		sig[len(sig)-1] ^= 1
	}
	return sig, err
}

// TestIngestTSAVerifiedOnce: with the in-process TSA, the timestamp token's signature is verified once, by the
// TSA before it releases the token (keys.Verifying), and the ingestion's validations find that verification
// in the verifier's signature cache under exactly the key they compute from the token. The shortcut covers
// only the bytes the TSA made and verified: the same token with its signature changed is verified for real
// and refused, and a TSA whose key signs wrongly releases no token, so the ingestion stores nothing.
func TestIngestTSAVerifiedOnce(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	sealLeaf, err := f.pki.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Mohr Health Information Exchange"})
	if err != nil {
		t.Fatal(err)
	}
	var fault atomic.Bool
	tsa, err := NewTSA(faultySigner{f.tsaLeaf.Key, &fault}, f.tsaLeaf.Chain, TSAConfig{Policy: tsaPolicy, Accuracy: time.Second, Now: f.pki.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	store := &memStore{}
	v := f.verifier(t, nil)
	in := &Ingestor{Verifier: v, Timestamper: tsa, Store: store, Now: f.pki.Clock.Now,
		Revocation: RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return f.pki.OCSP(c) }),
		Seal:       Seal{Signer: sealLeaf.Key, Chain: sealLeaf.Chain}}

	// The TSA says what it verified, and that is the verification the validation of the token looks up.
	bt, tok, signed, err := addSignatureTimestamp(ctx, f.signBB(t, f.doc, f.physician), tsa)
	if err != nil || signed == nil {
		t.Fatalf("in-process TSA: %v, verified signature %v", err, signed)
	}
	var tsd signedData
	if err := parseSignedData(tok, &tsd); err != nil {
		t.Fatal(err)
	}
	si := &tsd.signers[0]
	sum, n := digestOf(crypto.SHA256, setTag, si.signedAttrsRaw[1:])
	key := sigCacheKey(sha256.Sum256(f.tsaLeaf.Cert.Raw), "ecdsa", crypto.SHA256, sum[:n], si.signature)
	if _, hit := v.sigs.get(key); hit {
		t.Fatal("remembered before the ingestion handed it over")
	}
	v.rememberSignedHere(signed)
	if _, hit := v.sigs.get(key); !hit {
		t.Fatal("the TSA's verification is not found under the key the validation computes")
	}
	if r := v.Verify(ctx, bt); r.Indication == TotalFailed || len(r.Timestamps) != 1 || !r.Timestamps[0].Valid {
		t.Fatalf("B-T with the remembered token: %s/%s %+v", r.Indication, r.SubIndication, r.Timestamps)
	}
	// The same B-T with the token's signature changed (its last octet): verified for real, refused.
	broken := append([]byte(nil), bt...)
	broken[len(broken)-1] ^= 1
	if r := v.Verify(ctx, broken); len(r.Timestamps) == 1 && r.Timestamps[0].Valid {
		t.Fatalf("a token whose signature was changed after the TSA verified it was accepted: %+v", r.Timestamps)
	}

	// A whole ingestion through the shortcut gives the report a verifier without caches gives.
	res, err := in.Ingest(ctx, f.signBB(t, f.doc, f.physician))
	if err != nil || len(store.recs) != 1 {
		t.Fatalf("accepted: %v", err)
	}
	got, _ := json.Marshal(res.Report)
	want, _ := json.Marshal(f.verifier(t, nil).Verify(ctx, store.recs[0].Signature))
	if string(got) != string(want) {
		t.Fatalf("the ingestion's report differs from a full verification of the stored signature:\n%s\n%s", got, want)
	}

	// A TSA key that signs wrongly: no token leaves the TSA, nothing is remembered or stored.
	fault.Store(true)
	f.pki.Clock.Advance(time.Second)
	if _, err := in.Ingest(ctx, f.signBB(t, f.doc, f.physician)); !errors.Is(err, ErrTimestamp) || !errors.Is(err, keys.ErrBadSignature) {
		t.Fatalf("faulty TSA key: %v", err)
	}
	if len(store.recs) != 1 {
		t.Fatalf("%d prescriptions stored with a faulty TSA key", len(store.recs))
	}
}
