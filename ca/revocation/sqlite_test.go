package revocation

import (
	"context"
	"crypto"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/store"
)

// TestFlowOnSQLite runs revoke, hold, release, CRL publication and OCSP on the embedded SQLite store
// (internal/store), not the in-memory fake.
func TestFlowOnSQLite(t *testing.T) {
	ctx := context.Background()
	p := newTestPKI(t, testEpoch, 4)
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "mohr.db"), store.WithClock(p.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var st ca.Store = db

	certs := map[string]*x509.Certificate{}
	var serials []string
	for i := 0; i < 6; i++ {
		c, s := p.leaf(t, false)
		rec := ca.CertRecord{Serial: s, Profile: "physician-auth", Subject: c.Subject.String(), Subject2: "IDCIR-0499370899",
			NotBefore: c.NotBefore, NotAfter: c.NotAfter, TBSHash: make([]byte, 32), Shard: ca.ShardFor(c.SerialNumber, 4)}
		if err := st.AddPending(ctx, rec, audit.Event{Time: p.clock.Now(), Kind: "cert.intent", Actor: "test", Subject: s}); err != nil {
			t.Fatal(err)
		}
		if err := st.MarkIssued(ctx, s, c.Raw, audit.Event{Time: p.clock.Now(), Kind: "cert.issued", Actor: "test", Subject: s}); err != nil {
			t.Fatal(err)
		}
		certs[s] = c
		serials = append(serials, s)
	}
	pub, err := NewCRLPublisher(CRLConfig{Issuer: p.issuer, Store: st, Shards: 4, BaseURL: p.crlBase, Now: p.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	r, err := NewResponder(ResponderConfig{Issuer: p.issuer, Store: st, Key: k, Shards: 4, Now: p.clock.Now, Issue: p.issueFunc(t, st, k)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	svc := &Service{Store: st, Now: p.clock.Now, CRL: pub, OCSP: r}

	p.clock.Add(time.Minute)
	if res, err := svc.Revoke(ctx, serials[0], KeyCompromise, "cli:root"); err != nil || !res.Changed {
		t.Fatalf("revoke: %+v %v", res, err)
	}
	if res, err := svc.Revoke(ctx, serials[0], KeyCompromise, "cli:root"); err != nil || res.Changed {
		t.Fatalf("revoke again: %+v %v", res, err)
	}
	if _, err := svc.Revoke(ctx, serials[0], Superseded, "cli:root"); err == nil {
		t.Fatal("re-revoke with another reason accepted")
	}
	for _, s := range serials[1:3] {
		if _, err := svc.Hold(ctx, s, "api:facility:42"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.Release(ctx, serials[2], "api:facility:42"); err != nil {
		t.Fatal(err)
	}
	if err := pub.PublishAll(ctx); err != nil {
		t.Fatal(err)
	}
	listed := map[string]int{}
	for shard := 0; shard < 4; shard++ {
		der, _, _, ok := pub.CRL(shard)
		if !ok {
			t.Fatalf("shard %d", shard)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil || crl.CheckSignatureFrom(p.inter) != nil {
			t.Fatalf("shard %d: %v", shard, err)
		}
		for _, e := range crl.RevokedCertificateEntries {
			listed[ca.SerialHex(e.SerialNumber)] = e.ReasonCode
		}
	}
	if len(listed) != 2 || listed[serials[0]] != int(KeyCompromise) || listed[serials[1]] != int(CertificateHold) {
		t.Fatalf("CRL entries %v", listed)
	}
	want := map[string]int{serials[0]: ocsp.Revoked, serials[1]: ocsp.Revoked, serials[2]: ocsp.Good, serials[3]: ocsp.Good}
	for s, status := range want {
		der, _ := ocsp.CreateRequest(certs[s], p.inter, &ocsp.RequestOptions{Hash: crypto.SHA256})
		out, _ := r.Respond(ctx, der)
		resp, err := ocsp.ParseResponseForCert(out, certs[s], p.inter)
		if err != nil || resp.Status != status {
			t.Fatalf("%s: status %v want %v (%v)", s, resp.Status, status, err)
		}
	}
	// A fresh responder reads the same answers back from the database.
	k = newKey(t)
	r2, err := NewResponder(ResponderConfig{Issuer: p.issuer, Store: st, Key: k, Shards: 4, Now: p.clock.Now, Issue: p.issueFunc(t, st, k)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if r2.Len() != 8 { // 6 leaves + 2 responder certificates
		t.Fatalf("cache after restart: %d", r2.Len())
	}
}
