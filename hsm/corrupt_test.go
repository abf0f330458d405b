package hsm

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/mohr-hix/mohr/keys"
)

// corruptingBackend is the real SoftHSM2 module with C_Sign's answer altered after the token made
// it, as a fault in the token (or on the way from it) would alter it.
type corruptingBackend struct {
	backend
	corrupt atomic.Bool
	flipped atomic.Int64
}

func (c *corruptingBackend) Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error) {
	sig, err := c.backend.Sign(sh, message)
	if err == nil && c.corrupt.Load() && len(sig) > 0 {
		sig = append([]byte(nil), sig...)
		sig[len(sig)/3] ^= 0x01 // one bit, inside r for ECDSA r||s, inside the RSA signature
		c.flipped.Add(1)
	}
	return sig, err
}

// TestFaultySignatureRefused has SoftHSM2 sign through a wrapper that flips one bit of the token's
// answer and checks that Mohr refuses the signature (keys.ErrBadSignature) for RSA PKCS#1 v1.5,
// RSA-PSS and ECDSA instead of returning it, and that it signs again once the token is sound.
func TestFaultySignatureRefused(t *testing.T) {
	module, pinFile := softhsm(t)
	ctx := context.Background()
	wrapped := "/corrupt/" + t.Name()
	cb := &corruptingBackend{}
	old := loadBackend
	loadBackend = func(p string) (backend, error) {
		if p != wrapped {
			return old(p)
		}
		b, err := old(module)
		if err != nil {
			return nil, err
		}
		cb.backend = b
		return cb, nil
	}
	t.Cleanup(func() { loadBackend = old })

	o := newTestOpener(t, wrapped, 2)
	for _, tc := range []struct {
		name, alg string
		opts      crypto.SignerOpts
	}{
		{"ECDSA", AlgECP256, crypto.SHA256},
		{"RSA-PKCS1v15", AlgRSA2048, crypto.SHA256},
		{"RSA-PSS", AlgRSA2048, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uri := keyURI(tokFault, "corrupt-"+tc.alg, pinFile)
			s, err := o.GenerateKey(ctx, uri, tc.alg)
			if err != nil && !errors.Is(err, ErrExists) {
				t.Fatal(err)
			}
			if s == nil {
				if s, err = o.OpenKey(ctx, uri); err != nil {
					t.Fatal(err)
				}
			}
			k := s.(*Key)
			d := sha256.Sum256([]byte("prescription bundle"))
			// A busy key: past p256TableAfter signatures, P-256 keys verify with their table; before,
			// with crypto/ecdsa alone.
			if _, err := k.SignContext(ctx, d[:], tc.opts); err != nil || k.p256.Load() != nil {
				t.Fatalf("first signature: err %v, table built %v", err, k.p256.Load() != nil)
			}
			for range p256TableAfter {
				if _, err := k.SignContext(ctx, d[:], tc.opts); err != nil {
					t.Fatal(err)
				}
			}
			cb.corrupt.Store(true)
			before := cb.flipped.Load()
			sig, err := k.SignContext(ctx, d[:], tc.opts)
			cb.corrupt.Store(false)
			if cb.flipped.Load() == before {
				t.Fatal("the wrapper corrupted nothing: the test does not reach C_Sign")
			}
			if !errors.Is(err, keys.ErrBadSignature) || sig != nil {
				t.Fatalf("corrupted signature: got sig=%x err=%v, want nil and keys.ErrBadSignature", sig, err)
			}
			// Through crypto.Signer too.
			cb.corrupt.Store(true)
			sig, err = k.Sign(nil, d[:], tc.opts)
			cb.corrupt.Store(false)
			if !errors.Is(err, keys.ErrBadSignature) || sig != nil {
				t.Fatalf("Sign with a corrupted answer: got sig=%x err=%v", sig, err)
			}
			signAndVerify(t, ctx, k, tc.opts)
			if tc.alg == AlgECP256 && k.p256.Load() == nil {
				t.Fatal("ECDSA P-256 key without its precomputed verifier: the fast path is not in use")
			}
		})
	}
}
