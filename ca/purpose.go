package ca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrKeyReuse: the request's key is already certified for the other purpose (signing versus authentication).
var ErrKeyReuse = errors.New("ca: key already certified for another purpose")

// KeyPurpose is what a profile's key is for. A key certified for one purpose is never certified for the
// other: a non-repudiation or sealing key that could also log in (or answer a TLS handshake) signs whatever a
// peer puts in front of it, which defeats the "sole control" a signature rests on (ETSI EN 319 411-1
// GEN-6.5.1-03, EN 319 412-2 §4.3.2: separate keys for signing and authentication).
type KeyPurpose int

const (
	// PurposeSigning keys make signatures that others rely on: documents, seals, time-stamps, OCSP responses.
	PurposeSigning KeyPurpose = iota + 1
	// PurposeAuth keys prove who is at the other end of a connection.
	PurposeAuth
)

// PurposeOf returns the key purpose of a profile.
func PurposeOf(profile string) KeyPurpose {
	switch profile {
	case ProfilePhysicianSigning, ProfileOrganisationSeal, ProfileTSA, ProfileOCSPResponder:
		return PurposeSigning
	}
	return PurposeAuth
}

// checkKeyPurpose refuses r when the same subject (the binding the store lists certificates by) already holds
// a certificate of the other key purpose for the same public key. Certificates of other subjects cannot share
// the key without sharing the private key, which the CSR's proof of possession already rules out for honest
// subjects; the check is about one holder using one key for both.
func (c *CA) checkKeyPurpose(ctx context.Context, r Request) error {
	spki, err := x509.MarshalPKIXPublicKey(r.CSR.PublicKey)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrWeakKey, err)
	}
	sum := sha256.Sum256(spki)
	skid := sum[:20] // template's SubjectKeyId
	want := PurposeOf(r.Profile)
	after := ""
	for {
		recs, err := c.store.Certificates(ctx, CertFilter{Subject2: bindingOf(r), After: after, Limit: 1000})
		if err != nil {
			return fmt.Errorf("ca: key purpose check: %w", err)
		}
		for _, rec := range recs {
			after = rec.Serial
			if rec.DER == nil || PurposeOf(rec.Profile) == want {
				continue
			}
			cert, err := x509.ParseCertificate(rec.DER)
			if err != nil {
				continue
			}
			if bytes.Equal(cert.SubjectKeyId, skid) || bytes.Equal(cert.RawSubjectPublicKeyInfo, spki) {
				return fmt.Errorf("%w: certificate %s (%s) has this key", ErrKeyReuse, rec.Serial, rec.Profile)
			}
		}
		if len(recs) < 1000 {
			return nil
		}
	}
}
