package signing

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
)

// TestNewVerifierNeedsTrustPolicy: no verifier trusts "whatever chains to a root" (issue 12 items 2, 3).
func TestNewVerifierNeedsTrustPolicy(t *testing.T) {
	f := newFixture(t)
	for _, mod := range []func(*TrustPolicy){
		func(p *TrustPolicy) { p.Anchors = nil },
		func(p *TrustPolicy) { p.SignerCAs = nil },
		func(p *TrustPolicy) { p.PrescriberPolicies = nil },
		func(p *TrustPolicy) { p.TSAs = []TrustedTSA{{}} },
	} {
		tp := f.trust()
		mod(tp)
		if _, err := NewVerifier(VerifierConfig{Trust: tp}); !errors.Is(err, ErrTrustPolicy) {
			t.Fatalf("incomplete policy accepted: %v", err)
		}
	}
	if _, err := NewVerifier(VerifierConfig{Roots: f.roots}); !errors.Is(err, ErrTrustPolicy) {
		t.Fatalf("roots alone accepted: %v", err)
	}
}

// TestCheckPrescriber: the exported signer constraints refuse a TSA, seal, facility, OCSP-responder certificate
// and one issued by a CA that is not a signer CA; they accept the physician (issue 12 items 3, 10).
func TestCheckPrescriber(t *testing.T) {
	f := newFixture(t)
	tp := f.trust()
	if err := tp.CheckPrescriber(f.doc.Cert, f.doc.Chain[1:]); err != nil {
		t.Fatalf("physician refused: %v", err)
	}
	for _, p := range []testpki.Profile{testpki.TSA, testpki.OrganisationSeal, testpki.FacilityAdapter, testpki.OCSPResponder} {
		l, err := f.pki.Issue(p, testpki.LeafOptions{CommonName: "x", SIAMID: "12345678", Licence: "L"})
		if err != nil {
			t.Fatal(err)
		}
		if err := tp.CheckPrescriber(l.Cert, l.Chain[1:]); !errors.Is(err, ErrNotPrescriber) {
			t.Fatalf("profile %d accepted as prescriber: %v", p, err)
		}
	}
	other := *tp
	other.SignerCAs = []*x509.Certificate{f.pki.Root}
	if err := other.CheckPrescriber(f.doc.Cert, f.doc.Chain[1:]); !errors.Is(err, ErrNotPrescriber) || !strings.Contains(err.Error(), "not a CA allowed") {
		t.Fatalf("issuer outside the signer CAs accepted: %v", err)
	}
	if err := tp.CheckPrescriber(f.doc.Cert, nil); !errors.Is(err, ErrNotPrescriber) {
		t.Fatalf("no issuer given accepted: %v", err)
	}
}

// TestAlgorithmSunset: RSA-2048 is acceptable until the end of 2030 (policy data with dates, TS 119 312
// style); a signature whose best signature time is after the sunset is CRYPTO_CONSTRAINTS_FAILURE_NO_POE, and
// a rule table without RSA-2048 refuses it outright (issue 12 item 5).
func TestAlgorithmSunset(t *testing.T) {
	tp := &TrustPolicy{}
	if tp.algorithm("rsa", 2048, time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)) != algOK {
		t.Fatal("RSA-2048 refused before its sunset")
	}
	if tp.algorithm("rsa", 2048, time.Date(2031, 1, 2, 0, 0, 0, 0, time.UTC)) != algSunset {
		t.Fatal("RSA-2048 accepted after its sunset")
	}
	if tp.algorithm("rsa", 3072, time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)) != algOK {
		t.Fatal("RSA-3072 refused")
	}
	for _, n := range []string{"ecdsa-p224", "ecdsa-p521", "sha1", "md5"} {
		if tp.algorithm(n, 0, t0) != algRefused {
			t.Fatalf("%s accepted", n)
		}
	}
	if tp.algorithm("rsa", 1024, t0) != algRefused {
		t.Fatal("RSA-1024 accepted")
	}

	// End to end: an RSA-2048 prescriber verified at a time after the sunset without a timestamp.
	f := newFixture(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	g := &gen{t: t, f: f, files: map[string][]byte{}}
	l := g.issue(g.physicianTemplate(f.physician), key, nil, nil)
	l.Cert.NotAfter = t0.AddDate(10, 0, 0)
	tmpl := g.physicianTemplate(f.physician)
	tmpl.NotAfter = time.Date(2032, 1, 1, 0, 0, 0, 0, time.UTC)
	l = g.issue(tmpl, key, nil, nil)
	der := g.signWith(key, l.Chain, f.physician, SignOptions{})
	late := time.Date(2031, 6, 1, 0, 0, 0, 0, time.UTC)
	v := f.verifier(t, func(c *VerifierConfig) { c.Now = func() time.Time { return late } })
	if r := v.Verify(context.Background(), der); r.SubIndication != CryptoConstraintsFailureNoPOE {
		t.Fatalf("RSA-2048 after its sunset: %s", r.Summary())
	}
}

