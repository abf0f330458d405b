package virtualcard

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// Issuer is the certification authority that certifies a virtual card's keys. For demos New creates a
// small "card issuer" CA of its own; tests pass theirs in Config.Issuer.
type Issuer struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewIssuer creates a self-signed ECDSA P-256 card issuer CA valid for ten years from now.
func NewIssuer(r io.Reader, now time.Time) (*Issuer, error) {
	if r == nil {
		r = rand.Reader
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), r)
	if err != nil {
		return nil, fmt.Errorf("virtualcard: issuer key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(r),
		Subject:               pkix.Name{CommonName: "Mohr Virtual Card Issuer CA", Organization: []string{"Mohr demo (not for production)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(r, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("virtualcard: issuer certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Issuer{Cert: cert, Key: key}, nil
}

// IssuerCertFile is the name WriteDir gives the issuer certificate.
const IssuerCertFile = "card-issuer-ca.pem"

// WriteDir writes the issuer certificate (not its key) as PEM to dir/card-issuer-ca.pem, so that a
// verifier can trust the virtual card, and returns the path.
func (i *Issuer) WriteDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("virtualcard: %w", err)
	}
	p := filepath.Join(dir, IssuerCertFile)
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.Cert.Raw})
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return "", fmt.Errorf("virtualcard: %w", err)
	}
	return p, nil
}

// certify issues a two-year certificate for pub.
func (i *Issuer) certify(r io.Reader, now time.Time, pub crypto.PublicKey, subject pkix.Name, ku x509.KeyUsage, eku []x509.ExtKeyUsage) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(r),
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(2, 0, 0),
		KeyUsage:     ku,
		ExtKeyUsage:  eku,
	}
	der, err := x509.CreateCertificate(r, tmpl, i.Cert, pub, i.Key)
	if err != nil {
		return nil, fmt.Errorf("virtualcard: certify card key: %w", err)
	}
	return der, nil
}

func serial(r io.Reader) *big.Int {
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		b[0] = 1
	}
	b[0] &= 0x7F
	b[0] |= 0x01
	return new(big.Int).SetBytes(b)
}
