package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/mohr-hix/mohr/internal/p256"
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
	pub := v.Public()
	// A busy P-256 key is checked with its table (internal/p256, about 0.4 of crypto/ecdsa's cost), which
	// accepts exactly when the verification equation holds; anything it does not accept is checked by
	// crypto/ecdsa below, whose answer is final.
	if ec, ok := pub.(*ecdsa.PublicKey); ok {
		if t := busyP256(ec); t != nil && t.Verify(digest, sig) {
			return sig, nil
		}
	}
	if err := VerifyDigest(pub, digest, sig, opts); err != nil {
		return nil, err
	}
	return sig, nil
}

// A software P-256 key gets its verification table (a few ms and about 400 KB, built once and self-checked,
// internal/p256) once it has signed p256TableAfter times through Verifying, as an hsm.Key does (docs/hsm.md):
// the exchange's busy keys (TSA, organisation seal, OCSP responder, CA) then verify each signature at about
// 0.4 of the cost. At most p256Tracked keys are counted and p256TablesMax tables kept (about 3.2 MB); other
// keys verify with crypto/ecdsa alone.
const (
	p256TableAfter = 64
	p256Tracked    = 64
	p256TablesMax  = 8
)

// p256State is one counted key: its signatures so far and, once built, its table.
type p256State struct {
	signs atomic.Int64
	once  sync.Once
	v     atomic.Pointer[p256.Verifier]
}

var p256Keys struct {
	mu     sync.Mutex
	m      map[[64]byte]*p256State // by the key's X and Y (the table is bound to the key's value, not to a pointer)
	tables int
}

// busyP256 returns pub's table when it has one, counting the signature otherwise; nil for other curves.
func busyP256(pub *ecdsa.PublicKey) *p256.Verifier {
	if pub.Curve != elliptic.P256() || pub.X == nil || pub.Y == nil {
		return nil
	}
	var id [64]byte
	pub.X.FillBytes(id[:32])
	pub.Y.FillBytes(id[32:])
	p256Keys.mu.Lock()
	st := p256Keys.m[id]
	if st == nil {
		if len(p256Keys.m) >= p256Tracked {
			p256Keys.mu.Unlock()
			return nil
		}
		if p256Keys.m == nil {
			p256Keys.m = map[[64]byte]*p256State{}
		}
		st = &p256State{}
		p256Keys.m[id] = st
	}
	p256Keys.mu.Unlock()
	if v := st.v.Load(); v != nil {
		return v
	}
	if st.signs.Add(1) < p256TableAfter {
		return nil
	}
	st.once.Do(func() {
		p256Keys.mu.Lock()
		room := p256Keys.tables < p256TablesMax
		if room {
			p256Keys.tables++
		}
		p256Keys.mu.Unlock()
		if !room {
			return
		}
		if v := p256.NewVerifier(pub); v != nil {
			st.v.Store(v)
			return
		}
		p256Keys.mu.Lock()
		p256Keys.tables--
		p256Keys.mu.Unlock()
	})
	return st.v.Load()
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