// TestAdversarialCMSIsCheap: a 1 MiB CMS of 80,000 tiny signed attributes (18 s before) is refused as
// FORMAT_FAILURE in well under 50 ms (issue 12 item 8).
func TestAdversarialCMSIsCheap(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t, nil)
	der := adversarialCMS(1 << 20)
	if len(der) < 1<<20-256 {
		t.Fatalf("adversarial CMS is %d bytes", len(der))
	}
	start := time.Now()
	r := v.Verify(context.Background(), der)
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("took %v", d)
	}
	if r.SubIndication != FormatFailure {
		t.Fatal(r.Summary())
	}
	// The duplicate check is n log n even at the parser's bound: 64 attributes all of one type.
	if !duplicateAttr(make([]rawAttr, 64)) {
		t.Fatal("duplicates not found")
	}
}

// BenchmarkAdversarialCMS measures the refusal of the 1 MiB adversarial CMS.
func BenchmarkAdversarialCMS(b *testing.B) {
	f := newFixture(b)
	v := f.verifier(b, nil)
	der := adversarialCMS(1 << 20)
	b.SetBytes(int64(len(der)))
	for b.Loop() {
		if r := v.Verify(context.Background(), der); r.SubIndication != FormatFailure {
			b.Fatal(r.Summary())
		}
	}
}

// TestVerifyHonoursContext: a cancelled context stops validation (TRY_LATER), and the revocation source is not
// asked after cancellation (issue 12 item 8).
func TestVerifyHonoursContext(t *testing.T) {
	f := newFixture(t)
	bb := f.signBB(t, f.doc, f.physician)
	var asked atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	v := f.verifier(t, func(c *VerifierConfig) {
		c.Revocation = RevocationFunc(func(ctx context.Context, c, _ *x509.Certificate) ([]byte, error) {
			asked.Add(1)
			cancel()
			return nil, ctx.Err()
		})
	})
	r := v.Verify(ctx, bb)
	if r.SubIndication != TryLater || asked.Load() != 1 {
		t.Fatalf("%s; asked %d times", r.Summary(), asked.Load())
	}
	if r := v.Verify(ctx, bb); r.SubIndication != TryLater || !strings.Contains(r.Reason, "stopped") {
		t.Fatalf("cancelled: %s", r.Summary())
	}
}

// TestTimeBudget: a document that outlives the policy's time budget is TRY_LATER.
func TestTimeBudget(t *testing.T) {
	f := newFixture(t)
	bb := f.signBB(t, f.doc, f.physician)
	v := f.verifier(t, func(c *VerifierConfig) {
		c.Trust.Limits.Budget = 20 * time.Millisecond
		c.Revocation = RevocationFunc(func(ctx context.Context, c, _ *x509.Certificate) ([]byte, error) {
			time.Sleep(30 * time.Millisecond)
			return nil, errors.New("slow")
		})
		c.CRLs = CRLFunc(func(context.Context, string) ([]byte, error) { return nil, errors.New("none") })
	})
	if r := v.Verify(context.Background(), bb); r.SubIndication != TryLater {
		t.Fatal(r.Summary())
	}
}

// TestFetchedCRLCachedUntilNextUpdate: a CRL fetched from a distribution point is reused until its nextUpdate
// and fetched again after it (issue 12 item 6).
func TestFetchedCRLCachedUntilNextUpdate(t *testing.T) {
	f := newFixture(t)
	var fetches atomic.Int32
	clock := f.pki.Clock
	v := f.verifier(t, func(c *VerifierConfig) {
		c.Now = clock.Now
		c.CRLs = CRLFunc(func(_ context.Context, url string) ([]byte, error) {
			fetches.Add(1)
			return f.pki.RootCRL()
		})
	})
	for i := 0; i < 3; i++ {
		bb := f.signBB(t, f.doc, f.physician)
		if r := v.Verify(context.Background(), bb); !r.Passed() {
			t.Fatal(r.Summary())
		}
		clock.Advance(time.Minute)
	}
	// Each verification needs a CRL issued after its best signature time: the cached one is stale after
	// 5 minutes of clock skew, so only then is the distribution point asked again.
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for three verifications within the CRL's freshness", n)
	}
	clock.Advance(25 * time.Hour) // past nextUpdate
	f.doc = f.issuePhysician(t, f.physician, testpki.LeafOptions{})
	bb := f.signBB(t, f.doc, f.physician)
	if r := v.Verify(context.Background(), bb); !r.Passed() {
		t.Fatal(r.Summary())
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after nextUpdate", n)
	}
}

