package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing/offline"
)

// TestTrustBundleRoute serves a real signed bundle (offline.Publisher) without a credential: it opens with the
// pinned seal key, not with another key, and carries caching headers that end within the hour.
func TestTrustBundleRoute(t *testing.T) {
	p, err := testpki.New(testNow)
	if err != nil {
		t.Fatal(err)
	}
	seal, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub := &offline.Publisher{Seal: seal, Now: func() time.Time { return testNow },
		Content: func(context.Context) (offline.BundleInput, error) {
			return offline.BundleInput{Roots: []*x509.Certificate{p.Root}, Intermediates: []*x509.Certificate{p.Intermediate}}, nil
		}}
	e := newEnv(t, func(_ *Config, s *Services) { s.Offline = pub })
	r := e.do(callerNone, "GET", "/trust-bundle", "", nil)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/cose") {
		t.Fatalf("GET /trust-bundle: %d %s", r.status, r.header.Get("Content-Type"))
	}
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "max-age=3600") {
		t.Fatalf("Cache-Control %q", cc)
	}
	b, err := offline.OpenBundle(r.body, seal.Public(), testNow.Add(time.Minute))
	if err != nil || !b.Roots[0].Equal(p.Root) {
		t.Fatalf("served bundle: %v", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := offline.OpenBundle(r.body, other.Public(), testNow); !errors.Is(err, offline.ErrBundleSignature) {
		t.Fatalf("bundle opened with another key: %v", err)
	}
}
