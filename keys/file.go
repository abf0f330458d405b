package keys

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// FileURI returns the "file:" URI of a key file.
func FileURI(path string) string { return "file:" + path }

// openFile opens "file:PATH" or "file:///PATH": an unencrypted PKCS#8 (or SEC 1 / PKCS#1) PEM private key.
// Such keys are for development and for tests; production CA keys live in an HSM.
func openFile(_ context.Context, uri string) (crypto.Signer, error) {
	path := strings.TrimPrefix(uri, "file:")
	if strings.HasPrefix(path, "//") {
		u, err := url.Parse(uri)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadURI, err)
		}
		path = u.Path
	}
	if path == "" {
		return nil, fmt.Errorf("%w: empty path", ErrBadURI)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, path)
		}
		return nil, fmt.Errorf("keys: read key file: %w", err)
	}
	return ParsePEMSigner(b)
}

// ParsePEMSigner parses the first private key block of a PEM document.
func ParsePEMSigner(b []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%w: no private key PEM block", ErrBadURI)
		}
		var key any
		var err error
		switch blk.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("keys: parse private key: %w", err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, key)
		}
		return s, nil
	}
}

// WritePEMKey writes key as PKCS#8 PEM to path with mode 0600, refusing to overwrite.
func WritePEMKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("keys: marshal key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keys: create key file: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("keys: write key file: %w", err)
	}
	return f.Close()
}
