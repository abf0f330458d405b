package signing

// This file is the trust policy: every trust decision of validation comes from here (ARCHITECTURE.md "Trust
// decisions in validation come from one place"), never from "it chains to a root": which CAs may make a
// prescriber, which time-stamping units count as proof of existence, which algorithms are acceptable until
// when (ETSI TS 119 312), and how much a document may contain.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/ids"
)

// TrustPolicy is what a Verifier trusts. Build it from configuration (cmd/mohr: the `validation` section) and
// check it with Validate; a Verifier refuses to start without one.
type TrustPolicy struct {
	// Anchors are the trust anchors (the national root). Their own revocation is not checked: an anchor is
	// withdrawn by removing it here.
	Anchors []*x509.Certificate
	// SignerCAs are the issuing CAs allowed to issue prescribers' certificates (the health intermediate CA).
	// A CA matches by subject and public key, so a re-issued CA certificate with the same key still counts and
	// a rogue CA that copies the name and extensions does not.
	SignerCAs []*x509.Certificate
	// PrescriberPolicies are the certificate policy OIDs of the physician-signing profile; a prescriber's
	// certificate must assert one of them (RFC 5280 §4.2.1.4).
	PrescriberPolicies []asn1.ObjectIdentifier
	// TSAs is the trust list of time-stamping units; no other TSA gives a proof of existence.
	TSAs []TrustedTSA
	// Algorithms are the acceptable algorithms with their sunset dates; DefaultAlgorithms() when nil.
	Algorithms []AlgorithmRule
	// Limits bound what one document may contain; DefaultLimits() for zero fields.
	Limits Limits
}

// TrustedTSA is one entry of the TSA trust list, by certificate or by key, with the period in which its time
// stamps count (genTime inside [NotBefore, NotAfter]; zero bounds are open).
type TrustedTSA struct {
	// Cert trusts exactly this certificate.
	Cert *x509.Certificate
	// SPKISHA256 trusts any certificate for this key (SHA-256 of the DER SubjectPublicKeyInfo), so the TSA's
	// certificate can be renewed without a configuration change.
	SPKISHA256 []byte
	NotBefore  time.Time
	NotAfter   time.Time
}

// AlgorithmRule says an algorithm is acceptable for signatures made up to NotAfter (zero: no sunset known), as
// ETSI TS 119 312 tables do. Name is a hash ("sha256", "sha384", "sha512") or a key type ("ecdsa-p256",
// "ecdsa-p384", "rsa"); MinBits is the least RSA modulus size of the rule.
type AlgorithmRule struct {
	Name     string    `yaml:"name" json:"name"`
	MinBits  int       `yaml:"min_bits,omitempty" json:"minBits,omitempty"`
	NotAfter time.Time `yaml:"not_after,omitempty" json:"notAfter,omitempty"`
}

// DefaultAlgorithms is Mohr's reading of ETSI TS 119 312 for the policy's algorithms: SHA-2, ECDSA on P-256 and
// P-384, RSA of at least 3072 bits without a known sunset, RSA-2048 until the end of 2030. SHA-1, MD5, P-224,
// P-521 (not in the policy), Ed25519 and RSA below 2048 bits are not listed and so never acceptable.
func DefaultAlgorithms() []AlgorithmRule {
	return []AlgorithmRule{
		{Name: "sha256"}, {Name: "sha384"}, {Name: "sha512"},
		{Name: "ecdsa-p256"}, {Name: "ecdsa-p384"},
		{Name: "rsa", MinBits: 3072},
		{Name: "rsa", MinBits: 2048, NotAfter: time.Date(2030, 12, 31, 23, 59, 59, 0, time.UTC)},
	}
}

// Limits bound the counts of one document (EN 319 102-1 leaves resource limits to the validation policy);
// anything over them is FORMAT_FAILURE before any expensive work.
type Limits struct {
	SignedAttrs   int // signed attributes of one SignerInfo; 16
	UnsignedAttrs int // unsigned attributes of one SignerInfo; 16
	Certs         int // certificates in a SignedData plus validation data given; 16
	CRLs          int // CRLs embedded or given; 8
	OCSPs         int // OCSP responses embedded or given; 16
	Timestamps    int // signature timestamps; 4
	// Budget is the time one document may take (parsing, crypto, revocation fetches); 10 s.
	Budget time.Duration
}

