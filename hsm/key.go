package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"

	"github.com/mohr-hix/mohr/internal/p256"
	"github.com/mohr-hix/mohr/keys"
)

// Key is a private key on a PKCS#11 token, usable as a crypto.Signer. It signs with CKM_ECDSA
// (EC keys), CKM_RSA_PKCS (RSA PKCS#1 v1.5), CKM_RSA_PKCS_PSS (RSA-PSS, when the options are
// *rsa.PSSOptions) and CKM_EDDSA (Ed25519, pure: the "digest" is the message and the hash crypto.Hash(0)). Every signature is verified against Public before it is returned, so a token
// that misbehaves yields an error matching keys.ErrBadSignature, not a bad signature.
//
// A Key is safe for concurrent use: each signature borrows a session from the token's pool, and gives
// it back before the verification, so that another goroutine can use the token meanwhile.
//
// keys.Resolver wraps what OpenSigner returns in keys.Verifying, which verifies once more; callers on
// a hot path can use the *Key from Opener.OpenKey directly.
type Key struct {
	pool  *pool
	uri   *URI // names the key and its PIN source; never printed with a PIN
	label string
	id    []byte
	ktype uint
	pub   crypto.PublicKey

	handle atomic.Pointer[objectRef]

	signs    atomic.Int64 // ECDSA signatures verified, until the table is considered
	p256once sync.Once
	p256     atomic.Pointer[p256.Verifier] // nil unless built (P-256, busy key, table passed its self-check)
}

// A key builds its P-256 table (a few ms and about 400 KB) only once it has signed p256TableAfter
// times, so that keys opened for a few signatures (a physician's remote-signing key, `mohr hsm test`)
// never pay for it, and the process holds at most p256TablesMax tables (about 6.5 MB: a CA's busy
// keys are its issuing, OCSP and timestamping keys); other keys verify with crypto/ecdsa alone.
const (
	p256TableAfter = 64
	p256TablesMax  = 16
)

var p256Tables atomic.Int64

// objectRef is a cached object handle and the pool epoch it was found in.
type objectRef struct {
	h     pkcs11.ObjectHandle
	epoch uint64
}

var (
	_ crypto.Signer = (*Key)(nil)
	_ keys.Opener   = (*Opener)(nil)
)

// Public returns the key's public half, read from the token when the key was opened.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// VerifiesSignatures reports that SignContext verifies every signature before returning it (keys.SelfVerifying),
// so keys.Verifying does not verify it a second time.
func (k *Key) VerifiesSignatures() bool { return true }

var _ keys.SelfVerifying = (*Key)(nil)

// URI returns the key's URI in canonical form, without any PIN.
func (k *Key) URI() string { return k.uri.String() }

// Label returns the private key object's CKA_LABEL.
func (k *Key) Label() string { return k.label }

// ID returns a copy of the private key object's CKA_ID.
func (k *Key) ID() []byte { return append([]byte(nil), k.id...) }

// Sign signs digest with the key; it is SignContext with context.Background(). rand is ignored: the
// token draws its own randomness.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.SignContext(context.Background(), digest, opts)
}

// SignContext signs digest, which must be the hash opts names (or, for RSA PKCS#1 v1.5 with hash 0,
// the bytes to sign), and returns an ASN.1 DER ECDSA signature or an RSA signature. It waits for a
// free session only as long as ctx allows and gives up between attempts when ctx is done; a PKCS#11
// call already under way cannot be interrupted (PKCS#11 v2.40 has no cancellation for C_Sign).
//
// When the module loses its sessions, its login state or itself (C_Finalize by another user, token
// removal), SignContext reopens, logs in again and retries, up to a few times. A refused PIN is never
// retried.
func (k *Key) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := k.sign(ctx, digest, opts)
	if err != nil {
		return nil, err
	}
	if err := k.verify(digest, sig, opts); err != nil {
		return nil, fmt.Errorf("hsm: token %q key %s: %w", k.pool.tok.label, describe(k.label, k.id), err)
	}
	return sig, nil
}

// verify checks sig against the key's public half before it may leave Mohr (docs/hsm.md, "What is
// checked and why"). RSA signatures always go through crypto/rsa: one faulty RSA-CRT signature gives
// the modulus's factors away. ECDSA P-256 signatures are checked in full too, on busy keys with the
// key's precomputed table (internal/p256), which costs about half of crypto/ecdsa; a signature the fast
// path does not accept is checked by crypto/ecdsa, whose answer is final.
func (k *Key) verify(digest, sig []byte, opts crypto.SignerOpts) error {
	if pub, ok := k.pub.(*ecdsa.PublicKey); ok {
		v := k.p256.Load()
		if v == nil && k.signs.Add(1) >= p256TableAfter {
			k.p256once.Do(func() {
				if p256Tables.Add(1) > p256TablesMax {
					p256Tables.Add(-1)
					return
				}
				if v := p256.NewVerifier(pub); v != nil {
					k.p256.Store(v)
					runtime.AddCleanup(k, func(struct{}) { p256Tables.Add(-1) }, struct{}{})
					return
				}
				p256Tables.Add(-1)
			})
			v = k.p256.Load()
		}
		if v != nil && v.Verify(digest, sig) {
			return nil
		}
	}
	return keys.VerifyDigest(k.pub, digest, sig, opts)
}

