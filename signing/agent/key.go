package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/mohr-hix/mohr/keys"
)

// Key is an open signing key for one session: the card's non-repudiation key (or a PKCS#11 or file key) and
// what the agent needs around it. Only Signer and Chain are required.
type Key struct {
	// Signer signs on the card (or token). It relies on the PIN verification CheckPIN made (the card's
	// comfort-signature state, a PKCS#11 login). If the card asks for the PIN again it may call the PINFunc
	// the KeyOpener was given, which the agent answers with ErrPINRequired: the agent keeps no PIN.
	Signer crypto.Signer
	// Chain is the signing certificate first, then intermediates (never the root).
	Chain []*x509.Certificate
	// CheckPIN, if set, presents pin to the key once (ISO/IEC 7816-4 VERIFY, or a PKCS#11 login); the
	// session's signatures rely on it. The agent clears pin as soon as CheckPIN returns.
	CheckPIN func(ctx context.Context, pin []byte) error
	// ComfortLimit, if set, returns how many signatures the key allows after CheckPIN's verification (the
	// card's comfort-signature counter, docs/cards.md). The agent lowers a session's limit to it (the card
	// wins) and refuses to start a session when it is 0 (ErrNoComfort). Keys without it (PKCS#11 logins,
	// file keys) are bounded by the agent's own limits only.
	ComfortLimit func(ctx context.Context) (int, error)
	// WaitRemoved, if set, blocks until the card leaves its reader (returning nil) or ctx ends. The agent ends
	// the session when it returns nil.
	WaitRemoved func(ctx context.Context) error
	// CardTime, if set, returns the time the card spent on signature commands (PSO: COMPUTE DIGITAL
	// SIGNATURE round trips) since its last call; the agent calls it after each signature.
	CardTime func() time.Duration
	// Close releases the card connection.
	Close func() error
	// SigningTime, if set, is the signing-time the session's signatures claim instead of the agent's clock:
	// a remote (csc:) key under EN 419 241-1 SCAL2 is activated for the exact data to be signed, which it
	// computes at OpenKey from the call's documents (DocumentsFrom) with this time (signing/remote/cscclient).
	SigningTime func() time.Time
}

// KeyOpener opens the signing key for a session. pin is the agent's PIN callback for the key; it never hands
// out a PIN (the agent keeps none) and answers ErrPINRequired, so a key that would need the PIN again fails
// instead of prompting or replaying it. The physician's PIN reaches the key only through Key.CheckPIN.
type KeyOpener interface {
	OpenKey(ctx context.Context, pin keys.PINFunc) (*Key, error)
}

// KeyOpenerFunc adapts a function to KeyOpener.
type KeyOpenerFunc func(ctx context.Context, pin keys.PINFunc) (*Key, error)

// OpenKey calls f.
func (f KeyOpenerFunc) OpenKey(ctx context.Context, pin keys.PINFunc) (*Key, error) {
	return f(ctx, pin)
}

// URIKey is a KeyOpener for any key a keys.Opener serves ("pkcs11:", "file:", "card:" URIs): Open is called
// with the agent's PIN callback (for example a function that registers &cardreader.Opener{PIN: pin} or an
// HSM opener with a resolver and calls its Signer). The chain comes from configuration; if the opened key
// can report its certificate (a Certificate() method, as card keys have), that certificate is used as the
// chain's first element.
type URIKey struct {
	URI   string
	Open  func(ctx context.Context, uri string, pin keys.PINFunc) (crypto.Signer, error)
	Chain []*x509.Certificate
}

// OpenKey opens u.URI.
func (u URIKey) OpenKey(ctx context.Context, pin keys.PINFunc) (*Key, error) {
	if u.Open == nil {
		return nil, errors.New("agent: URIKey without an opener")
	}
	s, err := u.Open(ctx, u.URI, pin)
	if err != nil {
		return nil, fmt.Errorf("%w: open key: %w", ErrCard, err)
	}
	k := &Key{Signer: s, Chain: u.Chain}
	if c := certificateOf(s); c != nil {
		k.Chain = append([]*x509.Certificate{c}, withoutCert(u.Chain, c)...)
	}
	if cl := closerOf(s); cl != nil {
		k.Close = cl
	}
	if len(k.Chain) == 0 {
		closeKey(k)
		return nil, fmt.Errorf("%w: no signing certificate for %s", ErrCard, u.URI)
	}
	if err := keys.MatchesCertificate(s, k.Chain[0]); err != nil {
		closeKey(k)
		return nil, fmt.Errorf("%w: %w", ErrCard, err)
	}
	return k, nil
}

func certificateOf(s crypto.Signer) *x509.Certificate {
	for s != nil {
		if c, ok := s.(interface{ Certificate() *x509.Certificate }); ok {
			return c.Certificate()
		}
		u, ok := s.(interface{ Unwrap() crypto.Signer })
		if !ok {
			return nil
		}
		s = u.Unwrap()
	}
	return nil
}

func closerOf(s crypto.Signer) func() error {
	for s != nil {
		if c, ok := s.(interface{ Close() error }); ok {
			return c.Close
		}
		u, ok := s.(interface{ Unwrap() crypto.Signer })
		if !ok {
			return nil
		}
		s = u.Unwrap()
	}
	return nil
}

func withoutCert(chain []*x509.Certificate, c *x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, x := range chain {
		if !x.Equal(c) {
			out = append(out, x)
		}
	}
	return out
}

func closeKey(k *Key) {
	if k != nil && k.Close != nil {
		_ = k.Close()
	}
}
