package tokens

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// KeyDevice is the part of a PKCS#11 token that physical enrolment needs: generate a non-extractable key
// on the device and write the issued certificate back next to it. Package hsm's Opener provides it
// (GenerateKey(ctx, uri, "EC-P256"), StoreCertificate(ctx, uri, cert)); keys are named by RFC 7512 URIs.
type KeyDevice interface {
	GenerateKey(ctx context.Context, uri, alg string) (crypto.Signer, error)
	StoreCertificate(ctx context.Context, uri string, cert *x509.Certificate) error
}

// NewSoftwareKey generates the P-256 key of a software token.
func NewSoftwareKey(rand io.Reader) (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand)
	if err != nil {
		return nil, fmt.Errorf("tokens: generate key: %w", err)
	}
	return k, nil
}

// NewCSR returns a PKCS#10 request signed by key for facility siamID: subject serialNumber is the SIAM ID (the
// CA replaces the rest of the subject from the registry).
func NewCSR(rand io.Reader, key crypto.Signer, siamID, name string) (*x509.CertificateRequest, error) {
	der, err := x509.CreateCertificateRequest(rand, &x509.CertificateRequest{
		Subject: pkix.Name{SerialNumber: siamID, CommonName: name},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("tokens: create CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("tokens: parse CSR: %w", err)
	}
	return csr, nil
}

// EnrolPhysical generates the token key on the facility's PKCS#11 device at uri, builds the CSR, enrols with
// enrol (a Service.Enrol call on the RA side, or a client for it) and writes the certificate back onto the
// device. The private key never leaves the device.
func EnrolPhysical(ctx context.Context, dev KeyDevice, uri string, rand io.Reader, siamID, name string,
	enrol func(ctx context.Context, csr *x509.CertificateRequest) (*Issued, error)) (*Issued, error) {
	key, err := dev.GenerateKey(ctx, uri, "EC-P256")
	if err != nil {
		return nil, fmt.Errorf("tokens: generate key on device: %w", err)
	}
	csr, err := NewCSR(rand, key, siamID, name)
	if err != nil {
		return nil, err
	}
	iss, err := enrol(ctx, csr)
	if err != nil {
		return nil, err
	}
	if err := dev.StoreCertificate(ctx, uri, iss.Cert); err != nil {
		return nil, fmt.Errorf("tokens: write certificate to device: %w", err)
	}
	return iss, nil
}

// SoftwareToken is a decoded software keystore.
type SoftwareToken struct {
	Key   crypto.Signer
	Cert  *x509.Certificate
	Chain []*x509.Certificate // intermediate first
}

// PEM block types of the keystore.
const (
	pemEncryptedKey = "ENCRYPTED PRIVATE KEY"
	pemCertificate  = "CERTIFICATE"
)

// EncodeKeystore writes a software token as PEM: the private key as an encrypted PKCS#8 EncryptedPrivateKeyInfo
// (RFC 5958 §3, PKCS#5 v2.1 PBES2 with PBKDF2-HMAC-SHA256, 600,000 iterations, and AES-256-CBC; "ENCRYPTED
// PRIVATE KEY", RFC 7468 §11), then the certificate and its chain ("CERTIFICATE" blocks, leaf first). OpenSSL
// reads it (openssl pkey -in file).
func EncodeKeystore(rand io.Reader, key crypto.Signer, cert *x509.Certificate, chain []*x509.Certificate, password []byte) ([]byte, error) {
	if len(password) == 0 {
		return nil, fmt.Errorf("%w: empty keystore password", ErrInvalidInput)
	}
	if err := keyMatches(key, cert); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tokens: marshal key: %w", err)
	}
	enc, err := encryptPKCS8(rand, der, password)
	clear(der)
	if err != nil {
		return nil, fmt.Errorf("tokens: encrypt key: %w", err)
	}
	var buf bytes.Buffer
	if err := pem.Encode(&buf, &pem.Block{Type: pemEncryptedKey, Bytes: enc}); err != nil {
		return nil, fmt.Errorf("tokens: encode key: %w", err)
	}
	for _, c := range append([]*x509.Certificate{cert}, chain...) {
		if err := pem.Encode(&buf, &pem.Block{Type: pemCertificate, Bytes: c.Raw}); err != nil {
			return nil, fmt.Errorf("tokens: encode certificate: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// EncodeEncryptedKey writes key alone as an encrypted PKCS#8 PEM block (the same PBES2 parameters as
// EncodeKeystore), for the time between key generation and issuance.
func EncodeEncryptedKey(rand io.Reader, key crypto.Signer, password []byte) ([]byte, error) {
	if len(password) == 0 {
		return nil, fmt.Errorf("%w: empty keystore password", ErrInvalidInput)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tokens: marshal key: %w", err)
	}
	enc, err := encryptPKCS8(rand, der, password)
	clear(der)
	if err != nil {
		return nil, fmt.Errorf("tokens: encrypt key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemEncryptedKey, Bytes: enc}), nil
}

// DecodeEncryptedKey reads the key of an EncodeEncryptedKey or EncodeKeystore file (certificates are ignored).
// A wrong password returns ErrBadPassword.
func DecodeEncryptedKey(data, password []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			return nil, fmt.Errorf("%w: no encrypted private key", ErrInvalidInput)
		}
		if blk.Type != pemEncryptedKey {
			continue
		}
		plain, err := decryptPKCS8(blk.Bytes, password)
		if errors.Is(err, errBadStructure) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
		}
		if err != nil {
			return nil, ErrBadPassword
		}
		k, err := x509.ParsePKCS8PrivateKey(plain)
		clear(plain)
		if err != nil {
			return nil, ErrBadPassword
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return nil, ErrBadPassword
		}
		return signer, nil
	}
}

// DecodeKeystore reads what EncodeKeystore wrote. A wrong password returns ErrBadPassword: PBES2-CBC cannot
// always tell a wrong password from noise, so a key that does not parse, or does not match the certificate,
// is reported the same way.
func DecodeKeystore(data, password []byte) (*SoftwareToken, error) {
	var st SoftwareToken
	var keyDER []byte
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		switch blk.Type {
		case pemEncryptedKey:
			if keyDER != nil {
				return nil, fmt.Errorf("%w: keystore holds two keys", ErrInvalidInput)
			}
			keyDER = blk.Bytes
		case pemCertificate:
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: keystore certificate: %w", ErrInvalidInput, err)
			}
			if st.Cert == nil {
				st.Cert = c
			} else {
				st.Chain = append(st.Chain, c)
			}
		default:
			return nil, fmt.Errorf("%w: keystore holds a %q block", ErrInvalidInput, blk.Type)
		}
	}
	if keyDER == nil || st.Cert == nil {
		return nil, fmt.Errorf("%w: keystore needs an encrypted key and a certificate", ErrInvalidInput)
	}
	plain, err := decryptPKCS8(keyDER, password)
	if errors.Is(err, errBadStructure) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	if err != nil {
		return nil, ErrBadPassword
	}
	k, err := x509.ParsePKCS8PrivateKey(plain)
	clear(plain)
	if err != nil {
		return nil, ErrBadPassword
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, ErrBadPassword
	}
	if err := keyMatches(signer, st.Cert); err != nil {
		return nil, ErrBadPassword
	}
	st.Key = signer
	return &st, nil
}

// PKCS12Iterations is the PBKDF2 iteration count of EncodePKCS12 (key encryption and MAC).
var PKCS12Iterations = 600000

// EncodePKCS12 writes a software token as a PKCS#12 (RFC 7292) file for systems that need one, with
// go-pkcs12's Modern encoder: PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for the key and certificates and an
// HMAC-SHA256 MAC, readable by OpenSSL 3 and Java 12+.
func EncodePKCS12(rand io.Reader, key crypto.Signer, cert *x509.Certificate, chain []*x509.Certificate, password string) ([]byte, error) {
	if password == "" {
		return nil, fmt.Errorf("%w: empty keystore password", ErrInvalidInput)
	}
	if err := keyMatches(key, cert); err != nil {
		return nil, err
	}
	pfx, err := pkcs12.Modern.WithRand(rand).WithIterations(PKCS12Iterations).Encode(key, cert, chain, password)
	if err != nil {
		return nil, fmt.Errorf("tokens: encode PKCS#12: %w", err)
	}
	return pfx, nil
}

// DecodePKCS12 reads a PKCS#12 software token; a wrong password returns ErrBadPassword.
func DecodePKCS12(pfx []byte, password string) (*SoftwareToken, error) {
	k, cert, chain, err := pkcs12.DecodeChain(pfx, password)
	if errors.Is(err, pkcs12.ErrIncorrectPassword) {
		return nil, ErrBadPassword
	}
	if err != nil {
		return nil, fmt.Errorf("%w: PKCS#12: %w", ErrInvalidInput, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: PKCS#12 key is not a signing key", ErrInvalidInput)
	}
	if err := keyMatches(signer, cert); err != nil {
		return nil, err
	}
	return &SoftwareToken{Key: signer, Cert: cert, Chain: chain}, nil
}

func keyMatches(key crypto.Signer, cert *x509.Certificate) error {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || cert == nil || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("%w: key does not match the certificate", ErrInvalidInput)
	}
	return nil
}