// TestVerifyDetachedWithDSS: validation data given from outside the CMS (a PDF's DSS) is used for revocation,
// and Report.Used lists what the validation relied on (issue 12 items 4, 6).
func TestVerifyDetachedWithDSS(t *testing.T) {
	f := newFixture(t)
	pdf := []byte("%PDF byte range")
	der, err := Sign(context.Background(), pdf, SignOptions{Signer: f.doc.Key, Chain: f.doc.Chain, Now: f.pki.Clock.Now, PAdES: true})
	if err != nil {
		t.Fatal(err)
	}
	ocspDoc, _ := f.pki.OCSP(f.doc.Cert)
	crl, _ := f.pki.RootCRL()
	offline := f.verifier(t, func(c *VerifierConfig) { c.Revocation, c.CRLs = nil, nil })
	if r := offline.VerifyDetachedWith(context.Background(), der, pdf, nil); r.SubIndication != TryLater {
		t.Fatalf("without DSS: %s", r.Summary())
	}
	r := offline.VerifyDetachedWith(context.Background(), der, pdf, &ValidationData{OCSPs: [][]byte{ocspDoc}, CRLs: [][]byte{crl}})
	if !r.Passed() || r.Used != nil {
		t.Fatalf("with DSS: %s (fetched %+v)", r.Summary(), r.Used)
	}
	// Online, Used lists what was fetched: the signer's OCSP response and the root's CRL.
	online := f.verifier(t, nil)
	if r := online.VerifyDetachedWith(context.Background(), der, pdf, nil); !r.Passed() || r.Used == nil || len(r.Used.OCSPs) != 1 || len(r.Used.CRLs) != 1 {
		t.Fatalf("online: %s (used %+v)", r.Summary(), r.Used)
	}
	if r.Prescriber == nil || r.Prescriber.Name != f.doc.Cert.Subject.CommonName {
		t.Fatalf("prescriber not from the certificate: %+v", r.Prescriber)
	}
	// A TLS-server certificate signing the same bytes is refused on the detached path too.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	g := &gen{t: t, f: f, files: map[string][]byte{}}
	tmpl := g.physicianTemplate(f.physician)
	tmpl.KeyUsage, tmpl.ExtKeyUsage, tmpl.ExtraExtensions, tmpl.Policies = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, nil, nil
	tl := g.issue(tmpl, key, nil, nil)
	tder, _ := Sign(context.Background(), pdf, SignOptions{Signer: key, Chain: tl.Chain, Now: f.pki.Clock.Now, PAdES: true})
	if r := offline.VerifyDetachedWith(context.Background(), tder, pdf, nil); r.SubIndication != ChainConstraintsFailure {
		t.Fatalf("TLS certificate on a PDF: %s", r.Summary())
	}
}

// TestTSATrustListPeriod: a TSA trusted by key counts only for time stamps inside its listed period.
func TestTSATrustListPeriod(t *testing.T) {
	f := newFixture(t)
	bt := f.toBT(t, f.signBB(t, f.doc, f.physician))
	spki := sha256.Sum256(f.tsaLeaf.Cert.RawSubjectPublicKeyInfo)
	for _, tc := range []struct {
		entry TrustedTSA
		want  SubIndication
	}{
		{TrustedTSA{SPKISHA256: spki[:]}, TryLater}, // accepted; then no revocation data offline
		{TrustedTSA{SPKISHA256: spki[:], NotAfter: t0.Add(-time.Hour)}, NoPOE},
		{TrustedTSA{SPKISHA256: spki[:], NotBefore: t0.Add(time.Hour)}, NoPOE},
	} {
		v := f.verifier(t, func(c *VerifierConfig) { c.Trust.TSAs = []TrustedTSA{tc.entry}; c.Revocation, c.CRLs = nil, nil })
		if r := v.Verify(context.Background(), bt); r.SubIndication != tc.want {
			t.Fatalf("entry %+v: %s", tc.entry, r.Summary())
		}
	}
}
