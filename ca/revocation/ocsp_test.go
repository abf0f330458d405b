package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"maps"
	"net/url"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/ca"
)

type ocspFixture struct {
	p    *testPKI
	key  *countingSigner
	r    *Responder
	svc  *Service
	errs []error
}

// newOCSPFixture builds a responder; policy, if given, changes its config (e.g. SignNonces).
func newOCSPFixture(t testing.TB, now time.Time, policy ...func(*ResponderConfig)) *ocspFixture {
	t.Helper()
	p := newTestPKI(t, now, 4)
	f := &ocspFixture{p: p, key: &countingSigner{Signer: newKey(t)}}
	cfg := ResponderConfig{
		Issuer: p.issuer, Store: p.store, Key: f.key, Shards: 4, Now: p.clock.Now, Issue: p.issueFunc(t, p.store, f.key),
		Interval: 5 * time.Millisecond, OnError: func(err error) { f.errs = append(f.errs, err) },
	}
	for _, fn := range policy {
		fn(&cfg)
	}
	r, err := NewResponder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	f.svc = &Service{Store: p.store, Now: p.clock.Now, OCSP: r}
	return f
}

// request builds an OCSPRequest for ids with an optional nonce (RFC 8954 encoding).
func request(t testing.TB, nonce []byte, ids ...CertID) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, id := range ids {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						addCertID(b, id.Hash, id.IssuerNameHash, id.IssuerKeyHash, id.rawSerial)
					})
				}
			})
			if nonce != nil {
				b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(oidOCSPNonce)
							b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) { b.AddASN1OctetString(nonce) })
						})
					})
				})
			}
		})
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// certID computes the CertID of cert under issuer with golang.org/x/crypto/ocsp, an independent encoder.
func certID(t testing.TB, cert, issuer *x509.Certificate, h crypto.Hash) CertID {
	t.Helper()
	der, err := ocsp.CreateRequest(cert, issuer, &ocsp.RequestOptions{Hash: h})
	if err != nil {
		t.Fatal(err)
	}
	req, err := ParseRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return req.CertID
}

func (f *ocspFixture) ask(t *testing.T, cert *x509.Certificate, h crypto.Hash) (*ocsp.Response, []byte) {
	t.Helper()
	der, err := ocsp.CreateRequest(cert, f.p.inter, &ocsp.RequestOptions{Hash: h})
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.r.Respond(context.Background(), der)
	if err != nil {
		t.Fatalf("Respond: %v", err)
	}
	resp, err := ocsp.ParseResponseForCert(out, cert, f.p.inter)
	if err != nil {
		t.Fatalf("ParseResponseForCert: %v", err)
	}
	if resp.IssuerHash != h {
		t.Fatalf("response CertID hash %v, asked %v", resp.IssuerHash, h)
	}
	return resp, out
}

