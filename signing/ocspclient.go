package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/crypto/ocsp"
)

// ErrNoOCSPResponder says that a certificate names no OCSP responder, so this source will never have an OCSP
// answer for it. A RevocationSource returns it (or an error wrapping it) only for such a lasting property of the
// certificate, not for a failure that may pass: the Verifier then stops asking the source about that certificate
// and goes on to its CRLs, as it would after any failed lookup.
var ErrNoOCSPResponder = errors.New("signing: certificate names no OCSP responder")

// HTTPRevocation is a RevocationSource that asks the OCSP responder named in the certificate's authority
// information access extension (RFC 5280 §4.2.2.1), by HTTP POST (RFC 6960 Appendix A.1), with a timeout.
type HTTPRevocation struct {
	// Client is the HTTP client; a client with Timeout (10 s when zero) is used when nil.
	Client  *http.Client
	Timeout time.Duration
}

// OCSP implements RevocationSource.
func (h *HTTPRevocation) OCSP(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error) {
	if len(cert.OCSPServer) == 0 {
		return nil, ErrNoOCSPResponder
	}
	req, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		return nil, fmt.Errorf("signing: OCSP request: %w", err)
	}
	hc := h.Client
	if hc == nil {
		to := h.Timeout
		if to == 0 {
			to = 10 * time.Second
		}
		hc = &http.Client{Timeout: to}
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, cert.OCSPServer[0], bytes.NewReader(req))
	if err != nil {
		return nil, fmt.Errorf("signing: OCSP request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("signing: OCSP: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("signing: OCSP: HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("signing: OCSP: %w", err)
	}
	return b, nil
}
