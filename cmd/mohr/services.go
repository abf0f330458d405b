package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/keys"
)

// serviceKey opens a service's key: uri if set, else <data-dir>/services/<name>.key, created on first use.
func serviceKey(ctx context.Context, cfg *Config, name, uri string) (crypto.Signer, error) {
	if uri == "" {
		path := filepath.Join(cfg.dataDir, "services", name+".key")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return nil, err
			}
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return nil, err
			}
			if err := keys.WritePEMKey(path, k); err != nil {
				return nil, err
			}
		}
		uri = keys.FileURI(path)
	}
	s, err := newKeyResolver().Signer(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", name, err)
	}
	return s, nil
}

// serviceCert returns a certificate of the CA for key, reusing <data-dir>/services/<name>.pem while it matches
// the key, chains to the current issuer and has more than a third of its lifetime left.
func serviceCert(ctx context.Context, cfg *Config, c *ca.CA, name string, key crypto.Signer, req ca.Request) (*x509.Certificate, error) {
	path := filepath.Join(cfg.dataDir, "services", name+".pem")
	now := time.Now()
	if cur, err := readOneCert(path); err == nil && keys.MatchesCertificate(key, cur) == nil &&
		cur.CheckSignatureFrom(c.Issuer().Cert) == nil &&
		cur.NotAfter.Sub(now) > cur.NotAfter.Sub(cur.NotBefore)/3 && namesCovered(cur, req) {
		return cur, nil
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: req.CommonName}}, key)
	if err != nil {
		return nil, fmt.Errorf("%s CSR: %w", name, err)
	}
	if req.CSR, err = x509.ParseCertificateRequest(der); err != nil {
		return nil, err
	}
	req.Actor = "system:serve"
	cert, err := c.Issue(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%s certificate: %w", name, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return cert, writeCertPEM(path, cert)
}

// tlsNames splits the configured TLS names into DNS names and IPs; the listen host is always included.
func tlsNames(cfg *Config) ([]string, []net.IP) {
	var dns []string
	var ips []net.IP
	names := append([]string{}, cfg.Services.TLSNames...)
	if host, _, err := net.SplitHostPort(cfg.Listen); err == nil && host != "" {
		names = append(names, host)
	}
	// localhost always: the README's curl lines and the CLI on the server itself reach the API as
	// https://localhost:<port>, whatever address it listens on.
	names = append(names, "localhost")
	if host, _, err := net.SplitHostPort(cfg.Listen); err != nil || host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		names = append(names, "127.0.0.1") // listening on every address, loopback included
	}
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	return dns, ips
}

// namesCovered reports whether cert names every DNS name and IP address req asks for, so a TLS certificate is
// re-issued when the configured names (or the listen address) change.
func namesCovered(cert *x509.Certificate, req ca.Request) bool {
	for _, d := range req.DNSNames {
		if !slices.Contains(cert.DNSNames, d) {
			return false
		}
	}
	for _, ip := range req.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}