func TestResponderStatuses(t *testing.T) {
	ctx := context.Background()
	f := newOCSPFixture(t, testEpoch)
	good, _ := f.p.leaf(t, true)
	rev, revS := f.p.leaf(t, true)
	hold, holdS := f.p.leaf(t, true)
	never, _ := f.p.leaf(t, false)
	pending, _ := f.p.leaf(t, false)
	f.p.record(t, pending, ca.StatusPending)
	failed, _ := f.p.leaf(t, false)
	f.p.record(t, failed, ca.StatusFailed)

	// Before Start: tryLater.
	der, _ := ocsp.CreateRequest(good, f.p.inter, nil)
	if out, err := f.r.Handle(ctx, der); !errors.Is(err, ErrNotReady) || !bytes.Equal(out.DER, tryLaterResponse) {
		t.Fatalf("before Start: %x %v", out.DER, err)
	}
	if err := f.r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	rc := f.r.Certificate()
	if rc == nil || rc.NotAfter.Sub(rc.NotBefore) != DefaultResponderCertLifetime {
		t.Fatalf("responder certificate %v", rc)
	}
	var nocheck bool
	for _, e := range rc.Extensions {
		nocheck = nocheck || e.Id.Equal(oidOCSPNoCheck)
	}
	if !nocheck || len(rc.ExtKeyUsage) != 1 || rc.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning || rc.IsCA {
		t.Fatalf("responder certificate profile: nocheck=%v eku=%v", nocheck, rc.ExtKeyUsage)
	}
	if rec, err := f.p.store.Certificate(ctx, ca.SerialHex(rc.SerialNumber)); err != nil || rec.Status != ca.StatusIssued || rec.Profile != ca.ProfileOCSPResponder {
		t.Fatalf("responder certificate not recorded: %+v %v", rec, err)
	}

	f.p.clock.Add(time.Minute)
	if _, err := f.svc.Revoke(ctx, revS, KeyCompromise, "cli:root"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Hold(ctx, holdS, "cli:root"); err != nil {
		t.Fatal(err)
	}
	revokedAt := f.p.clock.Now()

	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		t.Run(h.String(), func(t *testing.T) {
			resp, _ := f.ask(t, good, h)
			if resp.Status != ocsp.Good || !resp.ThisUpdate.Equal(f.p.clock.Now().Add(-time.Minute)) || resp.NextUpdate.Sub(resp.ThisUpdate) != DefaultOCSPValidity {
				t.Fatalf("good: %+v", resp)
			}
			if resp.Certificate == nil || !resp.Certificate.Equal(rc) {
				t.Fatal("responder certificate not included")
			}
			resp, _ = f.ask(t, rev, h)
			if resp.Status != ocsp.Revoked || resp.RevocationReason != ocsp.KeyCompromise || !resp.RevokedAt.Equal(revokedAt) {
				t.Fatalf("revoked: %+v", resp)
			}
			resp, _ = f.ask(t, hold, h)
			if resp.Status != ocsp.Revoked || resp.RevocationReason != ocsp.CertificateHold {
				t.Fatalf("hold: %+v", resp)
			}
			// Serials without a pre-signed response get the unsigned unauthorized error: no signature.
			for name, c := range map[string]*x509.Certificate{"never issued": never, "pending": pending, "failed": failed} {
				n := f.key.n.Load()
				der, err := ocsp.CreateRequest(c, f.p.inter, &ocsp.RequestOptions{Hash: h})
				if err != nil {
					t.Fatal(err)
				}
				out, err := f.r.Handle(ctx, der)
				if !errors.Is(err, ErrUnauthorized) || !bytes.Equal(out.DER, unauthorizedResponse) || f.key.n.Load() != n {
					t.Fatalf("%s: %v, %d signatures", name, err, f.key.n.Load()-n)
				}
			}
		})
	}

	// Release: good again, from a freshly signed cached response.
	if _, err := f.svc.Release(ctx, holdS, "cli:root"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := f.ask(t, hold, crypto.SHA256); resp.Status != ocsp.Good {
		t.Fatalf("released: %d", resp.Status)
	}

	// Serving from the cache signs nothing and returns the same bytes.
	_, first := f.ask(t, good, crypto.SHA1)
	n := f.key.n.Load()
	for i := 0; i < 100; i++ {
		if _, again := f.ask(t, good, crypto.SHA1); !bytes.Equal(again, first) {
			t.Fatal("cached response changed")
		}
	}
	if f.key.n.Load() != n {
		t.Fatalf("serving from cache signed %d times", f.key.n.Load()-n)
	}
}

func TestResponderRequests(t *testing.T) {
	ctx := context.Background()
	f := newOCSPFixture(t, testEpoch)
	good, _ := f.p.leaf(t, true)
	rev, revS := f.p.leaf(t, true)
	if err := f.r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Revoke(ctx, revS, Superseded, "cli:root"); err != nil {
		t.Fatal(err)
	}
	goodID := certID(t, good, f.p.inter, crypto.SHA256)
	revID := certID(t, rev, f.p.inter, crypto.SHA1)
	other := newTestPKI(t, testEpoch, 4)
	otherLeaf, _ := other.leaf(t, false)
	otherID := certID(t, otherLeaf, other.inter, crypto.SHA1)
	// Same serial and name, other key: the key hash must match too.
	wrongKey := goodID
	wrongKey.IssuerKeyHash = bytes.Repeat([]byte{1}, 32)
	sha384 := CertID{Hash: crypto.SHA384, IssuerNameHash: make([]byte, 48), IssuerKeyHash: make([]byte, 48), rawSerial: goodID.rawSerial}

	tests := []struct {
		name    string
		req     []byte
		wantErr error
		wantDER []byte
		status  int // when successful
	}{
		{"garbage", []byte("hello"), ErrMalformedRequest, malformedResponse, 0},
		{"empty", nil, ErrMalformedRequest, malformedResponse, 0},
		{"oversized", append(request(t, nil, goodID), make([]byte, MaxRequestSize)...), ErrMalformedRequest, malformedResponse, 0},
		{"trailing data", append(request(t, nil, goodID), 0), ErrMalformedRequest, malformedResponse, 0},
		{"no CertID", request(t, nil), ErrMalformedRequest, malformedResponse, 0},
		{"empty nonce", request(t, []byte{}, goodID), ErrMalformedRequest, malformedResponse, 0},
		{"33-octet nonce", request(t, make([]byte, 33), goodID), ErrMalformedRequest, malformedResponse, 0},
		{"other issuer", request(t, nil, otherID), ErrUnauthorized, unauthorizedResponse, 0},
		{"wrong key hash", request(t, nil, wrongKey), ErrUnauthorized, unauthorizedResponse, 0},
		{"SHA-384 CertID", request(t, nil, sha384), ErrUnauthorized, unauthorizedResponse, 0},
		{"two CertIDs: first answered", request(t, nil, revID, goodID), nil, nil, ocsp.Revoked},
		{"SHA-256", request(t, nil, goodID), nil, nil, ocsp.Good},
		{"32-octet nonce", request(t, bytes.Repeat([]byte{7}, 32), goodID), nil, nil, ocsp.Good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if out, err := f.r.Respond(ctx, tt.req); err != nil || len(out) == 0 {
				t.Fatalf("Respond: %x, %v", out, err)
			}
			resp, err := f.r.Handle(ctx, tt.req)
			out := resp.DER
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantDER != nil {
				if !bytes.Equal(out, tt.wantDER) {
					t.Fatalf("response %x, want %x", out, tt.wantDER)
				}
				if _, perr := ocsp.ParseResponse(out, nil); perr == nil {
					t.Fatal("x/crypto/ocsp parsed an error response as success")
				}
				return
			}
			parsed, err := ocsp.ParseResponse(out, f.p.inter)
			if err != nil {
				t.Fatal(err)
			}
			if parsed.Status != tt.status {
				t.Fatalf("status %d, want %d", parsed.Status, tt.status)
			}
		})
	}
}