// DefaultLimits returns the limits of a Verifier with zero Limits.
func DefaultLimits() Limits {
	return Limits{SignedAttrs: 16, UnsignedAttrs: 16, Certs: 16, CRLs: 8, OCSPs: 16, Timestamps: 4, Budget: 10 * time.Second}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	for _, p := range []struct{ v, def *int }{{&l.SignedAttrs, &d.SignedAttrs}, {&l.UnsignedAttrs, &d.UnsignedAttrs},
		{&l.Certs, &d.Certs}, {&l.CRLs, &d.CRLs}, {&l.OCSPs, &d.OCSPs}, {&l.Timestamps, &d.Timestamps}} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	if l.Budget <= 0 {
		l.Budget = d.Budget
	}
	return l
}

// ErrTrustPolicy: the trust policy is incomplete (a verifier without it would trust too much).
var ErrTrustPolicy = errors.New("signing: trust policy")

// Validate reports what the policy lacks: anchors, signer CAs, prescriber policies and at least one TSA.
func (p *TrustPolicy) Validate() error {
	switch {
	case p == nil:
		return fmt.Errorf("%w: none given", ErrTrustPolicy)
	case len(p.Anchors) == 0:
		return fmt.Errorf("%w: no trust anchors", ErrTrustPolicy)
	case len(p.SignerCAs) == 0:
		return fmt.Errorf("%w: no signer CAs (the CAs allowed to issue prescribers' certificates)", ErrTrustPolicy)
	case len(p.PrescriberPolicies) == 0:
		return fmt.Errorf("%w: no prescriber certificate policy OID", ErrTrustPolicy)
	}
	for i, t := range p.TSAs {
		if t.Cert == nil && len(t.SPKISHA256) != sha256.Size {
			return fmt.Errorf("%w: TSA %d has neither a certificate nor a 32-byte key hash", ErrTrustPolicy, i+1)
		}
	}
	return nil
}

// defaultAlgorithms is DefaultAlgorithms made once: algorithms runs several times per verification. Callers
// only read it.
var defaultAlgorithms = DefaultAlgorithms()

func (p *TrustPolicy) algorithms() []AlgorithmRule {
	if p.Algorithms == nil {
		return defaultAlgorithms
	}
	return p.Algorithms
}

// isSignerCA reports whether c is one of the configured signer CAs (same subject and key).
func (p *TrustPolicy) isSignerCA(c *x509.Certificate) bool {
	for _, s := range p.SignerCAs {
		if bytes.Equal(s.RawSubject, c.RawSubject) && bytes.Equal(s.RawSubjectPublicKeyInfo, c.RawSubjectPublicKeyInfo) {
			return true
		}
	}
	return false
}

// trustedTSA reports whether c is on the TSA trust list for a time stamp made at genTime.
func (p *TrustPolicy) trustedTSA(c *x509.Certificate, genTime time.Time) error {
	spki := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	for _, t := range p.TSAs {
		if (t.Cert != nil && bytes.Equal(t.Cert.Raw, c.Raw)) || (t.Cert == nil && bytes.Equal(t.SPKISHA256, spki[:])) {
			if (!t.NotBefore.IsZero() && genTime.Before(t.NotBefore)) || (!t.NotAfter.IsZero() && genTime.After(t.NotAfter)) {
				return fmt.Errorf("TSA %q is trusted only from %s to %s", c.Subject.String(), fmtTime(t.NotBefore), fmtTime(t.NotAfter))
			}
			return nil
		}
	}
	return fmt.Errorf("TSA %q is not on the TSA trust list", c.Subject.String())
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// keyName names a public key for the algorithm rules, with its size in bits.
func keyName(pub crypto.PublicKey) (string, int) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ecdsa-p256", 256
		case elliptic.P384():
			return "ecdsa-p384", 384
		case elliptic.P224():
			return "ecdsa-p224", 224
		case elliptic.P521():
			return "ecdsa-p521", 521
		}
		return "ecdsa-unknown", 0
	case *rsa.PublicKey:
		return "rsa", k.N.BitLen()
	}
	return fmt.Sprintf("%T", pub), 0
}

