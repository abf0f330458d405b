package offline

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/veraison/go-cose"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/ids"
	"github.com/mohr-hix/mohr/signing"
)

// OfflineNote is printed with every offline result: what an offline check proves and what it cannot.
const OfflineNote = "offline check against a trust bundle: it proves the physician's card signed this payload and that " +
	"the certificate chains to the bundle's CAs and was not revoked when the bundle was issued; revocations after " +
	"that, the council registry and the full prescription's timestamps are not checked (docs/offline.md)"

// BundleInfo describes the trust bundle a check used.
type BundleInfo struct {
	Issued     time.Time `json:"issued"`
	NextUpdate time.Time `json:"nextUpdate"`
	Age        string    `json:"age"`
	SHA256     string    `json:"sha256"`
	Revoked    int       `json:"revokedInSnapshot"`
}

// Result is the outcome of an offline check: a validation report with the indications of full validation
// (ETSI EN 319 102-1, signing.Report), the payload that was signed (nil if it could not be read), the bundle
// used and the OfflineNote.
type Result struct {
	Report  *signing.Report `json:"report"`
	Payload *Payload        `json:"payload,omitempty"`
	Bundle  *BundleInfo     `json:"bundle,omitempty"`
	Offline bool            `json:"offline"`
	Note    string          `json:"note"`
}

func (res *Result) fail(s signing.SubIndication, format string, a ...any) *Result {
	r := res.Report
	r.Indication, r.SubIndication, r.Reason = s.Indication(), s, fmt.Sprintf(format, a...)
	return res
}

// Verify checks QR text offline against bundle at now: the COSE_Sign1 signature with the certificate in its
// x5chain header, that certificate's chain to the bundle's intermediates and roots (RFC 5280 §6 via
// crypto/x509) and the physician-signing profile, the bundle's revocation snapshot, the bundle's age, and that
// the payload's prescriber is the certificate's. Like validation of a CAdES B-B signature without a timestamp,
// the certificates must be valid at now: the payload's issue date is claimed, not proven. It never returns nil.
func Verify(text string, bundle *Bundle, now time.Time) *Result {
	now = now.UTC()
	res := &Result{Report: &signing.Report{Name: "offline QR", Level: "offline", ValidationTime: now, BestSignatureTime: now},
		Offline: true, Note: OfflineNote}
	r := res.Report
	if bundle == nil {
		return res.fail(signing.TryLater, "no trust bundle")
	}
	res.Bundle = &BundleInfo{Issued: bundle.Issued, NextUpdate: bundle.NextUpdate, Age: roundAge(bundle.Age(now)),
		SHA256: hex.EncodeToString(bundle.SHA256[:]), Revoked: bundle.RevokedCount}
	if now.Before(bundle.Issued.Add(-bundleSkew)) || !now.Before(bundle.NextUpdate) {
		return res.fail(signing.TryLater, "%s", (&BundleAgeError{Issued: bundle.Issued, NextUpdate: bundle.NextUpdate, Now: now}).Error())
	}
	raw, err := DecodeText(text, bundle.Intermediates)
	if errors.Is(err, ErrUnknownDictionary) {
		return res.fail(signing.NoCertificateChainFound, "%v", err)
	}
	if err != nil {
		return res.fail(signing.FormatFailure, "%v", err)
	}
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(raw); err != nil {
		return res.fail(signing.FormatFailure, "not a COSE_Sign1: %v", err)
	}
	alg, err := msg.Headers.Protected.Algorithm()
	if err != nil {
		return res.fail(signing.FormatFailure, "no algorithm in the protected header")
	}
	der, ok := msg.Headers.Protected[cose.HeaderLabelX5Chain].([]byte)
	if !ok {
		return res.fail(signing.NoSigningCertificateFound, "no signing certificate (x5chain) in the protected header")
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return res.fail(signing.NoSigningCertificateFound, "signing certificate: %v", err)
	}
	r.Signer = certInfo(leaf)
	if want, err := algorithmFor(leaf.PublicKey); err != nil || want != alg {
		return res.fail(signing.CryptoConstraintsFailure, "algorithm %v does not fit the signing key", alg)
	}
	vf, err := cose.NewVerifier(alg, leaf.PublicKey)
	if err != nil {
		return res.fail(signing.CryptoConstraintsFailure, "%v", err)
	}
	if err := msg.Verify(nil, vf); err != nil {
		return res.fail(signing.SigCryptoFailure, "the signature does not verify")
	}
	p, err := ParsePayload(msg.Payload)
	if err != nil {
		return res.fail(signing.FormatFailure, "%v", err)
	}
	res.Payload = p
	issued := p.IssuedAt()
	r.ClaimedSigningTime = &issued
	r.ContentSHA256 = hex.EncodeToString(p.ContentSHA256)

	// Chain to the bundle's CAs, at a time every certificate of the path is valid (then bounds at now below),
	// as the full verifier does.
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: bundle.roots, Intermediates: bundle.inter,
		CurrentTime: leaf.NotBefore.Add(time.Second), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			return res.fail(signing.NoCertificateChainFound, "no chain to the trust bundle's CAs: %v", err)
		}
		return res.fail(signing.CertificateChainGeneralFailure, "%v", err)
	}
	path := chains[0]
	for _, c := range path {
		r.Chain = append(r.Chain, *certInfo(c))
	}
	if len(path) < 2 {
		return res.fail(signing.CertificateChainGeneralFailure, "the signing certificate is a trust anchor")
	}
	for _, c := range path {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return res.fail(signing.OutOfBoundsNoPOE, "certificate %q is not valid at %s and an offline check has no proof of existence", c.Subject.String(), now.Format(time.RFC3339))
		}
	}
	pr, why := physician(leaf)
	if why != "" {
		return res.fail(signing.ChainConstraintsFailure, "%s", why)
	}
	pr.PatientCode = p.Patient
	r.Prescriber = pr

	// Revocation from the bundle's snapshot (the only revocation evidence an offline check has).
	ri := signing.RevocationInfo{Serial: r.Signer.Serial, Source: "trust bundle", Status: "good", ProducedAt: bundle.Issued,
		ThisUpdate: bundle.Issued, ResponseSHA256: res.Bundle.SHA256}
	if at, ok := bundle.RevokedAt(path[1], leaf.SerialNumber); ok {
		ri.Status, ri.RevokedAt = "revoked", &at
		r.Revocation = append(r.Revocation, ri)
		return res.fail(signing.RevokedNoPOE, "signing certificate revoked at %s (trust bundle of %s)", at.Format(time.RFC3339), bundle.Issued.Format(time.RFC3339))
	}
	r.Revocation = append(r.Revocation, ri)

	// Health-domain checks: the payload's prescriber is the certificate's.
	if p.Prescriber != pr.CouncilNumber {
		return res.fail(signing.SigConstraintsFailure, "the payload's council number is not the signer's")
	}
	r.Indication = signing.TotalPassed
	return res
}

