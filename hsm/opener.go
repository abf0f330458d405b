package hsm

import (
	"context"
	"crypto"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"
)

// Opener opens keys named by RFC 7512 "pkcs11:" URIs. It implements keys.Opener. It loads each
// module once (shared with every other Opener in the process, since a process may C_Initialize a
// module only once) and keeps one session pool per token. An Opener is safe for concurrent use.
type Opener struct {
	// MaxSessions is the number of sessions each token's pool may open (DefaultSessions if zero).
	// Set it before the first use; pools already created keep their size.
	MaxSessions int

	defaultModule string

	mu     sync.Mutex
	mods   map[string]*module
	pools  map[poolKey]*pool
	closed bool
}

type poolKey struct {
	module string
	tok    tokenFilter
}

// NewOpener returns an Opener that loads defaultModule for URIs without a module-path attribute.
func NewOpener(defaultModule string) *Opener {
	return &Opener{defaultModule: defaultModule, mods: map[string]*module{}, pools: map[poolKey]*pool{}}
}

// Close waits for the signatures under way, closes the Opener's sessions and releases its modules;
// the last release of a module calls C_Finalize. Keys opened through the Opener then fail with
// ErrClosed.
func (o *Opener) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	for _, p := range o.pools {
		p.close()
	}
	var first error
	for _, m := range o.mods {
		if err := m.release(); err != nil && first == nil {
			first = err
		}
	}
	o.pools, o.mods = nil, nil
	return first
}

// module returns the Opener's reference to the module at path (or the default module).
func (o *Opener) module(path string) (*module, error) {
	if path == "" {
		path = o.defaultModule
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.moduleLocked(path)
}

func (o *Opener) moduleLocked(path string) (*module, error) {
	if o.closed {
		return nil, ErrClosed
	}
	key := canonicalPath(path)
	if m := o.mods[key]; m != nil {
		return m, nil
	}
	m, err := openModule(path)
	if err != nil {
		return nil, err
	}
	o.mods[key] = m
	return m, nil
}

// resolve parses uri and returns it with the pool of the token it names.
func (o *Opener) resolve(uri string) (*URI, *pool, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, nil, err
	}
	if u.Token == "" {
		return nil, nil, fmt.Errorf("%w: no token attribute (Mohr finds tokens by label only)", ErrBadURI)
	}
	path := u.ModulePath
	if path == "" {
		path = o.defaultModule
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	m, err := o.moduleLocked(path)
	if err != nil {
		return nil, nil, err
	}
	k := poolKey{module: m.path, tok: tokenFilter{label: u.Token, serial: u.Serial, manufacturer: u.Manufacturer, model: u.Model}}
	p := o.pools[k]
	if p == nil {
		p = newPool(m, k.tok, o.MaxSessions)
		o.pools[k] = p
	}
	return u, p, nil
}

// needObject checks that u names an object, and one of the wanted type.
func needObject(u *URI, typ string) error {
	if u.Object == "" && len(u.ID) == 0 {
		return fmt.Errorf("%w: neither object nor id", ErrBadURI)
	}
	if u.Type != "" && u.Type != typ {
		return fmt.Errorf("%w: type=%s where %s is needed", ErrBadURI, u.Type, typ)
	}
	return nil
}

// OpenSigner opens the private key uri names and returns it as a *Key. The URI needs token, object
// and/or id, and a pin-source (or pin-value); module-path defaults to the Opener's default module.
// The public key comes from the public key object with the same CKA_ID (or label), or, failing that,
// from the private key object (RSA) or a certificate beside it.
func (o *Opener) OpenSigner(ctx context.Context, uri string) (crypto.Signer, error) {
	k, err := o.openKey(ctx, uri)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// OpenKey is OpenSigner returning the concrete *Key.
func (o *Opener) OpenKey(ctx context.Context, uri string) (*Key, error) { return o.openKey(ctx, uri) }

func (o *Opener) openKey(ctx context.Context, uri string) (*Key, error) {
	u, p, err := o.resolve(uri)
	if err != nil {
		return nil, err
	}
	if err := needObject(u, "private"); err != nil {
		return nil, err
	}
	var k *Key
	err = p.do(ctx, u, true, func(s session) error {
		var err error
		k, err = loadKey(p, s, u)
		return err
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// loadKey finds the private key u names and its public half.
func loadKey(p *pool, s session, u *URI) (*Key, error) {
	b := p.mod.p
	h, err := findPrivate(b, s.h, u.Object, u.ID)
	if err != nil {
		return nil, err
	}
	a, err := attrs(b, s.h, h, pkcs11.CKA_KEY_TYPE, pkcs11.CKA_LABEL, pkcs11.CKA_ID)
	if err != nil {
		return nil, err
	}
	k := &Key{pool: p, uri: u, label: string(a[pkcs11.CKA_LABEL]), id: a[pkcs11.CKA_ID], ktype: ulong(a[pkcs11.CKA_KEY_TYPE])}
	k.handle.Store(&objectRef{h: h, epoch: p.epoch.Load()})
	if k.pub, err = findPublic(b, s.h, h, k.ktype, k.label, k.id); err != nil {
		return nil, err
	}
	return k, nil
}

// findPublic finds the public half of private key priv: a public key object with its CKA_ID (or
// label), the private object itself for RSA, or a certificate with its CKA_ID (or label).
func findPublic(b backend, sh pkcs11.SessionHandle, priv pkcs11.ObjectHandle, ktype uint, label string, id []byte) (crypto.PublicKey, error) {
	if len(id) > 0 {
		label = ""
	}
	if h, err := findOne(b, sh, pkcs11.CKO_PUBLIC_KEY, label, id); err == nil {
		return publicKeyFrom(b, sh, h, ktype)
	} else if classify(err) != recoverNone {
		return nil, err
	}
	if ktype == pkcs11.CKK_RSA {
		return publicKeyFrom(b, sh, priv, ktype)
	}
	if h, err := findOne(b, sh, pkcs11.CKO_CERTIFICATE, label, id); err == nil {
		c, err := readCertificate(b, sh, h)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	} else if classify(err) != recoverNone {
		return nil, err
	}
	return nil, fmt.Errorf("%w: no public key or certificate beside the private key %s", ErrObjectNotFound, describe(label, id))
}

// ulong decodes a CK_ULONG attribute value, which PKCS#11 stores in the host's byte order and size.
func ulong(b []byte) uint {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	}
	return ^uint(0)
}

// boolAttr decodes a CK_BBOOL attribute value.
func boolAttr(b []byte) bool { return len(b) == 1 && b[0] != 0 }