func TestResponderNonceAndGET(t *testing.T) {
	ctx := context.Background()
	f := newOCSPFixture(t, testEpoch)
	good, _ := f.p.leaf(t, true)
	if err := f.r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	id := certID(t, good, f.p.inter, crypto.SHA1)
	nonce := make([]byte, 32)
	rand.Read(nonce)
	n := f.key.n.Load()
	// Default policy: the nonce is ignored and the pre-signed response served, with no signature.
	resp, err := f.r.Handle(ctx, request(t, nonce, id))
	if err != nil {
		t.Fatal(err)
	}
	if f.key.n.Load() != n || !resp.Cacheable || responseNonce(t, resp.DER) != nil {
		t.Fatalf("ignored nonce: %d signatures, cacheable %v", f.key.n.Load()-n, resp.Cacheable)
	}
	// With the nonce policy on, a nonce is honoured with a signature of its own.
	f.r.cfg.SignNonces = true
	defer func() { f.r.cfg.SignNonces = false }()
	resp, err = f.r.Handle(ctx, request(t, nonce, id))
	if err != nil {
		t.Fatal(err)
	}
	if f.key.n.Load() != n+1 || resp.Cacheable {
		t.Fatalf("nonce: %d signatures, cacheable %v", f.key.n.Load()-n, resp.Cacheable)
	}
	if got := responseNonce(t, resp.DER); !bytes.Equal(got, nonce) {
		t.Fatalf("nonce %x, want %x", got, nonce)
	}
	if r, err := ocsp.ParseResponseForCert(resp.DER, good, f.p.inter); err != nil || r.Status != ocsp.Good {
		t.Fatalf("nonce response: %v", err)
	}

	// GET: RFC 6960 Appendix A.1, url-encoded base64; escaped, unescaped and unpadded all work.
	der := request(t, nil, id)
	b64 := base64.StdEncoding.EncodeToString(der)
	post, _ := f.r.Handle(ctx, der)
	for name, path := range map[string]string{
		"escaped":   "/" + url.PathEscape(b64),
		"query-ish": url.QueryEscape(b64),
		"raw":       b64,
		"unpadded":  base64.RawStdEncoding.EncodeToString(der),
		"url-safe":  base64.URLEncoding.EncodeToString(der),
	} {
		got, err := f.r.HandleGET(ctx, path)
		if err != nil || !bytes.Equal(got.DER, post.DER) || !got.Cacheable {
			t.Errorf("GET %s: %v", name, err)
		}
	}
	// RespondGETHeaders: the pre-signed answer with its caching headers (max-age ends at nextUpdate), none
	// for an answer that must not be cached.
	now := f.r.cfg.Now()
	gd, hdr := f.r.RespondGETHeaders(ctx, b64, now)
	if !bytes.Equal(gd, post.DER) || hdr == nil {
		t.Fatalf("RespondGETHeaders: %d bytes, headers %v", len(gd), hdr)
	}
	if want := CacheHeaders(now, post.ThisUpdate, post.NextUpdate, post.DER); !maps.Equal(hdr, want) {
		t.Fatalf("RespondGETHeaders headers %v, want %v", hdr, want)
	}
	if bad, hdr := f.r.RespondGETHeaders(ctx, "%%%", now); !bytes.Equal(bad, malformedResponse) || hdr != nil {
		t.Fatalf("malformed GET: headers %v", hdr)
	}
	for name, path := range map[string]string{
		"not base64": "%%%", "bad escape": "%zz", "huge": string(bytes.Repeat([]byte("A"), MaxGETPathSize+1)),
	} {
		if out, err := f.r.HandleGET(ctx, path); !errors.Is(err, ErrMalformedRequest) || !bytes.Equal(out.DER, malformedResponse) {
			t.Errorf("GET %s: %v", name, err)
		}
		if out, err := f.r.RespondGET(ctx, path); err != nil || !bytes.Equal(out, malformedResponse) {
			t.Errorf("RespondGET %s: %v", name, err)
		}
	}
}