func hashName(h crypto.Hash) string {
	switch h {
	case crypto.SHA256:
		return "sha256"
	case crypto.SHA384:
		return "sha384"
	case crypto.SHA512:
		return "sha512"
	case crypto.SHA1:
		return "sha1"
	case crypto.MD5:
		return "md5"
	}
	return "unknown hash"
}

// algStatus is the result of an algorithm check: ok, never acceptable, or past its sunset at the time asked.
type algStatus int

const (
	algOK algStatus = iota
	algRefused
	algSunset
)

// algorithm checks name (with bits for RSA) against the rules at time at: refused when no rule admits it at
// all, sunset when the rules that admit it ended before at.
func (p *TrustPolicy) algorithm(name string, bits int, at time.Time) algStatus {
	st := algRefused
	for _, r := range p.algorithms() {
		if r.Name != name || bits < r.MinBits {
			continue
		}
		if r.NotAfter.IsZero() || !at.After(r.NotAfter) {
			return algOK
		}
		st = algSunset
	}
	return st
}

// certAlgorithms returns the algorithm status of a certificate's key and of the signature on it.
func (p *TrustPolicy) certAlgorithms(c *x509.Certificate, at time.Time, anchor bool) (algStatus, string) {
	name, bits := keyName(c.PublicKey)
	if st := p.algorithm(name, bits, at); st != algOK {
		return st, fmt.Sprintf("key of %q (%s, %d bits) is not acceptable", c.Subject.CommonName, name, bits)
	}
	if anchor { // a trust anchor's self-signature is not relied upon (RFC 5280 §6.1)
		return algOK, ""
	}
	h := sigHash(c.SignatureAlgorithm)
	if st := p.algorithm(hashName(h), 0, at); st != algOK {
		return st, fmt.Sprintf("signature on %q uses %s, which is not acceptable", c.Subject.CommonName, c.SignatureAlgorithm)
	}
	return algOK, ""
}

func sigHash(a x509.SignatureAlgorithm) crypto.Hash {
	switch a {
	case x509.SHA256WithRSA, x509.ECDSAWithSHA256, x509.SHA256WithRSAPSS:
		return crypto.SHA256
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		return crypto.SHA384
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		return crypto.SHA512
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1:
		return crypto.SHA1
	case x509.MD5WithRSA:
		return crypto.MD5
	}
	return 0
}

// chainAlgorithms checks every certificate of chain (leaf first, anchor last) at time at and returns the
// sub-indication: CRYPTO_CONSTRAINTS_FAILURE for an algorithm never acceptable, CRYPTO_CONSTRAINTS_FAILURE_NO_POE
// for one past its sunset (EN 319 102-1 §5.2.8).
func (p *TrustPolicy) chainAlgorithms(chain []*certEntry, at time.Time) (SubIndication, string) {
	for i, c := range chain {
		if st, why := p.certAlgorithms(c.cert, at, i == len(chain)-1); st != algOK {
			return algSub(st), why
		}
	}
	return "", ""
}

func algSub(st algStatus) SubIndication {
	if st == algSunset {
		return CryptoConstraintsFailureNoPOE
	}
	return CryptoConstraintsFailure
}

// Extended key usages that a prescriber's certificate may carry (none is the profile; RFC 9336 document
// signing and email protection do not conflict with signing prescriptions).
var (
	oidEKUDocumentSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 36}
)

// ErrNotPrescriber: a certificate the trust policy does not accept as a prescriber's signing certificate. The
// error text says which rule failed.
var ErrNotPrescriber = errors.New("signing: not a prescriber's signing certificate")

