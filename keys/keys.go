// Package keys names signing keys by URI and turns a URI into a crypto.Signer in one place.
//
// Schemes: "file:" (a PKCS#8 PEM key on disk, for development and software tokens), "pkcs11:" (RFC 7512, served
// by package hsm) and "card:" (a smart-card key, served by package cardreader). Packages that own a scheme
// register an Opener with a Resolver; the composition root (cmd/mohr) builds the Resolver. Domain packages
// (ca, signing, tokens) never see URIs: they take a crypto.Signer.
package keys

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Errors shared by every key backend, for callers to branch on with errors.Is.
var (
	ErrUnknownScheme  = errors.New("keys: unknown key URI scheme")
	ErrBadURI         = errors.New("keys: malformed key URI")
	ErrNotFound       = errors.New("keys: key not found")
	ErrPINIncorrect   = errors.New("keys: PIN incorrect")
	ErrPINBlocked     = errors.New("keys: PIN blocked")
	ErrKeyMismatch    = errors.New("keys: key does not match certificate")
	ErrBadSignature   = errors.New("keys: key returned a signature that does not verify")
	ErrUnsupportedKey = errors.New("keys: unsupported key type")
)

// Opener opens the key a URI names.
type Opener interface {
	OpenSigner(ctx context.Context, uri string) (crypto.Signer, error)
}

// OpenerFunc adapts a function to Opener.
type OpenerFunc func(ctx context.Context, uri string) (crypto.Signer, error)

// OpenSigner calls f.
func (f OpenerFunc) OpenSigner(ctx context.Context, uri string) (crypto.Signer, error) {
	return f(ctx, uri)
}

// PINFunc supplies a PIN when a key needs one. prompt names the key for the person asked; the function
// must not log or keep the PIN.
type PINFunc func(ctx context.Context, prompt string) ([]byte, error)

// Resolver maps URI schemes to Openers. The zero value is not usable; use NewResolver.
type Resolver struct {
	mu      sync.RWMutex
	openers map[string]Opener
}

// NewResolver returns a Resolver that knows the "file:" scheme.
func NewResolver() *Resolver {
	r := &Resolver{openers: map[string]Opener{}}
	r.Register("file", OpenerFunc(openFile))
	return r
}

// Register makes o serve URIs whose scheme is scheme (without the colon).
func (r *Resolver) Register(scheme string, o Opener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.openers[strings.ToLower(scheme)] = o
}

// Scheme returns the lower-cased scheme of uri, or an error if it has none.
func Scheme(uri string) (string, error) {
	i := strings.IndexByte(uri, ':')
	if i <= 0 {
		return "", fmt.Errorf("%w: no scheme", ErrBadURI)
	}
	return strings.ToLower(uri[:i]), nil
}

// Signer opens the key uri names. The returned Signer verifies every signature it makes (see Verifying).
func (r *Resolver) Signer(ctx context.Context, uri string) (crypto.Signer, error) {
	scheme, err := Scheme(uri)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	o, ok := r.openers[scheme]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownScheme, scheme)
	}
	s, err := o.OpenSigner(ctx, uri)
	if err != nil {
		return nil, err
	}
	return Verifying(s), nil
}
