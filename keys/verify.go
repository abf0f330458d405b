package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
)

// verifyingSigner checks every signature its inner Signer returns before releasing it, as
// crypto/x509.CreateCertificate does for certificates: an HSM or a card that misbehaves must not
// produce a bad signature that Mohr then hands out.
type verifyingSigner struct {
	crypto.Signer
}

var _ crypto.Signer = verifyingSigner{}

// SelfVerifying is implemented by signers that verify every signature against their public key themselves
// before returning it (hsm.Key does); Verifying does not wrap them again.
type SelfVerifying interface {
	VerifiesSignatures() bool
}

// Verifying wraps s so that each signature is verified against s.Public() before it is returned.
// Wrapping twice is harmless and returns s itself the second time, as it does for a SelfVerifying signer.
func Verifying(s crypto.Signer) crypto.Signer {
	if _, ok := s.(verifyingSigner); ok {
		return s
	}
	if sv, ok := s.(SelfVerifying); ok && sv.VerifiesSignatures() {
		return s
	}
	return verifyingSigner{s}
}

// Unwrap returns the inner Signer.
func (v verifyingSigner) Unwrap() crypto.Signer { return v.Signer }

func (v verifyingSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := v.Signer.Sign(rand, digest, opts)
	if err != nil {
		return nil, err
	}
	if err := VerifyDigest(v.Public(), digest, sig, opts); err != nil {
		return nil, err
	}
	return sig, nil
}

// VerifyDigest verifies sig over digest (or over the message, for Ed25519) with pub.
func VerifyDigest(pub crypto.PublicKey, digest, sig []byte, opts crypto.SignerOpts) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return ErrBadSignature
		}
	case *rsa.PublicKey:
		var err error
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			err = rsa.VerifyPSS(k, pss.Hash, digest, sig, pss)
		} else {
			err = rsa.VerifyPKCS1v15(k, opts.HashFunc(), digest, sig)
		}
		if err != nil {
			return ErrBadSignature
		}
	case ed25519.PublicKey:
		if opts != nil && opts.HashFunc() != 0 {
			return fmt.Errorf("%w: Ed25519 with a pre-hash", ErrUnsupportedKey)
		}
		if !ed25519.Verify(k, digest, sig) {
			return ErrBadSignature
		}
	default:
		return fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
	}
	return nil
}

// MatchesCertificate reports ErrKeyMismatch unless s's public key is the one in cert.
func MatchesCertificate(s crypto.Signer, cert *x509.Certificate) error {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := s.Public().(equaler)
	if !ok || !pub.Equal(cert.PublicKey) {
		return ErrKeyMismatch
	}
	return nil
}

// VerifiesSignatures reports that a Verifying signer checks each signature itself (keys.SelfVerifying), so a
// caller that would verify again can skip it.
func (v verifyingSigner) VerifiesSignatures() bool { return true }