// physician reads the physician-signing profile (ARCHITECTURE.md) of c: keyUsage contentCommitment only, the
// national code in subject serialNumber and the council number in the admission extension.
func physician(c *x509.Certificate) (*signing.Prescriber, string) {
	if c.KeyUsage != x509.KeyUsageContentCommitment {
		return nil, "signing certificate keyUsage must be contentCommitment only"
	}
	code, err := hixext.NationalCodeFromSubject(c)
	if err != nil {
		return nil, "signing certificate has no national code in subject serialNumber"
	}
	nc, err := ids.NationalCode(code)
	if err != nil {
		return nil, "national code in signing certificate: " + err.Error()
	}
	adm, err := hixext.ParseAdmission(c)
	if err != nil {
		return nil, "signing certificate: admission extension: " + err.Error()
	}
	cn, err := ids.CouncilNumber(adm.RegistrationNumber)
	if err != nil {
		return nil, "council number in signing certificate: " + err.Error()
	}
	return &signing.Prescriber{Name: c.Subject.CommonName, NationalCode: nc, CouncilNumber: cn, Registration: "not checked (offline)"}, ""
}

func certInfo(c *x509.Certificate) *signing.CertInfo {
	fp := sha256.Sum256(c.Raw)
	return &signing.CertInfo{Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: fmt.Sprintf("%x", c.SerialNumber),
		SHA256: hex.EncodeToString(fp[:]), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()}
}

// ErrBindingMismatch is returned by MatchesCAdES when a payload does not name the given CAdES signature.
var ErrBindingMismatch = errors.New("offline: the QR payload does not name this CAdES signature")

// MatchesCAdES checks the binding of docs/offline.md: the payload's ContentSHA256 is the SHA-256 of the
// content the CAdES signature envelopes (its message-digest) and its SignatureSHA256 the SHA-256 of the
// SignerInfo's signature value. A full (online) validation of cades and an offline check of p then speak of
// the same prescription and the same signature act.
func MatchesCAdES(p *Payload, cades []byte) error {
	b, err := signing.Binding(cades)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	if !bytes.Equal(p.ContentSHA256, b.ContentSHA256[:]) || !bytes.Equal(p.SignatureSHA256, b.SignatureSHA256[:]) {
		return ErrBindingMismatch
	}
	return nil
}
