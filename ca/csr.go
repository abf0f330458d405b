package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/titanous/rocacheck"
)

// Request errors, for callers to branch on with errors.Is. The API turns them into 400-class problems.
var (
	ErrBadCSR       = errors.New("ca: malformed certificate request")
	ErrCSRSignature = errors.New("ca: certificate request signature does not verify")
	ErrWeakKey      = errors.New("ca: key is weak or of an unsupported type")
	ErrBadRequest   = errors.New("ca: invalid issuance request")
	ErrNotEligible  = errors.New("ca: subject is not eligible")
	ErrLint         = errors.New("ca: certificate failed linting")
)

// MaxCSRSize bounds the PEM or DER a caller may hand in.
const MaxCSRSize = 64 << 10

// ParseCSR reads a PKCS#10 request (RFC 2986) in PEM or DER and checks its self-signature.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	if len(b) == 0 || len(b) > MaxCSRSize {
		return nil, fmt.Errorf("%w: size %d out of range", ErrBadCSR, len(b))
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%w: PEM block %q", ErrBadCSR, blk.Type)
		}
		der = blk.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, ErrCSRSignature
	}
	return csr, nil
}

// CheckKey enforces the key policy: RSA of 2048 to 8192 bits with exponent 65537, no ROCA fingerprint
// (CVE-2017-15361, common on older smart cards), no small factors and not on the weak-key list; ECDSA on
// P-256 or P-384 with a point on the curve. Everything else is refused.
func CheckKey(pub any, blocked map[[32]byte]bool) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < 2048 || bits > 8192 {
			return fmt.Errorf("%w: RSA key of %d bits (2048 to 8192 accepted)", ErrWeakKey, bits)
		}
		if k.E != 65537 {
			return fmt.Errorf("%w: RSA public exponent must be 65537", ErrWeakKey)
		}
		if rocacheck.IsWeak(k) {
			return fmt.Errorf("%w: RSA key has the ROCA fingerprint", ErrWeakKey)
		}
		if hasSmallFactor(k.N) {
			return fmt.Errorf("%w: RSA modulus has a small factor", ErrWeakKey)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384():
		default:
			return fmt.Errorf("%w: ECDSA curve %s (P-256 and P-384 accepted)", ErrWeakKey, k.Curve.Params().Name)
		}
		// x509 parsing already rejects points off the curve; ECDH conversion re-checks it.
		if _, err := k.ECDH(); err != nil {
			return fmt.Errorf("%w: invalid ECDSA point", ErrWeakKey)
		}
	default:
		return fmt.Errorf("%w: %T", ErrWeakKey, pub)
	}
	if len(blocked) > 0 {
		spki, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrWeakKey, err)
		}
		if blocked[sha256.Sum256(spki)] {
			return fmt.Errorf("%w: key is on the blocked-key list", ErrWeakKey)
		}
	}
	return nil
}

// smallPrimesProduct is the product of the primes below 1000; a modulus sharing a factor with it is broken
// (the check Go's own rsa package and Boulder's goodkey make).
var smallPrimesProduct = func() *big.Int {
	p := big.NewInt(1)
	for i := int64(2); i < 1000; i++ {
		if big.NewInt(i).ProbablyPrime(1) {
			p.Mul(p, big.NewInt(i))
		}
	}
	return p
}()

func hasSmallFactor(n *big.Int) bool {
	return new(big.Int).GCD(nil, nil, n, smallPrimesProduct).Cmp(big.NewInt(1)) != 0
}
