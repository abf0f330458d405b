package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/mohr-hix/mohr/keys"
)

// DevRootName and DevIntermediateName label the development hierarchy so nobody mistakes it for the national one.
var (
	DevRootName         = pkix.Name{Country: []string{"IR"}, Organization: []string{"Mohr DEVELOPMENT ONLY"}, CommonName: "Mohr Development Root CA - NOT FOR PRODUCTION"}
	DevIntermediateName = pkix.Name{Country: []string{"IR"}, Organization: []string{"Mohr DEVELOPMENT ONLY"}, CommonName: "Mohr Development Health Intermediate CA - NOT FOR PRODUCTION"}
)

func caSerial() (*big.Int, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	b[0] |= 0x01 << 6
	return new(big.Int).SetBytes(b[:]), nil
}

func skid(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(spki)
	return h[:20], nil
}

// NewRoot makes a self-signed root certificate for key, valid for lifetime from now. Only development
// hierarchies are made this way; the national root is outside Mohr.
func NewRoot(key crypto.Signer, name pkix.Name, now time.Time, lifetime time.Duration) (*x509.Certificate, error) {
	serial, err := caSerial()
	if err != nil {
		return nil, err
	}
	id, err := skid(key.Public())
	if err != nil {
		return nil, fmt.Errorf("ca: root key: %w", err)
	}
	t := &x509.Certificate{
		SerialNumber: serial, Subject: name,
		NotBefore: now.Add(-time.Hour).UTC().Truncate(time.Second), NotAfter: now.Add(lifetime).UTC().Truncate(time.Second),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
		SubjectKeyId: id,
	}
	der, err := x509.CreateCertificate(rand.Reader, t, t, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca: create root: %w", err)
	}
	return x509.ParseCertificate(der)
}

// SignIntermediate makes the intermediate CA certificate (pathLen 0) for pub under parent. The national root
// does this outside Mohr for production; Mohr does it for the development hierarchy.
func SignIntermediate(parent *x509.Certificate, parentKey crypto.Signer, pub crypto.PublicKey, name pkix.Name, now time.Time, lifetime time.Duration) (*x509.Certificate, error) {
	serial, err := caSerial()
	if err != nil {
		return nil, err
	}
	id, err := skid(pub)
	if err != nil {
		return nil, fmt.Errorf("ca: intermediate key: %w", err)
	}
	notAfter := now.Add(lifetime).UTC().Truncate(time.Second)
	if parent.NotAfter.Before(notAfter) {
		notAfter = parent.NotAfter
	}
	t := &x509.Certificate{
		SerialNumber: serial, Subject: name,
		NotBefore: now.Add(-time.Hour).UTC().Truncate(time.Second), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
		MaxPathLen: 0, MaxPathLenZero: true, SubjectKeyId: id,
	}
	der, err := x509.CreateCertificate(rand.Reader, t, parent, pub, parentKey)
	if err != nil {
		return nil, fmt.Errorf("ca: create intermediate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// CreateCSR makes the PKCS#10 request the national root signs for the intermediate.
func CreateCSR(key crypto.Signer, name pkix.Name) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: name}, key)
	if err != nil {
		return nil, fmt.Errorf("ca: create CSR: %w", err)
	}
	return der, nil
}

// ErrImport is returned when a certificate handed back by the root is not usable as Mohr's intermediate.
var ErrImport = errors.New("ca: cannot import intermediate")

// CheckImport verifies that cert is a CA certificate for key, issued by root, and currently valid.
func CheckImport(cert, root *x509.Certificate, key crypto.Signer, now time.Time) error {
	if err := keys.MatchesCertificate(key, cert); err != nil {
		return fmt.Errorf("%w: its public key is not the intermediate key", ErrImport)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%w: not a CA certificate with keyCertSign", ErrImport)
	}
	if !root.IsCA {
		return fmt.Errorf("%w: the root is not a CA certificate", ErrImport)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%w: does not chain to the root: %v", ErrImport, err)
	}
	return nil
}
