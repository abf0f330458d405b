package cardreader

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"

	"github.com/mohr-hix/mohr/cardreader/internal/tlv"
	"github.com/mohr-hix/mohr/keys"
)

// cardKey is a private key that never leaves the card. Each signature runs as one PC/SC transaction.
// With PINPolicyAlways (PIV 9C, which SP 800-73-4 makes "PIN always", and the council card's default)
// each signature asks the PIN through the callback; with PINPolicyOnce only a card answer 6982 does.
type cardKey struct {
	card   *Card
	pub    *ecdsa.PublicKey
	cert   *x509.Certificate
	pin    keys.PINFunc
	prompt string
	// sign runs inside a transaction with the PIN and the digest and returns an ASN.1 ECDSA signature.
	sign func(ctx context.Context, pin, digest []byte) ([]byte, error)
	// signOnce, if set, replaces sign for PINPolicyOnce: it runs inside the transaction, relies on the
	// card's security status and asks pin itself only when the card answers 6982.
	signOnce func(ctx context.Context, digest []byte) ([]byte, error)
	// release, if set, frees the PC/SC context the key owns (keys opened through Opener).
	release func() error
}

var _ crypto.Signer = (*cardKey)(nil)

// Public returns the public key of the card key.
func (k *cardKey) Public() crypto.PublicKey { return k.pub }

// Certificate returns the certificate the card holds for this key.
func (k *cardKey) Certificate() *x509.Certificate { return k.cert }

// Sign signs digest on the card; see SignContext. rand is unused: the card has its own.
func (k *cardKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.SignContext(context.Background(), digest, opts)
}

// SignContext signs digest (a SHA-256, SHA-384 or SHA-512 hash, as opts says) with the card key and
// returns an ASN.1 ECDSA signature. ErrCardRemoved means the card left the reader.
func (k *cardKey) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, ok := opts.(*rsa.PSSOptions); ok {
		return nil, fmt.Errorf("%w: RSA-PSS options for an ECDSA key", ErrUnsupportedKey)
	}
	h := opts.HashFunc()
	switch h {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return nil, fmt.Errorf("%w: hash %v", ErrUnsupportedKey, h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("cardreader: digest of %d bytes for %v", len(digest), h)
	}
	var sig []byte
	err := k.card.Transaction(ctx, func(ctx context.Context) (err error) {
		if k.signOnce != nil {
			sig, err = k.signOnce(ctx, digest)
			return err
		}
		return withPIN(ctx, k.pin, k.prompt, func(pin []byte) (err error) {
			sig, err = k.sign(ctx, pin, digest)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return sig, nil
}

// Close disconnects the key's card connection (and releases its PC/SC context if it owns one).
func (k *cardKey) Close() error {
	err := k.card.Close()
	if k.release != nil {
		if rerr := k.release(); err == nil {
			err = rerr
		}
	}
	return err
}

// plainToDER converts a plain ECDSA signature r||s (BSI TR-03111 §5.2.1) to ASN.1 ECDSA-Sig-Value.
func plainToDER(bits int, sig []byte) ([]byte, error) {
	n := (bits + 7) / 8
	if len(sig) != 2*n {
		return nil, fmt.Errorf("%w: plain ECDSA signature of %d bytes, want %d", ErrMalformed, len(sig), 2*n)
	}
	r := new(big.Int).SetBytes(sig[:n])
	s := new(big.Int).SetBytes(sig[n:])
	if r.Sign() == 0 || s.Sign() == 0 {
		return nil, fmt.Errorf("%w: zero ECDSA component", ErrMalformed)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{r, s})
}

// parseECPublicKey parses a public key data object '7F49' holding '86' (the uncompressed point; ISO/IEC
// 7816-8 §5.1 and SP 800-73-4 Part 2 §3.3.2) on P-256.
func parseECPublicKey(b []byte) (*ecdsa.PublicKey, error) {
	o, _, err := tlv.ReadOne(b)
	if err != nil || o.Tag != 0x7F49 {
		return nil, fmt.Errorf("%w: public key template", ErrMalformed)
	}
	pt, ok, err := tlv.Find(o.Value, 0x86)
	if err != nil || !ok {
		return nil, fmt.Errorf("%w: public key point", ErrMalformed)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
	if err != nil {
		return nil, fmt.Errorf("%w: public key point: %v", ErrMalformed, err)
	}
	return pub, nil
}

// checkCert reports keys.ErrKeyMismatch unless cert holds pub.
func checkCert(pub *ecdsa.PublicKey, cert *x509.Certificate) error {
	if cp, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !cp.Equal(pub) {
		return fmt.Errorf("cardreader: %w", keys.ErrKeyMismatch)
	}
	return nil
}

// unwrapCardKey finds the card key under wrappers such as keys.Verifying.
func unwrapCardKey(s crypto.Signer) (*cardKey, bool) {
	for i := 0; i < 8 && s != nil; i++ {
		if k, ok := s.(*cardKey); ok {
			return k, true
		}
		u, ok := s.(interface{ Unwrap() crypto.Signer })
		if !ok {
			return nil, false
		}
		s = u.Unwrap()
	}
	return nil, false
}

// SignContext signs like s.Sign but lets ctx cancel the card operation when s is a card key (as
// SigningKey and Opener return it, wrapped or not); the signature is verified before it is returned.
// Other signers are called with crypto/rand.
func SignContext(ctx context.Context, s crypto.Signer, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k, ok := unwrapCardKey(s)
	if !ok {
		return s.Sign(rand.Reader, digest, opts)
	}
	sig, err := k.SignContext(ctx, digest, opts)
	if err != nil {
		return nil, err
	}
	if err := keys.VerifyDigest(k.Public(), digest, sig, opts); err != nil {
		return nil, fmt.Errorf("cardreader: %w", err)
	}
	return sig, nil
}

// CloseKey releases the card connection (and PC/SC context) held by a card key from Opener or a
// profile's Key method. It does nothing for other signers.
func CloseKey(s crypto.Signer) error {
	if k, ok := unwrapCardKey(s); ok {
		return k.Close()
	}
	return nil
}