// CheckPrescriber checks cert against the signer constraints of the policy (docs/signature-policy.md §5.5): its
// issuer (chain[0], the next certificate up) is one of SignerCAs and issued it; it asserts a prescriber policy
// OID; keyUsage is contentCommitment (non-repudiation) only; it is not a CA; it has no conflicting extended key
// usage; the national code in subject serialNumber and the council number of the admission extension are
// present and well formed. It does not check validity dates or revocation (the verifier does, at the best
// signature time). `mohr sign` and the signing agent use it to refuse a wrong certificate before touching a
// card. The error wraps ErrNotPrescriber.
func (p *TrustPolicy) CheckPrescriber(cert *x509.Certificate, chain []*x509.Certificate) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrNotPrescriber}, a...)...)
	}
	if cert == nil {
		return bad("no certificate")
	}
	var issuer *x509.Certificate
	for _, c := range chain {
		if bytes.Equal(c.RawSubject, cert.RawIssuer) && cert.CheckSignatureFrom(c) == nil {
			issuer = c
			break
		}
	}
	if issuer == nil {
		return bad("the issuing CA of %q is not given", cert.Subject.CommonName)
	}
	if !p.isSignerCA(issuer) {
		return bad("issuer %q is not a CA allowed to issue prescribers' certificates", issuer.Subject.String())
	}
	e := &certEntry{cert: cert}
	if why := physicianProfile(e); why != "" {
		return bad("%s", why)
	}
	if why := p.prescriberExtras(cert); why != "" {
		return bad("%s", why)
	}
	return nil
}

// prescriberExtras are the signer constraints beyond the physician profile read at parse time: policy OID,
// not a CA, no conflicting EKU.
func (p *TrustPolicy) prescriberExtras(c *x509.Certificate) string {
	if c.IsCA || (c.BasicConstraintsValid && c.IsCA) {
		return "the signing certificate is a CA certificate"
	}
	if len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0 {
		for _, u := range c.ExtKeyUsage {
			if u != x509.ExtKeyUsageEmailProtection {
				return "the signing certificate has a conflicting extended key usage"
			}
		}
		for _, u := range c.UnknownExtKeyUsage {
			if !u.Equal(oidEKUDocumentSigning) {
				return "the signing certificate has a conflicting extended key usage " + u.String()
			}
		}
	}
	for _, want := range p.PrescriberPolicies {
		for _, have := range c.PolicyIdentifiers {
			if have.Equal(want) {
				return ""
			}
		}
		wo, err := x509.OIDFromInts(oidUints(want))
		if err != nil {
			continue
		}
		for _, have := range c.Policies {
			if have.Equal(wo) {
				return ""
			}
		}
	}
	return "the signing certificate does not assert the physician-signing certificate policy"
}

func oidUints(o asn1.ObjectIdentifier) []uint64 {
	out := make([]uint64, len(o))
	for i, v := range o {
		out[i] = uint64(v)
	}
	return out
}

// physicianProfile checks the physician-signing profile (ARCHITECTURE.md): keyUsage contentCommitment only, a
// well-formed national code in subject serialNumber "IDCIR-<code>" (EN 319 412-1 §5.1.3) and an admission
// extension with a council number. It returns "" when the profile holds.
func physicianProfile(e *certEntry) string {
	c := e.cert
	if c.KeyUsage != x509.KeyUsageContentCommitment {
		return "signing certificate keyUsage must be contentCommitment only"
	}
	code, err := hixext.NationalCodeFromSubject(c)
	if err != nil {
		return "signing certificate has no national code in subject serialNumber"
	}
	if e.nationalCode, err = ids.NationalCode(code); err != nil {
		return "national code in signing certificate: " + err.Error()
	}
	adm, err := hixext.ParseAdmission(c)
	if err != nil {
		return "signing certificate: admission extension: " + err.Error()
	}
	if e.council, err = ids.CouncilNumber(adm.RegistrationNumber); err != nil {
		return "council number in signing certificate: " + err.Error()
	}
	e.profession = adm.Profession
	return ""
}
