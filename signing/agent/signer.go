package agent

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrSignerRefused: the key's signing certificate does not satisfy the signer policy (it does not chain to
// the configured roots, is not valid now, lacks the non-repudiation key usage or the physician-signing
// certificate policy). Signatures made with it would not pass at the exchange, so no session opens.
// *SignerError says why.
var ErrSignerRefused = errors.New("agent: the signing certificate is not accepted")

// SignerError is a refused signing certificate; Reason is a sentence for the physician (no secrets).
type SignerError struct {
	Reason string
	Err    error
}

func (e *SignerError) Error() string {
	return "agent: the signing certificate is not accepted: " + e.Reason
}

// Is matches ErrSignerRefused.
func (e *SignerError) Is(target error) bool { return target == ErrSignerRefused }

// Unwrap returns the underlying error, if any.
func (e *SignerError) Unwrap() error { return e.Err }

// SignerPolicy is what the signing certificate of a key must satisfy before the agent asks the physician for
// the PIN (issue 19 item 12): the checks the exchange's validation makes of the signer (ETSI EN 319 102-1
// §5.2.6 X.509 certificate validation, and the HIX-Rx-CAdES signature policy's signer constraints), made at
// session open so that a card holding only its factory certificate, or an expired or foreign one, is
// refused with a reason instead of producing prescriptions that are INDETERMINATE at the exchange.
type SignerPolicy struct {
	// Roots are the trust anchors (the exchange's root). Required.
	Roots *x509.CertPool
	// Policy, if set, is the certificate policy the signing certificate must carry (RFC 5280 §4.2.1.4):
	// the physician-signing profile's OID.
	Policy asn1.ObjectIdentifier
}

// Check checks chain (the signing certificate first, then intermediates) at now: a path to Roots through the
// intermediates, every certificate valid at now, the leaf not a CA, with the contentCommitment
// (non-repudiation) key usage, and Policy among its certificate policies.
func (p SignerPolicy) Check(chain []*x509.Certificate, now time.Time) error {
	if p.Roots == nil {
		return &SignerError{Reason: "no trust anchors are configured (roots)"}
	}
	if len(chain) == 0 {
		return &SignerError{Reason: "the key has no certificate"}
	}
	leaf := chain[0]
	who := leaf.Subject.CommonName
	if leaf.IsCA {
		return &SignerError{Reason: fmt.Sprintf("the certificate of %q is a CA certificate", who)}
	}
	if now.Before(leaf.NotBefore) {
		return &SignerError{Reason: fmt.Sprintf("the certificate of %q is not valid before %s", who, leaf.NotBefore.UTC().Format(time.RFC3339))}
	}
	if now.After(leaf.NotAfter) {
		return &SignerError{Reason: fmt.Sprintf("the certificate of %q expired on %s", who, leaf.NotAfter.UTC().Format(time.RFC3339))}
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// Any extended key usage: the physician-signing profile has none (non-repudiation keys carry no EKU).
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: p.Roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return &SignerError{Reason: fmt.Sprintf("the certificate of %q (issuer %q) does not chain to the configured roots: the card is not enrolled with this exchange's CA (mohr card enrol)", who, leaf.Issuer.CommonName), Err: err}
	}
	if leaf.KeyUsage&x509.KeyUsageContentCommitment == 0 {
		return &SignerError{Reason: fmt.Sprintf("the certificate of %q does not allow non-repudiation (contentCommitment): it is not a signing certificate", who)}
	}
	if p.Policy != nil && !slices.ContainsFunc(leaf.PolicyIdentifiers, p.Policy.Equal) {
		return &SignerError{Reason: fmt.Sprintf("the certificate of %q lacks the physician-signing certificate policy %s", who, p.Policy)}
	}
	return nil
}
