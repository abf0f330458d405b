package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

type lyingSigner struct {
	crypto.Signer
	other crypto.Signer
}

func (l lyingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return l.other.Sign(r, d, o)
}

type selfVerifying struct{ crypto.Signer }

func (selfVerifying) VerifiesSignatures() bool { return true }

func TestVerifying(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	o, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d := sha256.Sum256([]byte("x"))
	if _, err := Verifying(k).Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if _, err := Verifying(lyingSigner{k, o}).Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a wrong signature was released: %v", err)
	}
	v := Verifying(k)
	if Verifying(v) != v {
		t.Fatal("double wrapping")
	}
	sv := selfVerifying{k}
	if Verifying(sv) != crypto.Signer(sv) {
		t.Fatal("a self-verifying signer was wrapped")
	}
}

func TestResolverFile(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p := filepath.Join(t.TempDir(), "k.pem")
	if err := WritePEMKey(p, k); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode().Perm())
	}
	if err := WritePEMKey(p, k); err == nil {
		t.Fatal("overwrote a key file")
	}
	r := NewResolver()
	s, err := r.Signer(context.Background(), FileURI(p))
	if err != nil || !s.Public().(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Fatalf("file key: %v", err)
	}
	if _, err := r.Signer(context.Background(), "nosuch:x"); !errors.Is(err, ErrUnknownScheme) {
		t.Fatalf("unknown scheme: %v", err)
	}
	if _, err := r.Signer(context.Background(), FileURI(p+".missing")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := r.Signer(context.Background(), "no-scheme"); !errors.Is(err, ErrBadURI) {
		t.Fatalf("no scheme: %v", err)
	}
}
