package adapter

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"
)

// ErrAccessToken is returned for a missing, malformed, expired, wrongly signed or unbound access token.
var ErrAccessToken = errors.New("adapter: invalid access token")

// AccessTokenVerifier checks the short-lived access tokens tokens.AccessTokenIssuer makes: compact JWS, ES256
// only (RFC 7518 §3.4; "alg" is fixed, never taken from the token), "typ" at+jwt (RFC 9068), issuer, audience,
// validity with Leeway, and the RFC 8705 §3.1 certificate binding: "cnf"."x5t#S256" must equal the SHA-256
// thumbprint of the client certificate of the connection.
type AccessTokenVerifier struct {
	Key      *ecdsa.PublicKey
	KeyID    string // when set, the token's "kid" must match
	Issuer   string
	Audience string
	Clock    func() time.Time
	Leeway   time.Duration // zero means 30 s
}

// AccessClaims are the verified claims.
type AccessClaims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
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

// Verify checks token for the connection whose client certificate is peer.
func (v *AccessTokenVerifier) Verify(token string, peer *x509.Certificate) (*AccessClaims, error) {
	if len(token) > 8192 {
		return nil, fmt.Errorf("%w: too long", ErrAccessToken)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrAccessToken)
	}
	hdrJSON, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	body, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || len(sig) != 64 {
		return nil, fmt.Errorf("%w: malformed", ErrAccessToken)
	}
	var hdr struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}
	dec := json.NewDecoder(bytes.NewReader(hdrJSON))
	dec.DisallowUnknownFields() // no "crit", "jku", "x5u" or other header games
	if err := dec.Decode(&hdr); err != nil || hdr.Alg != "ES256" || hdr.Typ != "at+jwt" || (v.KeyID != "" && hdr.Kid != v.KeyID) {
		return nil, fmt.Errorf("%w: unexpected header", ErrAccessToken)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if v.Key == nil || !ecdsa.Verify(v.Key, digest[:], r, s) {
		return nil, fmt.Errorf("%w: signature", ErrAccessToken)
	}
	var c AccessClaims
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("%w: claims", ErrAccessToken)
	}
	now := time.Now()
	if v.Clock != nil {
		now = v.Clock()
	}
	leeway := v.Leeway
	if leeway == 0 {
		leeway = 30 * time.Second
	}
	switch {
	case c.Issuer != v.Issuer || c.Audience != v.Audience:
		return nil, fmt.Errorf("%w: issuer or audience", ErrAccessToken)
	case now.Add(-leeway).Unix() >= c.Expiry:
		return nil, fmt.Errorf("%w: expired", ErrAccessToken)
	case now.Add(leeway).Unix() < c.NotBefore:
		return nil, fmt.Errorf("%w: not yet valid", ErrAccessToken)
	}
	h := sha256.Sum256(peer.Raw)
	want := base64.RawURLEncoding.EncodeToString(h[:])
	if subtle.ConstantTimeCompare([]byte(want), []byte(c.Cnf.X5tS256)) != 1 {
		return nil, fmt.Errorf("%w: not bound to this client certificate (RFC 8705)", ErrAccessToken)
	}
	return &c, nil
}

// bearer returns the token of an "Authorization: Bearer" header (RFC 6750 §2.1).
func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "Bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}