// sign has the token sign digest and returns the signature in crypto.Signer form, unverified.
func (k *Key) sign(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil {
		return nil, fmt.Errorf("%w: nil signer options", ErrUnsupportedAlgorithm)
	}
	mech, data, err := k.mechanism(digest, opts)
	if err != nil {
		return nil, err
	}
	var raw []byte
	err = k.pool.do(ctx, k.uri, true, func(s session) error {
		h, err := k.object(s)
		if err != nil {
			return err
		}
		if err := k.pool.mod.p.SignInit(s.h, mech, h); err != nil {
			return rvError("C_SignInit", err)
		}
		raw, err = k.pool.mod.p.Sign(s.h, data)
		return rvError("C_Sign", err)
	})
	if err != nil {
		return nil, err
	}
	if k.ktype == pkcs11.CKK_EC {
		return ecdsaDER(raw)
	}
	return raw, nil
}

// object returns the private key's handle, finding the object again when the pool's epoch says that
// handles may have changed (after a lost session, C_CloseAllSessions or C_Finalize).
func (k *Key) object(s session) (pkcs11.ObjectHandle, error) {
	epoch := k.pool.epoch.Load()
	if r := k.handle.Load(); r != nil && r.epoch == epoch {
		return r.h, nil
	}
	h, err := findPrivate(k.pool.mod.p, s.h, k.label, k.id)
	if err != nil {
		return 0, err
	}
	k.handle.Store(&objectRef{h: h, epoch: epoch})
	return h, nil
}

// DigestInfo prefixes of EMSA-PKCS1-v1_5 (RFC 8017 section 9.2, note 1), which CKM_RSA_PKCS expects
// in front of the digest.
var pkcs1Prefix = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA224: {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// PSS hash mechanisms and MGF1 generators (PKCS#11 v2.40 Current Mechanisms section 2.1.10).
var pssParams = map[crypto.Hash][2]uint{
	crypto.SHA1:   {pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1},
	crypto.SHA224: {pkcs11.CKM_SHA224, pkcs11.CKG_MGF1_SHA224},
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

var (
	mechECDSA   = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}
	mechRSAPKCS = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}
)

// mechanism chooses the PKCS#11 mechanism and the data to pass to C_Sign for opts.
func (k *Key) mechanism(digest []byte, opts crypto.SignerOpts) ([]*pkcs11.Mechanism, []byte, error) {
	h := opts.HashFunc()
	if h != 0 && len(digest) != h.Size() {
		return nil, nil, fmt.Errorf("hsm: digest is %d bytes, %v needs %d", len(digest), h, h.Size())
	}
	switch pub := k.pub.(type) {
	case *ecdsa.PublicKey:
		if h == 0 {
			return nil, nil, fmt.Errorf("%w: ECDSA needs a hash", ErrUnsupportedAlgorithm)
		}
		return mechECDSA, digest, nil
	case ed25519.PublicKey:
		return ed25519Mechanism(digest, opts) // ed25519.go: digest is the message
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			pp, ok := pssParams[h]
			if !ok {
				return nil, nil, fmt.Errorf("%w: RSA-PSS with %v", ErrUnsupportedAlgorithm, h)
			}
			salt := pss.SaltLength
			switch salt {
			case rsa.PSSSaltLengthAuto, rsa.PSSSaltLengthEqualsHash:
				// Auto lets the signer choose; the hash length is what RFC 8017 section 9.1 and
				// most verifiers expect.
				salt = h.Size()
			}
			if salt < 0 || salt > (pub.N.BitLen()-1+7)/8-h.Size()-2 {
				return nil, nil, fmt.Errorf("%w: RSA-PSS salt length %d", ErrUnsupportedAlgorithm, pss.SaltLength)
			}
			m := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS,
				pkcs11.NewPSSParams(pp[0], pp[1], uint(salt)))}
			return m, digest, nil
		}
		if h == 0 {
			return mechRSAPKCS, digest, nil
		}
		prefix, ok := pkcs1Prefix[h]
		if !ok {
			return nil, nil, fmt.Errorf("%w: RSA PKCS#1 v1.5 with %v", ErrUnsupportedAlgorithm, h)
		}
		data := make([]byte, 0, len(prefix)+len(digest))
		return mechRSAPKCS, append(append(data, prefix...), digest...), nil
	}
	return nil, nil, fmt.Errorf("%w: %T", ErrUnsupportedAlgorithm, k.pub)
}
