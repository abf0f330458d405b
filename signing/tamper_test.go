package signing

import (
	"bytes"
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
)

// flip returns a copy of der with the byte at the first occurrence of needle (plus off) changed.
func flip(t *testing.T, der, needle []byte, off int) []byte {
	t.Helper()
	i := bytes.Index(der, needle)
	if i < 0 {
		t.Fatal("needle not found")
	}
	out := bytes.Clone(der)
	out[i+off] ^= 0x01
	return out
}

func swap(t *testing.T, der, old, new []byte) []byte {
	t.Helper()
	if len(old) != len(new) || !bytes.Contains(der, old) {
		t.Skip("certificates differ in length; swap needs equal lengths")
	}
	return bytes.Replace(der, old, new, 1)
}

func TestTampering(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	clock := f.pki.Clock
	start := clock.Now()

	bb := f.signBB(t, f.doc, f.physician)
	content, _ := Content(bb)
	_, sig := signatureOf(t, bb)

	// Another physician with a certificate of the same length, for the swap.
	var other *testpki.Leaf
	for i := 0; i < 50 && (other == nil || len(other.Cert.Raw) != len(f.doc.Cert.Raw)); i++ {
		other = f.issuePhysician(t, f.gen.Physician(), testpki.LeafOptions{})
	}

	// A revoked physician: B-B, and B-T whose timestamp comes after the revocation.
	revokedPh := f.gen.Physician()
	revoked := f.issuePhysician(t, revokedPh, testpki.LeafOptions{})
	revokedBB := f.signBB(t, revoked, revokedPh)
	clock.Advance(time.Minute)
	f.pki.Revoke(revoked.Cert.SerialNumber, clock.Now(), 1)
	clock.Advance(time.Minute)
	revokedBT := f.toBT(t, revokedBB)
	// Revoked after the timestamp: the B-LT signature still stands.
	laterPh := f.gen.Physician()
	later := f.issuePhysician(t, laterPh, testpki.LeafOptions{})
	laterBLT := f.toBLT(t, f.toBT(t, f.signBB(t, later, laterPh)), later)
	f.pki.Revoke(later.Cert.SerialNumber, clock.Now().Add(time.Hour), 1)

	// An expired chain: a certificate that ended yesterday; signed and time-stamped after.
	expPh := f.gen.Physician()
	expired := f.issuePhysician(t, expPh, testpki.LeafOptions{NotBefore: start.AddDate(-1, 0, 0), NotAfter: start.Add(-24 * time.Hour)})
	expiredBT := f.toBT(t, f.signBB(t, expired, expPh))
	// A certificate valid when it signed (no timestamp) but expired when validated.
	shortPh := f.gen.Physician()
	short := f.issuePhysician(t, shortPh, testpki.LeafOptions{NotBefore: start.Add(-time.Hour), NotAfter: start.Add(time.Hour)})
	shortBB := f.signBB(t, short, shortPh)

	// A TSA from another PKI.
	foreign, err := testpki.New(start)
	if err != nil {
		t.Fatal(err)
	}
	ftsaLeaf, _ := foreign.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "Rogue TSA"})
	ftsa, _ := NewTSA(ftsaLeaf.Key, ftsaLeaf.Chain, TSAConfig{Policy: tsaPolicy, Now: clock.Now})
	foreignBT, err := AddSignatureTimestamp(ctx, bb, ftsa)
	if err != nil {
		t.Fatal(err)
	}

	// An organisation seal is not a physician-signing certificate.
	seal, _ := f.pki.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Some Pharmacy"})
	sealed, err := Sign(ctx, content, SignOptions{Signer: seal.Key, Chain: seal.Chain, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	// Signing-time claimed one day after the timestamp.
	futureBB, _ := Sign(ctx, content, SignOptions{Signer: f.doc.Key, Chain: f.doc.Chain, Now: func() time.Time { return clock.Now().Add(24 * time.Hour) }})
	futureBT := f.toBT(t, futureBB)
	// A wrong policy hash.
	badPol := RxPolicy()
	badPol.Hash = make([]byte, 32)
	badPolicy, _ := Sign(ctx, content, SignOptions{Signer: f.doc.Key, Chain: f.doc.Chain, Now: clock.Now, Policy: &badPol})
	// Content whose patient national code has a bad check digit.
	badCode := bytes.Replace(content, []byte(`"value":"`), []byte(`"value":"x`), 1)
	badContent, _ := Sign(ctx, badCode, SignOptions{Signer: f.doc.Key, Chain: f.doc.Chain, Now: clock.Now})
	// A physician whose registration was suspended before signing.
	suspPh := f.gen.Physician()
	susp := f.issuePhysician(t, suspPh, testpki.LeafOptions{})
	f.registry[suspPh.CouncilNumber] = Registration{NationalCode: suspPh.NationalCode, Status: "suspended",
		ValidFrom: start.AddDate(-2, 0, 0), SuspendedFrom: start.AddDate(0, -1, 0)}
	suspBB := f.signBB(t, susp, suspPh)

	now := clock.Now()
	tests := []struct {
		name string
		der  []byte
		at   time.Time
		mod  func(*VerifierConfig)
		want SubIndication
	}{
		{"untouched passes", bb, now, nil, ""},
		{"content byte changed", flip(t, bb, content[:40], 20), now, nil, HashFailure},
		{"signature byte changed", flip(t, bb, sig, len(sig)-3), now, nil, SigCryptoFailure},
		{"truncated", bb[:len(bb)-1], now, nil, FormatFailure},
		{"certificate swapped", swap(t, bb, f.doc.Cert.Raw, other.Cert.Raw), now, nil, NoSigningCertificateFound},
		{"untrusted root", bb, now, func(c *VerifierConfig) { c.Trust.Anchors = []*x509.Certificate{foreign.Root} }, NoCertificateChainFound},
		{"revoked signer, no POE", revokedBB, now, nil, RevokedNoPOE},
		{"revoked before timestamp", revokedBT, now, nil, Revoked},
		{"revoked after timestamp stands", laterBLT, now.Add(2 * time.Hour), func(c *VerifierConfig) { c.Revocation = nil }, ""},
		{"expired at timestamp", expiredBT, now, nil, Expired},
		{"expired, no POE", shortBB, now.Add(2 * time.Hour), nil, OutOfBoundsNoPOE},
		{"timestamp from untrusted TSA", foreignBT, now, nil, NoPOE},
		{"no revocation source", bb, now, func(c *VerifierConfig) { c.Revocation = nil }, TryLater},
		{"organisation seal as prescriber", sealed, now, nil, ChainConstraintsFailure},
		{"signing-time after timestamp", futureBT, now, nil, TimestampOrderFailure},
		{"wrong policy hash", badPolicy, now, nil, SigConstraintsFailure},
		{"bad patient national code", badContent, now, nil, SigConstraintsFailure},
		{"council registration suspended", suspBB, now, nil, SigConstraintsFailure},
		{"registry unknown physician", bb, now, func(c *VerifierConfig) { c.Registry = mapRegistry{} }, SigConstraintsFailure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			v := f.verifier(t, func(c *VerifierConfig) {
				c.Now = func() time.Time { return at }
				if tc.mod != nil {
					tc.mod(c)
				}
			})
			r := v.Verify(ctx, tc.der)
			if r.SubIndication != tc.want || r.Indication != tc.want.Indication() {
				t.Fatalf("got %s, want %s/%s", r.Summary(), tc.want.Indication(), tc.want)
			}
		})
	}
}

// signatureOf returns the parsed SignerInfo signature value of der.
func signatureOf(t testing.TB, der []byte) (*signedData, []byte) {
	sd, err := parseOne(der)
	if err != nil {
		t.Fatal(err)
	}
	return sd, sd.signers[0].signature
}
