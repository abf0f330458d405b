package tokens

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"
)

// AccessTokenIssuer issues short-lived access tokens to adapters authenticated by their certificate: a JWT
// (RFC 9068 profile, "typ": "at+jwt") signed as a compact JWS with ES256 (RFC 7515, RFC 7518 §3.4), bound to
// the client certificate with the RFC 8705 §3.1 confirmation claim "cnf": {"x5t#S256": base64url(SHA-256 of
// the certificate's DER)}. A token copied off the wire is useless without the certificate's private key, since
// the gateway compares the claim with the certificate of the mutual-TLS connection that carries it.
//
// It is written on the standard library: go.step.sm/crypto/jose needs modules whose checksums are not in go.sum.
type AccessTokenIssuer struct {
	Signer   crypto.Signer // ECDSA P-256
	KeyID    string
	Issuer   string
	Audience string
	TTL      time.Duration // zero means 5 minutes
	Clock    func() time.Time
	Rand     io.Reader
}

// AccessClaims are the claims of an access token.
type AccessClaims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"` // the SIAM ID
	Audience  string `json:"aud"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	Expiry    int64  `json:"exp"`
	ID        string `json:"jti"`
	Scope     string `json:"scope,omitempty"`
	Cnf       struct {
		X5tS256 string `json:"x5t#S256"`
	} `json:"cnf"`
}

// CertThumbprint returns the RFC 8705 §3.1 x5t#S256 value of cert.
func CertThumbprint(cert *x509.Certificate) string {
	h := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// Issue returns an access token for the holder of clientCert, facility siamID, with scope (may be empty), and
// its expiry.
func (a *AccessTokenIssuer) Issue(ctx context.Context, clientCert *x509.Certificate, siamID, scope string) (string, time.Time, error) {
	pub, ok := a.Signer.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return "", time.Time{}, fmt.Errorf("%w: access tokens need a P-256 signing key", ErrInvalidInput)
	}
	now := time.Now()
	if a.Clock != nil {
		now = a.Clock()
	}
	ttl := a.TTL
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	r := a.Rand
	if r == nil {
		r = rand.Reader
	}
	var jti [16]byte
	if _, err := io.ReadFull(r, jti[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("tokens: random: %w", err)
	}
	exp := now.Add(ttl).Truncate(time.Second)
	c := AccessClaims{Issuer: a.Issuer, Subject: siamID, Audience: a.Audience, IssuedAt: now.Unix(), NotBefore: now.Unix(),
		Expiry: exp.Unix(), ID: hex.EncodeToString(jti[:]), Scope: scope}
	c.Cnf.X5tS256 = CertThumbprint(clientCert)
	hdr, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "at+jwt", "kid": a.KeyID})
	body, err := json.Marshal(c)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("tokens: access token: %w", err)
	}
	signing := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(body)
	digest := sha256.Sum256([]byte(signing))
	der, err := a.Signer.Sign(r, digest[:], crypto.SHA256)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("tokens: sign access token: %w", err)
	}
	var sig struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &sig); err != nil || len(rest) != 0 {
		return "", time.Time{}, errors.New("tokens: sign access token: malformed ECDSA signature")
	}
	// Verify what the signer returned before handing it out (the key may be in an HSM).
	if !ecdsa.Verify(pub, digest[:], sig.R, sig.S) {
		return "", time.Time{}, errors.New("tokens: sign access token: signature does not verify")
	}
	raw := make([]byte, 64)
	sig.R.FillBytes(raw[:32])
	sig.S.FillBytes(raw[32:])
	return signing + "." + base64.RawURLEncoding.EncodeToString(raw), exp, nil
}