// responseNonce digs the RFC 8954 nonce out of responseExtensions (x/crypto/ocsp does not parse them).
func responseNonce(t *testing.T, der []byte) []byte {
	t.Helper()
	s := cryptobyte.String(der)
	var resp, rb, rbSeq, basicOctets, basic, tbs cryptobyte.String
	var status int
	if !s.ReadASN1(&resp, cbasn1.SEQUENCE) || !resp.ReadASN1Enum(&status) ||
		!resp.ReadASN1(&rb, cbasn1.Tag(0).Constructed().ContextSpecific()) || !rb.ReadASN1(&rbSeq, cbasn1.SEQUENCE) ||
		!rbSeq.SkipASN1(cbasn1.OBJECT_IDENTIFIER) || !rbSeq.ReadASN1(&basicOctets, cbasn1.OCTET_STRING) ||
		!basicOctets.ReadASN1(&basic, cbasn1.SEQUENCE) || !basic.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		t.Fatal("response structure")
	}
	var exts cryptobyte.String
	var present bool
	tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific())
	if !tbs.SkipASN1(cbasn1.Tag(2).Constructed().ContextSpecific()) || !tbs.SkipASN1(cbasn1.GeneralizedTime) ||
		!tbs.SkipASN1(cbasn1.SEQUENCE) || !tbs.ReadOptionalASN1(&exts, &present, cbasn1.Tag(1).Constructed().ContextSpecific()) {
		t.Fatal("ResponseData structure")
	}
	if !present {
		return nil
	}
	nonce, err := parseExtensions(exts, true)
	if err != nil {
		t.Fatal(err)
	}
	return nonce
}

// TestResponderRenewAndRefresh moves the pinned clock: responses are re-signed before nextUpdate, and the
// responder certificate is renewed before it expires, with everything re-signed under the new one.
func TestResponderRenewAndRefresh(t *testing.T) {
	ctx := context.Background()
	f := newOCSPFixture(t, testEpoch)
	good, _ := f.p.leaf(t, true)
	if err := f.r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := f.ask(t, good, crypto.SHA1)
	cert1 := f.r.Certificate()

	f.p.clock.Add(6 * time.Hour) // not yet RefreshBefore (12h) from nextUpdate
	f.r.tick(ctx)
	if r, _ := f.ask(t, good, crypto.SHA1); !r.ThisUpdate.Equal(first.ThisUpdate) {
		t.Fatal("refreshed too early")
	}
	f.p.clock.Add(7 * time.Hour) // 11h left
	f.r.tick(ctx)
	r2, _ := f.ask(t, good, crypto.SHA1)
	if !r2.ThisUpdate.Equal(f.p.clock.Now().Truncate(time.Second)) || f.r.Certificate() != cert1 {
		t.Fatalf("not refreshed: %v", r2.ThisUpdate)
	}
	f.p.clock.Add(36 * time.Hour) // 49h into a 96h certificate: less than RenewBefore (48h) left
	f.r.tick(ctx)
	cert2 := f.r.Certificate()
	if cert2 == cert1 || cert2.SerialNumber.Cmp(cert1.SerialNumber) == 0 {
		t.Fatal("responder certificate not renewed")
	}
	r3, _ := f.ask(t, good, crypto.SHA256)
	if !r3.Certificate.Equal(cert2) || r3.NextUpdate.After(cert2.NotAfter) {
		t.Fatal("responses not re-signed under the new responder certificate")
	}
	if len(f.errs) != 0 {
		t.Fatal(f.errs)
	}
	// An expired leaf drops out of the cache; it is still answered, signed on demand.
	f.p.clock.Add(400 * 24 * time.Hour)
	f.r.tick(ctx)
	if f.r.Len() != 1 { // only the current responder certificate remains
		t.Fatalf("cache holds %d entries", f.r.Len())
	}
}

