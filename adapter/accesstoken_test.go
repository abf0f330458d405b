package adapter_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/adapter"
	"github.com/mohr-hix/mohr/tokens"
)

// TestAccessTokensBoundToCertificate: RFC 8705 certificate-bound access tokens at the gateway.
func TestAccessTokensBoundToCertificate(t *testing.T) {
	x := newExchange(t)
	a, b := x.enrol("SIAM-1001"), x.enrol("SIAM-1001")
	other := x.enrol("SIAM-2002")
	key, _ := tokens.NewSoftwareKey(rand.Reader)
	iss := &tokens.AccessTokenIssuer{Signer: key, KeyID: "k1", Issuer: "https://hix.test", Audience: "hix-gateway", Clock: x.clock.Now}
	ver := &adapter.AccessTokenVerifier{Key: &key.PublicKey, KeyID: "k1", Issuer: "https://hix.test", Audience: "hix-gateway", Clock: x.clock.Now}
	var rejected error
	g := &adapter.Gateway{Roots: x.ca.Pool(), Intermediate: x.ca.Intermediate, Clock: x.clock.Now, AccessTokens: ver,
		Revocation: &adapter.OCSPChecker{Clock: x.clock.Now}, Standing: tokensStanding(x),
		Upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(r.Header.Get(adapter.HeaderSIAMID))) }),
		OnReject: func(r *http.Request, err error) { rejected = err }}
	tokenFor := func(cred *adapter.Credential, siam string) string {
		tok, _, err := iss.Issue(context.Background(), cred.Leaf(), siam, "fhir.read")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	call := func(cred *adapter.Credential, tok string) int {
		rejected = nil
		r := httptest.NewRequest(http.MethodGet, "https://gw/fhir", nil)
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cred.Leaf()}}
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		return w.Code
	}
	good := tokenFor(a, "SIAM-1001")
	if code := call(a, good); code != 200 {
		t.Fatalf("bound token refused: %d %v", code, rejected)
	}
	parts := strings.Split(good, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"k1"}`)) + "." + parts[1] + "."
	otherKey, _ := tokens.NewSoftwareKey(rand.Reader)
	forged, _, _ := (&tokens.AccessTokenIssuer{Signer: otherKey, KeyID: "k1", Issuer: "https://hix.test", Audience: "hix-gateway", Clock: x.clock.Now}).Issue(context.Background(), a.Leaf(), "SIAM-1001", "")
	tests := []struct {
		name string
		cred *adapter.Credential
		tok  string
	}{
		{"no token", a, ""},
		{"token of another certificate (replay)", b, good},
		{"token for another facility", other, tokenFor(other, "SIAM-1001")},
		{"alg none", a, none},
		{"signed by another key", a, forged},
		{"garbage", a, "a.b.c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := call(tt.cred, tt.tok); code != 401 || !errors.Is(rejected, adapter.ErrAccessToken) {
				t.Fatalf("code %d, reason %v", code, rejected)
			}
		})
	}
	x.clock.Advance(6 * time.Minute)
	if code := call(a, good); code != 401 {
		t.Fatalf("expired token admitted: %d", code)
	}
}
