package adapter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
	"golang.org/x/sync/singleflight"
)

// RevocationStatus is what a RevocationChecker learned about one certificate.
type RevocationStatus struct {
	Revoked    bool
	Reason     int // RFC 5280 CRLReason when Revoked (6 is certificateHold)
	RevokedAt  time.Time
	ThisUpdate time.Time
	NextUpdate time.Time // when the answer goes stale; zero: do not cache
}

// RevocationChecker finds the revocation status of cert, issued by issuer. It returns an error (and the
// Gateway refuses the request: fail closed) when it cannot tell.
type RevocationChecker interface {
	Check(ctx context.Context, cert, issuer *x509.Certificate) (RevocationStatus, error)
}

// OCSPChecker asks an RFC 6960 OCSP responder over HTTP POST (§A.1). The response must be signed by the issuer
// or a responder it delegated to (id-kp-OCSPSigning), be for cert's serial, and be fresh: thisUpdate not in the
// future (beyond Skew) and nextUpdate present and in the future (RFC 5019 §4 requires nextUpdate; a response
// without one cannot be cached and is refused).
type OCSPChecker struct {
	// URL overrides the responder named in cert's Authority Information Access extension.
	URL string
	// Client is the HTTP client; nil means one with a 5 s timeout.
	Client *http.Client
	Clock  func() time.Time
	Skew   time.Duration // tolerated clock skew; zero means 1 minute
}

var defaultOCSPClient = &http.Client{Timeout: 5 * time.Second}

// Check implements RevocationChecker.
func (o *OCSPChecker) Check(ctx context.Context, cert, issuer *x509.Certificate) (RevocationStatus, error) {
	url := o.URL
	if url == "" && len(cert.OCSPServer) > 0 {
		url = cert.OCSPServer[0]
	}
	if url == "" {
		return RevocationStatus{}, fmt.Errorf("%w: no OCSP responder", ErrRevocationUnknown)
	}
	der, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		return RevocationStatus{}, fmt.Errorf("%w: %w", ErrRevocationUnknown, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(der))
	if err != nil {
		return RevocationStatus{}, fmt.Errorf("%w: %w", ErrRevocationUnknown, err)
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	c := o.Client
	if c == nil {
		c = defaultOCSPClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return RevocationStatus{}, fmt.Errorf("%w: %w", ErrRevocationUnknown, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		return RevocationStatus{}, fmt.Errorf("%w: responder HTTP status %d", ErrRevocationUnknown, resp.StatusCode)
	}
	r, err := ocsp.ParseResponseForCert(body, cert, issuer)
	if err != nil {
		return RevocationStatus{}, fmt.Errorf("%w: %w", ErrRevocationUnknown, err)
	}
	now := time.Now()
	if o.Clock != nil {
		now = o.Clock()
	}
	skew := o.Skew
	if skew == 0 {
		skew = time.Minute
	}
	switch {
	case r.ThisUpdate.After(now.Add(skew)):
		return RevocationStatus{}, fmt.Errorf("%w: OCSP response from the future", ErrRevocationUnknown)
	case r.NextUpdate.IsZero() || !now.Before(r.NextUpdate):
		return RevocationStatus{}, fmt.Errorf("%w: OCSP response stale or without nextUpdate", ErrRevocationUnknown)
	}
	st := RevocationStatus{ThisUpdate: r.ThisUpdate, NextUpdate: r.NextUpdate}
	switch r.Status {
	case ocsp.Good:
	case ocsp.Revoked:
		st.Revoked, st.Reason, st.RevokedAt = true, r.RevocationReason, r.RevokedAt
	default:
		return RevocationStatus{}, fmt.Errorf("%w: responder does not know the certificate", ErrRevocationUnknown)
	}
	return st, nil
}

// RevocationCache remembers answers of a RevocationChecker per certificate until the earlier of the answer's
// nextUpdate and MaxTTL after it was fetched. Errors are not cached. Concurrent misses for one certificate share
// one upstream query.
type RevocationCache struct {
	Checker RevocationChecker
	MaxTTL  time.Duration // zero means 5 minutes
	Clock   func() time.Time

	mu      sync.Mutex
	entries map[[32]byte]revEntry
	group   singleflight.Group
}

type revEntry struct {
	st      RevocationStatus
	serial  string // lower-case hex, for ForgetSerial
	expires time.Time
}

func (c *RevocationCache) now() time.Time {
	if c.Clock != nil {
		return c.Clock()
	}
	return time.Now()
}

// Check implements RevocationChecker.
func (c *RevocationCache) Check(ctx context.Context, cert, issuer *x509.Certificate) (RevocationStatus, error) {
	key := sha256.Sum256(cert.Raw)
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.st, nil
	}
	v, err, _ := c.group.Do(string(key[:]), func() (any, error) {
		st, err := c.Checker.Check(ctx, cert, issuer)
		if err != nil {
			return st, err
		}
		ttl := c.MaxTTL
		if ttl <= 0 {
			ttl = 5 * time.Minute
		}
		exp := c.now().Add(ttl)
		if !st.NextUpdate.IsZero() && st.NextUpdate.Before(exp) {
			exp = st.NextUpdate
		}
		c.mu.Lock()
		if c.entries == nil {
			c.entries = map[[32]byte]revEntry{}
		}
		c.entries[key] = revEntry{st: st, serial: fmt.Sprintf("%x", cert.SerialNumber), expires: exp}
		c.mu.Unlock()
		return st, nil
	})
	if err != nil {
		return RevocationStatus{}, err
	}
	return v.(RevocationStatus), nil
}

// Purge drops expired entries; call it now and then from a long-running process.
func (c *RevocationCache) Purge() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
}

// ForgetSerial drops the cached answers for the certificate with this serial (lower-case hex): a
// RevocationFollower calls it when the exchange's feed reports a change, so a release from hold is not hidden
// behind a cached "on hold".
func (c *RevocationCache) ForgetSerial(serial string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if e.serial == serial {
			delete(c.entries, k)
		}
	}
}

// RevocationCheckerFunc adapts a function to RevocationChecker.
type RevocationCheckerFunc func(ctx context.Context, cert, issuer *x509.Certificate) (RevocationStatus, error)

// Check calls f.
func (f RevocationCheckerFunc) Check(ctx context.Context, cert, issuer *x509.Certificate) (RevocationStatus, error) {
	return f(ctx, cert, issuer)
}
