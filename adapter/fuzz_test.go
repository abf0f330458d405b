package adapter_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/adapter"
	"github.com/mohr-hix/mohr/tokens"
)

// FuzzAccessTokenVerify feeds arbitrary strings to the verifier: it must never panic, and whatever it accepts
// must carry the claims of the one genuine token (same subject, binding and jti).
func FuzzAccessTokenVerify(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	key, _ := tokens.NewSoftwareKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{SerialNumber: "SIAM-1001"}, NotBefore: now, NotAfter: now.Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	clock := func() time.Time { return now }
	iss := &tokens.AccessTokenIssuer{Signer: key, KeyID: "k", Issuer: "i", Audience: "a", Clock: clock}
	good, _, err := iss.Issue(context.Background(), cert, "SIAM-1001", "s")
	if err != nil {
		f.Fatal(err)
	}
	ver := &adapter.AccessTokenVerifier{Key: &key.PublicKey, KeyID: "k", Issuer: "i", Audience: "a", Clock: clock}
	want, err := ver.Verify(good, cert)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0..")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := ver.Verify(tok, cert)
		if err != nil {
			return
		}
		if c.Subject != want.Subject || c.ID != want.ID || c.Cnf.X5tS256 != want.Cnf.X5tS256 {
			t.Fatalf("accepted a token with other claims: %+v", c)
		}
	})
}
