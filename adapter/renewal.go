package adapter

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// The renewal exchange: the adapter POSTs a DER PKCS#10 request (RFC 2986; media type application/pkcs10,
// RFC 5967) over mutual TLS with its current certificate; the answer is the new chain as
// application/pem-certificate-chain (RFC 8555 §9.1), leaf first.
const (
	mediaPKCS10    = "application/pkcs10"
	mediaPEMChain  = "application/pem-certificate-chain"
	maxRenewalBody = 64 << 10
)

// RenewFunc issues a certificate for csr to the holder of peer (already admitted by a Gateway). tokens.Service
// .Renew, adapted by the composition root, is one.
type RenewFunc func(ctx context.Context, peer *x509.Certificate, csr *x509.CertificateRequest) ([]*x509.Certificate, error)

// RenewalHandler serves renewals. Mount it behind a Gateway so only admitted adapters reach it.
func RenewalHandler(renew RenewFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "client certificate required", http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxRenewalBody))
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		csr, err := x509.ParseCertificateRequest(body)
		if err != nil {
			http.Error(w, "malformed PKCS#10 request", http.StatusBadRequest)
			return
		}
		chain, err := renew(r.Context(), r.TLS.PeerCertificates[0], csr)
		if err != nil {
			http.Error(w, "renewal refused", http.StatusForbidden)
			return
		}
		var buf bytes.Buffer
		for _, c := range chain {
			pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		w.Header().Set("Content-Type", mediaPEMChain)
		w.Write(buf.Bytes())
	})
}

// HTTPRenewer is a Renewer that talks to RenewalHandler at URL, presenting the current credential.
type HTTPRenewer struct {
	URL     string
	RootCAs *x509.CertPool
	Timeout time.Duration // zero means 30 s
}

// Renew implements Renewer.
func (h *HTTPRenewer) Renew(ctx context.Context, current *Credential, csr *x509.CertificateRequest) ([]*x509.Certificate, error) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tc := current.tlsCertificate()
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: h.RootCAs,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return tc, nil },
	}}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(csr.Raw))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mediaPKCS10)
	req.Header.Set("Accept", mediaPEMChain)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("renewal endpoint answered HTTP %d", resp.StatusCode)
	}
	var chain []*x509.Certificate
	for {
		var b *pem.Block
		b, body = pem.Decode(body)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("renewal answer: %w", err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("renewal answer holds no certificate")
	}
	return chain, nil
}
