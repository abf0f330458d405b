package adapter

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/mohr-hix/mohr/internal/hixext"
)

// HeaderSIAMID carries the verified SIAM ID of the calling facility to the upstream. The Gateway removes it from
// every incoming request before it sets it.
const HeaderSIAMID = "X-HIX-SIAM-ID"

// Gateway is the exchange-side check of adapter tokens, as middleware in front of Upstream. For each request it
// requires a TLS client certificate that
//
//  1. chains to Intermediate and on to a certificate in Roots at Clock() (RFC 5280 §6 path validation);
//  2. carries the facility-adapter profile: extended key usage clientAuth (§4.2.1.12) and digitalSignature
//     key usage, the facility extension (internal/hixext) with a SIAM ID equal to the subject serialNumber;
//  3. is not revoked or on hold, per Revocation (fail closed);
//  4. belongs to a facility in good standing, per Standing (fail closed).
//
// Results of steps 1-2 are cached per certificate until it expires (at most VerifyTTL); Revocation and Standing
// bring their own caches (RevocationCache, StandingCache).
type Gateway struct {
	Upstream     http.Handler
	Roots        *x509.CertPool
	Intermediate *x509.Certificate
	Revocation   RevocationChecker
	Standing     StandingChecker
	// Clock is the time used for path validation and caches; nil means time.Now.
	Clock func() time.Time
	// VerifyTTL bounds how long a path validation result is reused; zero means 10 minutes.
	VerifyTTL time.Duration
	// AccessTokens, when set, also requires an "Authorization: Bearer" access token bound to the client
	// certificate (RFC 8705) whose subject is the certificate's SIAM ID.
	AccessTokens *AccessTokenVerifier
	// OnReject, when set, is told why a request was refused (for the caller's logs and metrics). The client
	// gets a generic message.
	OnReject func(r *http.Request, err error)

	mu       sync.Mutex
	verified map[[32]byte]verifiedEntry
}

type verifiedEntry struct {
	siamID  string
	expires time.Time
}

func (g *Gateway) now() time.Time {
	if g.Clock != nil {
		return g.Clock()
	}
	return time.Now()
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Header.Del(HeaderSIAMID)
	siam, err := g.Authorize(r.Context(), r.TLS)
	if err != nil {
		if g.OnReject != nil {
			g.OnReject(r, err)
		}
		code := http.StatusForbidden
		switch {
		case errors.Is(err, ErrNoClientCert), errors.Is(err, ErrAccessToken):
			code = http.StatusUnauthorized
		case errors.Is(err, ErrRevocationUnknown), errors.Is(err, ErrStandingUnknown):
			code = http.StatusServiceUnavailable
		}
		http.Error(w, http.StatusText(code), code)
		return
	}
	if g.AccessTokens != nil {
		c, err := g.AccessTokens.Verify(bearer(r), r.TLS.PeerCertificates[0])
		if err == nil && c.Subject != siam {
			err = fmt.Errorf("%w: issued to another facility", ErrAccessToken)
		}
		if err != nil {
			if g.OnReject != nil {
				g.OnReject(r, err)
			}
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
			return
		}
	}
	r.Header.Set(HeaderSIAMID, siam)
	g.Upstream.ServeHTTP(w, r)
}

// Authorize runs the checks on a connection's state and returns the verified SIAM ID.
func (g *Gateway) Authorize(ctx context.Context, cs *tls.ConnectionState) (string, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return "", ErrNoClientCert
	}
	leaf := cs.PeerCertificates[0]
	siam, err := g.verify(leaf)
	if err != nil {
		return "", err
	}
	if g.Revocation == nil {
		return "", fmt.Errorf("%w: no revocation checker configured", ErrRevocationUnknown)
	}
	st, err := g.Revocation.Check(ctx, leaf, g.Intermediate)
	if err != nil {
		if !errors.Is(err, ErrRevocationUnknown) {
			err = fmt.Errorf("%w: %w", ErrRevocationUnknown, err)
		}
		return "", err
	}
	if st.Revoked {
		return "", fmt.Errorf("%w (reason %d)", ErrRevoked, st.Reason)
	}
	if g.Standing == nil {
		return "", fmt.Errorf("%w: no standing checker configured", ErrStandingUnknown)
	}
	ok, err := g.Standing.Standing(ctx, siam)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrStandingUnknown, err)
	}
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrNotInGoodStanding, siam)
	}
	return siam, nil
}

// verify does path validation and the profile checks, with a per-certificate cache. The intermediate comes from
// configuration; certificates the client presents besides its leaf are not used to build paths.
func (g *Gateway) verify(leaf *x509.Certificate) (string, error) {
	now := g.now()
	key := sha256.Sum256(leaf.Raw)
	g.mu.Lock()
	e, ok := g.verified[key]
	g.mu.Unlock()
	if ok && now.Before(e.expires) && now.Before(leaf.NotAfter) && !now.Before(leaf.NotBefore) {
		return e.siamID, nil
	}
	if g.Intermediate == nil || g.Roots == nil {
		return "", fmt.Errorf("%w: gateway has no trust anchors configured", ErrUntrusted)
	}
	inter := x509.NewCertPool()
	inter.AddCert(g.Intermediate)
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: g.Roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	viaIntermediate := false
	for _, ch := range chains {
		if len(ch) >= 2 && ch[1].Equal(g.Intermediate) {
			viaIntermediate = true
		}
	}
	if !viaIntermediate {
		return "", fmt.Errorf("%w: not issued by the health intermediate", ErrUntrusted)
	}
	siam, err := checkProfile(leaf)
	if err != nil {
		return "", err
	}
	ttl := g.VerifyTTL
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	exp := now.Add(ttl)
	if leaf.NotAfter.Before(exp) {
		exp = leaf.NotAfter
	}
	g.mu.Lock()
	if g.verified == nil {
		g.verified = map[[32]byte]verifiedEntry{}
	}
	if len(g.verified) > 100000 {
		clear(g.verified) // bounded memory; the cache refills from live traffic
	}
	g.verified[key] = verifiedEntry{siamID: siam, expires: exp}
	g.mu.Unlock()
	return siam, nil
}

// checkProfile checks the facility-adapter profile and returns the bound SIAM ID. Go's path validation accepts
// a leaf without extended key usage for any purpose; the profile requires clientAuth explicitly.
func checkProfile(leaf *x509.Certificate) (string, error) {
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return "", fmt.Errorf("%w: no clientAuth extended key usage", ErrWrongProfile)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return "", fmt.Errorf("%w: no digitalSignature key usage", ErrWrongProfile)
	}
	if leaf.IsCA {
		return "", fmt.Errorf("%w: CA certificate", ErrWrongProfile)
	}
	f, err := hixext.ParseFacility(leaf)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrWrongProfile, err)
	}
	if f.SIAMID == "" || f.SIAMID != leaf.Subject.SerialNumber {
		return "", fmt.Errorf("%w: facility extension and subject disagree on the SIAM ID", ErrWrongProfile)
	}
	return f.SIAMID, nil
}

// ServerTLSConfig returns a TLS configuration for the gateway's listener: TLS 1.3 minimum, the given server
// certificate, and a client certificate required; verification is the Gateway's (ServeHTTP), with its clock.
func ServerTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
	}
}
