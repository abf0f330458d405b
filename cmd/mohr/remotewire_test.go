package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader/virtualcard"
)

// TestCRLFiles: remote_signing.id_card_crls files are read (PEM or DER), served from memory while unchanged,
// and read again when the issuer's new CRL replaces the file; a file that is not a CRL is an error.
func TestCRLFiles(t *testing.T) {
	iss, err := virtualcard.NewIssuer(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, n int64, asPEM bool) string {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(n), ThisUpdate: time.Now().Add(-time.Hour),
			NextUpdate: time.Now().Add(time.Hour)}, iss.Cert, iss.Key)
		if err != nil {
			t.Fatal(err)
		}
		if asPEM {
			der = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
		}
		p := filepath.Join(dir, name)
		tmp := p + ".tmp"
		os.WriteFile(tmp, der, 0o644)
		os.Chtimes(tmp, time.Now(), time.Now().Add(time.Duration(n)*time.Second))
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := write("a.crl", 1, true), write("b.crl", 2, false)
	c := &crlFiles{paths: []string{a, b}}
	got, err := c.load(context.Background())
	if err != nil || len(got) != 2 || got[0].Number.Int64() != 1 || got[1].Number.Int64() != 2 {
		t.Fatalf("load: %v %v", got, err)
	}
	write("a.crl", 3, true)
	if got, err = c.load(context.Background()); err != nil || got[0].Number.Int64() != 3 {
		t.Fatalf("after the issuer's new CRL: %v %v", got, err)
	}
	os.WriteFile(b, []byte("not a CRL"), 0o644)
	if _, err := c.load(context.Background()); err == nil {
		t.Fatal("a file that is not a CRL was accepted")
	}
}
