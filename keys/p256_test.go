package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"sync/atomic"
	"testing"
)

// flipSigner flips one bit of its Signer's signatures while on is set (a fault in the signing code or memory).
type flipSigner struct {
	crypto.Signer
	on *atomic.Bool
}

func (f flipSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	sig, err := f.Signer.Sign(r, d, o)
	if err == nil && f.on.Load() {
		sig[len(sig)-1] ^= 1
	}
	return sig, err
}

// TestVerifyingP256Table: a busy software P-256 key gets its verification table (built after p256TableAfter
// signatures, self-checked) and every signature Verifying releases is still checked: once the table is in use,
// a faulty signature, another key's signature under this key's public half, and a signature over another
// digest are refused with ErrBadSignature, and good signatures keep passing.
func TestVerifyingP256Table(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	o, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var fault atomic.Bool
	s := Verifying(flipSigner{k, &fault})
	for i := range p256TableAfter + 1 {
		d := sha256.Sum256([]byte{byte(i)})
		if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
			t.Fatal(err)
		}
	}
	if busyP256(&k.PublicKey) == nil {
		t.Fatal("no table for a busy P-256 key")
	}
	d := sha256.Sum256([]byte("prescription"))
	fault.Store(true)
	if sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, ErrBadSignature) || sig != nil {
		t.Fatalf("a faulty signature was released: %v", err)
	}
	fault.Store(false)
	if _, err := Verifying(lyingSigner{k, o}).Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("another key's signature was released: %v", err)
	}
	other := sha256.Sum256([]byte("another prescription"))
	wrongDigest := digestSwapper{k, other[:]}
	if _, err := Verifying(wrongDigest).Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a signature over another digest was released: %v", err)
	}
	for i := range 10 {
		d := sha256.Sum256([]byte{0xff, byte(i)})
		sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil || !ecdsa.VerifyASN1(&k.PublicKey, d[:], sig) {
			t.Fatalf("good signature %d: %v", i, err)
		}
	}
	// Keys of other curves never get a table.
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for range p256TableAfter + 1 {
		if busyP256(&p384.PublicKey) != nil {
			t.Fatal("a table for a P-384 key")
		}
	}
}

// digestSwapper signs another digest than the one asked for.
type digestSwapper struct {
	*ecdsa.PrivateKey
	other []byte
}

func (s digestSwapper) Sign(r io.Reader, _ []byte, o crypto.SignerOpts) ([]byte, error) {
	return s.PrivateKey.Sign(r, s.other, o)
}
