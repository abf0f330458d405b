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
	// Signer signs on the card (or token). It asks the PIN through the PINFunc the KeyOpener was given, once
	// per signature for "PIN always" keys such as the medical-council card's.
	Signer crypto.Signer
	// Chain is the signing certificate first, then intermediates (never the root).
	Chain []*x509.Certificate
	// CheckPIN, if set, presents pin to the key once (ISO/IEC 7816-4 VERIFY) so that a wrong PIN is found
	// when the session starts rather than at the first signature.
	CheckPIN func(ctx context.Context, pin []byte) error
	// WaitRemoved, if set, blocks until the card leaves its reader (returning nil) or ctx ends. The agent ends
	// the session when it returns nil.
	WaitRemoved func(ctx context.Context) error
	// CardTime, if set, returns the time the card spent on signature commands (PSO: COMPUTE DIGITAL
	// SIGNATURE round trips) since its last call; the agent calls it after each signature.
	CardTime func() time.Duration
	// Close releases the card connection.
	Close func() error
}

// KeyOpener opens the signing key for a session. pin is the agent's PIN callback: it hands out the PIN the
// physician entered for this session and must be the only PIN source the key uses. The key must not keep
// what pin returns.
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
