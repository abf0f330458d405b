package revocation

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/mohr-hix/mohr/internal/testenv"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mohr-hix/mohr/ca"
)

type memSink struct {
	mu   sync.Mutex
	crls []PublishedCRL
}

func (s *memSink) PutCRL(_ context.Context, c PublishedCRL) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crls = append(s.crls, c)
	return nil
}

func (s *memSink) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.crls) }

// parseIDP decodes the issuing distribution point this package writes.
func parseIDP(t *testing.T, v []byte) (url string, userOnly bool) {
	t.Helper()
	s := cryptobyte.String(v)
	var seq, dp, full, uri cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1(&dp, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!dp.ReadASN1(&full, cbasn1.Tag(0).Constructed().ContextSpecific()) || !full.ReadASN1(&uri, cbasn1.Tag(6).ContextSpecific()) {
		t.Fatalf("bad IDP %x", v)
	}
	var b cryptobyte.String
	if seq.ReadASN1(&b, cbasn1.Tag(1).ContextSpecific()) && len(b) == 1 && b[0] == 0xff {
		userOnly = true
	}
	return string(uri), userOnly
}

type crlFixture struct {
	p      *testPKI
	svc    *Service
	pub    *CRLPublisher
	sink   *memSink
	leaves map[string]*x509.Certificate // by serial
}

func newCRLFixture(t *testing.T, shards, leaves int) *crlFixture {
	t.Helper()
	p := newTestPKI(t, testEpoch, shards)
	sink := &memSink{}
	pub, err := NewCRLPublisher(CRLConfig{
		Issuer: p.issuer, Store: p.store, Shards: shards, BaseURL: p.crlBase,
		Validity: 24 * time.Hour, Sink: sink, Now: p.clock.Now, Interval: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &crlFixture{p: p, pub: pub, sink: sink, leaves: map[string]*x509.Certificate{},
		svc: &Service{Store: p.store, Now: p.clock.Now, CRL: pub}}
	for i := 0; i < leaves; i++ {
		c, s := p.leaf(t, true)
		f.leaves[s] = c
	}
	return f
}

func TestNewCRLPublisherChecks(t *testing.T) {
	p := newTestPKI(t, testEpoch, 2)
	other := newKey(t)
	for name, cfg := range map[string]CRLConfig{
		"no shards":   {Issuer: p.issuer, Store: p.store, BaseURL: p.crlBase},
		"no base":     {Issuer: p.issuer, Store: p.store, Shards: 2},
		"wrong key":   {Issuer: &ca.Issuer{Cert: p.inter, Signer: other}, Store: p.store, Shards: 2, BaseURL: p.crlBase},
		"no store":    {Issuer: p.issuer, Shards: 2, BaseURL: p.crlBase},
		"no issuer":   {Store: p.store, Shards: 2, BaseURL: p.crlBase},
		"leaf issuer": {Issuer: &ca.Issuer{Cert: func() *x509.Certificate { c, _ := p.leaf(t, false); return c }(), Signer: other}, Store: p.store, Shards: 2, BaseURL: p.crlBase},
	} {
		if _, err := NewCRLPublisher(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestCRLShards(t *testing.T) {
	ctx := context.Background()
	f := newCRLFixture(t, 4, 16)
	reasons := []Reason{KeyCompromise, Unspecified, Superseded, AffiliationChanged, PrivilegeWithdrawn, CessationOfOperation}
	want := map[string]Reason{} // serial -> reason expected on the CRL
	i := 0
	var held string
	for s := range f.leaves {
		switch {
		case i < len(reasons):
			if _, err := f.svc.Revoke(ctx, s, reasons[i], "cli:root"); err != nil {
				t.Fatal(err)
			}
			want[s] = reasons[i]
		case i == len(reasons):
			if _, err := f.svc.Hold(ctx, s, "cli:root"); err != nil {
				t.Fatal(err)
			}
			want[s], held = CertificateHold, s
		}
		i++
	}
	f.p.clock.Add(time.Minute)
	if err := f.pub.PublishAll(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(wantNumber int64) {
		t.Helper()
		seen := 0
		for shard := 0; shard < 4; shard++ {
			der, this, next, ok := f.pub.CRL(shard)
			if !ok {
				t.Fatalf("shard %d: no CRL", shard)
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := crl.CheckSignatureFrom(f.p.inter); err != nil {
				t.Fatalf("shard %d: %v", shard, err)
			}
			if crl.Number.Int64() != wantNumber || !crl.ThisUpdate.Equal(this) || !crl.NextUpdate.Equal(next) ||
				!this.Equal(f.p.clock.Now().Truncate(time.Second)) || next.Sub(this) != 24*time.Hour {
				t.Fatalf("shard %d: number %v this %v next %v", shard, crl.Number, crl.ThisUpdate, crl.NextUpdate)
			}
			if !bytes.Equal(crl.AuthorityKeyId, f.p.inter.SubjectKeyId) {
				t.Fatalf("shard %d: AKI", shard)
			}
			var found bool
			for _, ext := range crl.Extensions {
				if ext.Id.Equal(oidIssuingDistributionPoint) {
					found = true
					url, userOnly := parseIDP(t, ext.Value)
					if !ext.Critical || !userOnly || url != ca.CRLURL(f.p.crlBase, shard) {
						t.Fatalf("shard %d: IDP %q critical=%v userOnly=%v", shard, url, ext.Critical, userOnly)
					}
				}
			}
			if !found {
				t.Fatalf("shard %d: no IDP", shard)
			}
			for _, e := range crl.RevokedCertificateEntries {
				s := ca.SerialHex(e.SerialNumber)
				r, ok := want[s]
				if !ok {
					t.Fatalf("shard %d lists %s", shard, s)
				}
				if ca.ShardFor(e.SerialNumber, 4) != shard {
					t.Fatalf("%s in shard %d", s, shard)
				}
				if Reason(e.ReasonCode) != r {
					t.Fatalf("%s: reason %d want %v", s, e.ReasonCode, r)
				}
				seen++
			}
		}
		if seen != len(want) {
			t.Fatalf("CRLs list %d entries, want %d", seen, len(want))
		}
	}
	check(1)

	// Release: RFC 5280 §5.3.1, the hold entry is gone from the next CRL of its shard.
	if _, err := f.svc.Release(ctx, held, "cli:root"); err != nil {
		t.Fatal(err)
	}
	delete(want, held)
	if err := f.pub.PublishAll(ctx); err != nil {
		t.Fatal(err)
	}
	check(2)
	if f.sink.count() != 8 {
		t.Fatalf("sink got %d CRLs", f.sink.count())
	}
	kinds := f.p.store.eventKinds()
	if n := strings.Count(strings.Join(kinds, ","), EventCRLPublished); n != 8 {
		t.Fatalf("%d crl.published events", n)
	}
	if _, err := f.pub.Publish(ctx, 4); !errors.Is(err, ErrNoCRL) {
		t.Fatalf("shard 4: %v", err)
	}
	if _, _, _, ok := f.pub.CRL(-1); ok {
		t.Fatal("CRL(-1) ok")
	}
}

func needOpenSSL(t *testing.T) {
	t.Helper()
	testenv.Tool(t, "openssl")
}

// TestCRLOpenSSL is the outside check: openssl accepts every shard's CRL and, with -crl_check, rejects a
// revoked certificate and accepts a good one against its shard's CRL.
func TestCRLOpenSSL(t *testing.T) {
	needOpenSSL(t)
	ctx := context.Background()
	f := newCRLFixture(t, 3, 12)
	dir := t.TempDir()
	rootPEM := writePEM(t, dir, "root.pem", f.p.root)
	interPEM := writePEM(t, dir, "ca.pem", f.p.inter)
	chainPEM := writePEM(t, dir, "chain.pem", f.p.inter, f.p.root)

	var revoked, good *x509.Certificate
	var held *x509.Certificate
	for s, c := range f.leaves {
		switch {
		case revoked == nil:
			if _, err := f.svc.Revoke(ctx, s, KeyCompromise, "cli:root"); err != nil {
				t.Fatal(err)
			}
			revoked = c
		case held == nil && ca.ShardFor(c.SerialNumber, 3) != ca.ShardFor(revoked.SerialNumber, 3):
			if _, err := f.svc.Hold(ctx, s, "cli:root"); err != nil {
				t.Fatal(err)
			}
			held = c
		}
	}
	for _, c := range f.leaves {
		if c != revoked && c != held && ca.ShardFor(c.SerialNumber, 3) == ca.ShardFor(revoked.SerialNumber, 3) {
			good = c
		}
	}
	if good == nil || held == nil {
		t.Skip("random serials left a shard without the leaves this test needs")
	}
	if err := f.pub.PublishAll(ctx); err != nil {
		t.Fatal(err)
	}
	at := strconv.FormatInt(f.p.clock.Now().Add(time.Hour).Unix(), 10)
	crlFile := func(shard int) string {
		der, _, _, _ := f.pub.CRL(shard)
		path := filepath.Join(dir, fmt.Sprintf("%d.crl", shard))
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for shard := 0; shard < 3; shard++ {
		out, err := exec.Command("openssl", "crl", "-verify", "-noout", "-CAfile", chainPEM, "-in", crlFile(shard)).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "verify OK") {
			t.Fatalf("openssl crl -verify shard %d: %v\n%s", shard, err, out)
		}
	}
	verify := func(c *x509.Certificate) (string, error) {
		leaf := writePEM(t, dir, "leaf.pem", c)
		out, err := exec.Command("openssl", "verify", "-crl_check", "-attime", at,
			"-CRLfile", crlFile(ca.ShardFor(c.SerialNumber, 3)), "-CAfile", rootPEM, "-untrusted", interPEM, leaf).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(revoked); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Fatalf("openssl verify accepted a revoked certificate: %v\n%s", err, out)
	}
	if out, err := verify(held); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Fatalf("openssl verify accepted a held certificate: %v\n%s", err, out)
	}
	if out, err := verify(good); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("openssl verify rejected a good certificate: %v\n%s", err, out)
	}
	// After release the held certificate verifies against its shard's new CRL.
	if _, err := f.svc.Release(ctx, ca.SerialHex(held.SerialNumber), "cli:root"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pub.Publish(ctx, ca.ShardFor(held.SerialNumber, 3)); err != nil {
		t.Fatal(err)
	}
	if out, err := verify(held); err != nil {
		t.Fatalf("openssl verify rejected a released certificate: %v\n%s", err, out)
	}
	t.Logf("openssl crl -verify: 3 shards OK; openssl verify -crl_check: revoked and held rejected, good and released accepted")
}

// TestCRLPublisherRun runs the loop under -race with readers, triggers and clock jumps.
func TestCRLPublisherRun(t *testing.T) {
	f := newCRLFixture(t, 3, 9)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.pub.Run(ctx) }()

	number := func(shard int) int64 {
		der, _, _, ok := f.pub.CRL(shard)
		if !ok {
			return 0
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Error(err)
			return 0
		}
		return crl.Number.Int64()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	stopReaders := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stopReaders:
					return
				default:
					for s := 0; s < 3; s++ {
						f.pub.CRL(s)
					}
				}
			}
		}()
	}
	waitFor("first CRLs", func() bool { return number(0) >= 1 && number(1) >= 1 && number(2) >= 1 })

	// A revocation triggers its shard.
	var serial string
	for s := range f.leaves {
		serial = s
		break
	}
	rec, _ := f.p.store.Certificate(ctx, serial)
	before := number(rec.Shard)
	if _, err := f.svc.Revoke(ctx, serial, KeyCompromise, "cli:root"); err != nil {
		t.Fatal(err)
	}
	waitFor("triggered CRL", func() bool {
		der, _, _, _ := f.pub.CRL(rec.Shard)
		crl, _ := x509.ParseRevocationList(der)
		return number(rec.Shard) > before && crl != nil && len(crl.RevokedCertificateEntries) == 1
	})

	// Time passes: every shard is re-signed before its nextUpdate.
	n0 := []int64{number(0), number(1), number(2)}
	f.p.clock.Add(13 * time.Hour) // past nextUpdate - RegenerateBefore (12h)
	waitFor("scheduled CRLs", func() bool {
		return number(0) > n0[0] && number(1) > n0[1] && number(2) > n0[2]
	})
	for s := 0; s < 3; s++ {
		_, this, next, _ := f.pub.CRL(s)
		if !next.After(f.p.clock.Now()) || this.After(f.p.clock.Now()) {
			t.Fatalf("shard %d: this %v next %v now %v", s, this, next, f.p.clock.Now())
		}
	}
	close(stopReaders)
	wg.Wait()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
}

func TestCacheHeaders(t *testing.T) {
	this := testEpoch
	next := this.Add(24 * time.Hour)
	h := CacheHeaders(this.Add(time.Hour), this, next, []byte("crl"))
	if h["Cache-Control"] != "public, max-age=82800, no-transform, must-revalidate" ||
		h["Last-Modified"] != "Wed, 25 Nov 2026 12:00:00 GMT" || h["Expires"] != "Thu, 26 Nov 2026 12:00:00 GMT" ||
		len(h["ETag"]) != 34 {
		t.Fatalf("%v", h)
	}
	if h := CacheHeaders(next.Add(time.Hour), this, next, nil); !strings.Contains(h["Cache-Control"], "max-age=0,") {
		t.Fatalf("stale: %v", h)
	}
}

func TestSerialOctets(t *testing.T) {
	for _, n := range []string{"1", "7f", "80", "ff", "100", "0abc", "00ff", "5a17c0ffee0000000000000000000001", "8000000000000000000000000000000000000001"} {
		got, err := serialOctets(nil, n)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := new(big.Int).SetString(n, 16)
		if !bytes.Equal(got, intBytes(want)) || !minimalInteger(got) {
			t.Errorf("%s: %x, want %x", n, got, intBytes(want))
		}
	}
	for _, n := range []string{"", "0", "000", "xyz", "1g", strings.Repeat("f", 65)} {
		if _, err := serialOctets(nil, n); !errors.Is(err, ErrBadSerial) {
			t.Errorf("%q: %v", n, err)
		}
	}
}

// TestCRLRSAAndTimes signs with an RSA CA key and a nextUpdate past 2049 (GeneralizedTime, RFC 5280
// §5.1.2.4), and checks crypto/x509 reads it back.
func TestCRLRSAAndTimes(t *testing.T) {
	p := newTestPKI(t, time.Date(2049, 12, 31, 0, 0, 0, 0, time.UTC), 1)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	inter := mustCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "RSA CA"},
		NotBefore: p.clock.Now().Add(-time.Hour), NotAfter: p.clock.Now().Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}, p.root, &rsaKey.PublicKey, p.rootKey)
	st := newMemStore(p.clock.Now)
	st.certs["abc"] = ca.CertRecord{Serial: "abc", Status: ca.StatusRevoked, NotAfter: p.clock.Now().Add(time.Hour),
		RevokedAt: p.clock.Now(), RevocationReason: int(KeyCompromise)}
	pub, err := NewCRLPublisher(CRLConfig{Issuer: &ca.Issuer{Cert: inter, Signer: rsaKey}, Store: st, Shards: 1,
		BaseURL: "http://crl.test/rsa", Validity: 48 * time.Hour, Now: p.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	c, err := pub.Publish(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(c.DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(inter); err != nil {
		t.Fatal(err)
	}
	if crl.NextUpdate.Year() != 2050 || len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].ReasonCode != 1 ||
		crl.RevokedCertificateEntries[0].SerialNumber.Int64() != 0xabc || crl.Number.Int64() != 1 {
		t.Fatalf("%+v", crl)
	}
}