// TestResponderRace runs requests, revocations, releases and refreshes concurrently under -race, and checks
// the invariant that matters: once Revoke returns, no request is answered good.
func TestResponderRace(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newOCSPFixture(t, testEpoch)
	var leaves []*x509.Certificate
	for i := 0; i < 20; i++ {
		c, _ := f.p.leaf(t, true)
		leaves = append(leaves, c)
	}
	if err := f.r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan struct{})
	go func() { f.r.Run(ctx); close(runDone) }()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	reqs := make([][]byte, len(leaves))
	for i, c := range leaves {
		reqs[i], _ = ocsp.CreateRequest(c, f.p.inter, nil)
	}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.r.Respond(ctx, reqs[i%len(reqs)]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // a refresher forcing re-signs while revocations happen
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				f.r.Refresh(ctx, true)
			}
		}
	}()
	for i, c := range leaves {
		s := ca.SerialHex(c.SerialNumber)
		if i%2 == 0 {
			if _, err := f.svc.Hold(ctx, s, "cli:root"); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.Release(ctx, s, "cli:root"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.svc.Revoke(ctx, s, KeyCompromise, "cli:root"); err != nil {
			t.Fatal(err)
		}
		for k := 0; k < 20; k++ {
			out, err := f.r.Respond(ctx, reqs[i])
			if err != nil {
				t.Fatal(err)
			}
			resp, err := ocsp.ParseResponse(out, f.p.inter)
			if err != nil || resp.Status != ocsp.Revoked {
				t.Fatalf("leaf %d after revocation: status %v, %v", i, resp.Status, err)
			}
		}
	}
	close(stop)
	wg.Wait()
	cancel()
	<-runDone
}

// TestResponderPresignSHA1Only: SHA-1 CertIDs come from the cache, SHA-256 ones are signed on demand, and
// both say the same thing, also after a revocation.
func TestResponderPresignSHA1Only(t *testing.T) {
	ctx := context.Background()
	p := newTestPKI(t, testEpoch, 4)
	key := &countingSigner{Signer: newKey(t)}
	r, err := NewResponder(ResponderConfig{Issuer: p.issuer, Store: p.store, Key: key, Now: p.clock.Now, PresignSHA1Only: true,
		Issue: p.issueFunc(t, p.store, key)})
	if err != nil {
		t.Fatal(err)
	}
	svc := &Service{Store: p.store, Now: p.clock.Now, OCSP: r}
	leaf, s := p.leaf(t, true)
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	f := &ocspFixture{p: p, key: key, r: r}
	for _, want := range []int{ocsp.Good, ocsp.Revoked} {
		n := key.n.Load()
		if resp, _ := f.ask(t, leaf, crypto.SHA1); resp.Status != want {
			t.Fatalf("SHA-1: %d", resp.Status)
		}
		if key.n.Load() != n {
			t.Fatal("SHA-1 request was signed on demand")
		}
		if resp, _ := f.ask(t, leaf, crypto.SHA256); resp.Status != want {
			t.Fatalf("SHA-256: %d", resp.Status)
		}
		if key.n.Load() != n+1 {
			t.Fatalf("SHA-256 request: %d signatures", key.n.Load()-n)
		}
		if _, err := svc.Revoke(ctx, s, KeyCompromise, "cli:root"); err != nil {
			t.Fatal(err)
		}
	}
}
