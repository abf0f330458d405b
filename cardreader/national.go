package cardreader

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"

	"github.com/mohr-hix/mohr/cardreader/internal/cardfmt"
	"github.com/mohr-hix/mohr/keys"
)

// NationalIDProfile locates the national ID card application. Real card specifications are not public:
// the values come from configuration, and DefaultNationalIDProfile gives Mohr's documented profile.
type NationalIDProfile struct {
	AID          []byte
	HolderFile   uint16 // EF of the holder data (docs/cards.md)
	AuthCertFile uint16 // EF of the card authentication certificate (DER)
	AuthKeyRef   byte   // key reference for INTERNAL AUTHENTICATE
	PINRef       byte   // PIN reference for VERIFY (the authentication key is "PIN always")
}

// DefaultNationalIDProfile returns the profile docs/cards.md documents.
func DefaultNationalIDProfile() NationalIDProfile {
	return NationalIDProfile{
		AID:          append([]byte(nil), cardfmt.NationalIDAID...),
		HolderFile:   cardfmt.FIDHolder,
		AuthCertFile: cardfmt.FIDAuthCert,
		AuthKeyRef:   cardfmt.KeyAuth,
		PINRef:       cardfmt.PINRef,
	}
}

// NationalIDCard is the national smart ID card application on a connected card.
type NationalIDCard struct {
	card *Card
	prof NationalIDProfile
	// Rand is the source of challenges for Authenticate; crypto/rand when nil.
	Rand io.Reader
}

// NationalID selects the national ID application on c with profile p. It returns ErrNotFound if the
// card does not carry it.
func NationalID(ctx context.Context, c *Card, p NationalIDProfile) (*NationalIDCard, error) {
	if _, err := c.selectAID(ctx, p.AID); err != nil {
		return nil, err
	}
	return &NationalIDCard{card: c, prof: p}, nil
}

// ReadHolder reads the holder data: national code (checksum verified), names, birth date, card number.
func (n *NationalIDCard) ReadHolder(ctx context.Context) (*Holder, error) {
	var h *Holder
	err := n.card.Transaction(ctx, func(ctx context.Context) error {
		if _, err := n.card.selectAID(ctx, n.prof.AID); err != nil {
			return err
		}
		b, err := n.card.readEF(ctx, n.prof.HolderFile)
		if err != nil {
			return err
		}
		h, err = ParseHolder(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	h.Profile = ProfileNationalID
	return h, nil
}

// Certificate reads the card's authentication certificate.
func (n *NationalIDCard) Certificate(ctx context.Context) (*x509.Certificate, error) {
	var cert *x509.Certificate
	err := n.card.Transaction(ctx, func(ctx context.Context) (err error) {
		if _, err = n.card.selectAID(ctx, n.prof.AID); err != nil {
			return err
		}
		cert, err = n.card.readCertificate(ctx, n.prof.AuthCertFile)
		return err
	})
	return cert, err
}

// Certificates returns the authentication certificate as a one-element slice, for callers that treat
// profiles alike.
func (n *NationalIDCard) Certificates(ctx context.Context) ([]*x509.Certificate, error) {
	c, err := n.Certificate(ctx)
	if err != nil {
		return nil, err
	}
	return []*x509.Certificate{c}, nil
}

// Authenticate proves the card genuine and its holder present: it verifies the card's authentication
// certificate against issuers (any extended key usage), has the card sign a fresh 32-byte challenge
// (SignChallenge: VERIFY with the PIN from pin, then INTERNAL AUTHENTICATE) and checks the signature with
// the certificate's key. It returns the verified certificate, or an error matching ErrNotGenuine (a wrong PIN
// is an *AuthError, as for every card).
func (n *NationalIDCard) Authenticate(ctx context.Context, issuers *x509.CertPool, pin keys.PINFunc) (*x509.Certificate, error) {
	cert, err := n.Certificate(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: issuers, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrNotGenuine, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, cert.PublicKey)
	}
	r := n.Rand
	if r == nil {
		r = rand.Reader
	}
	challenge := make([]byte, 32)
	if _, err := io.ReadFull(r, challenge); err != nil {
		return nil, fmt.Errorf("cardreader: challenge: %w", err)
	}
	sig, err := n.SignChallenge(ctx, pin, challenge)
	if err != nil {
		return nil, err
	}
	der, err := plainToDER(pub.Curve.Params().BitSize, sig)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotGenuine, err)
	}
	h := sha256.Sum256(challenge)
	if !ecdsa.VerifyASN1(pub, h[:], der) {
		return nil, fmt.Errorf("%w: challenge signature does not verify", ErrNotGenuine)
	}
	return cert, nil
}

// SignChallenge has the card sign challenge with its authentication key, in one transaction: SELECT the
// application, VERIFY (ISO/IEC 7816-4 §7.5.6) with the PIN pin returns, then INTERNAL AUTHENTICATE
// (§7.5.2, P2 = key reference) with the challenge. The answer is the card's plain ECDSA signature r||s over
// SHA-256(challenge) (BSI TR-03111 §5.2.1), returned as the card sent it: the caller (or the server it goes
// to) verifies it. The PIN is asked once, zeroed after use and never retried; a wrong PIN is an *AuthError
// and nothing is signed. The card's PIN status ends with the answer ("PIN always").
func (n *NationalIDCard) SignChallenge(ctx context.Context, pin keys.PINFunc, challenge []byte) ([]byte, error) {
	if len(challenge) < 8 || len(challenge) > 128 {
		return nil, fmt.Errorf("cardreader: challenge of %d bytes", len(challenge))
	}
	var sig []byte
	err := n.card.Transaction(ctx, func(ctx context.Context) error {
		if _, err := n.card.selectAID(ctx, n.prof.AID); err != nil {
			return err
		}
		return withPIN(ctx, pin, "PIN of the national ID card in "+n.card.Reader(), func(p []byte) error {
			if err := n.card.verifyPIN(ctx, n.prof.PINRef, p); err != nil {
				return err
			}
			resp, err := n.card.Transmit(ctx, Command{INS: 0x88, P1: 0x00, P2: n.prof.AuthKeyRef, Data: challenge, Ne: 256})
			if err != nil {
				return fmt.Errorf("cardreader: internal authenticate: %w", err)
			}
			sig = resp.Data
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return sig, nil
}
