package revocation

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/store"
)

// countingStore is the SQLite store, counting the transactions that store OCSP responses.
type countingStore struct {
	*store.SQLite
	puts atomic.Int32
}

func (s *countingStore) PutOCSPResponses(ctx context.Context, recs []ca.OCSPRecord) error {
	s.puts.Add(1)
	return s.SQLite.PutOCSPResponses(ctx, recs)
}

// TestUpdateManyOnePage pre-signs a page of changes the way the change feed hands them over: certificates
// issued after Start, one revoked, one named twice, one the store does not have and one malformed serial.
// Every issued certificate is then served good from the cache, the revoked one revoked, the unknown one not
// at all; the responses are stored in one transaction; the malformed serial is reported, not fatal.
func TestUpdateManyOnePage(t *testing.T) {
	ctx := context.Background()
	p := newTestPKI(t, testEpoch, 2)
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "mohr.db"), store.WithClock(p.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := &countingStore{SQLite: db}
	k := newKey(t)
	r, err := NewResponder(ResponderConfig{Issuer: p.issuer, Store: st, Key: k, Shards: 2, Now: p.clock.Now, Issue: p.issueFunc(t, st, k)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	certs := map[string]*x509.Certificate{}
	var serials []string
	for i := 0; i < 12; i++ {
		c, s := p.leaf(t, false)
		rec := ca.CertRecord{Serial: s, Profile: "physician-auth", Subject: c.Subject.String(), NotBefore: c.NotBefore,
			NotAfter: c.NotAfter, TBSHash: make([]byte, 32), Shard: ca.ShardFor(c.SerialNumber, 2)}
		if err := st.AddPending(ctx, rec, audit.Event{Kind: "cert.intent", Actor: "test", Subject: s}); err != nil {
			t.Fatal(err)
		}
		if err := st.MarkIssued(ctx, s, c.Raw, audit.Event{Kind: "cert.issued", Actor: "test", Subject: s}); err != nil {
			t.Fatal(err)
		}
		certs[s] = c
		serials = append(serials, s)
	}
	if _, err := st.Revoke(ctx, serials[0], int(KeyCompromise), p.clock.Now(), audit.Event{Kind: EventRevoked, Actor: "test", Subject: serials[0]}); err != nil {
		t.Fatal(err)
	}
	unknown, unknownSerial := p.leaf(t, false)
	status := func(c *x509.Certificate) (int, bool) {
		req, err := ocsp.CreateRequest(c, p.inter, &ocsp.RequestOptions{Hash: crypto.SHA256})
		if err != nil {
			t.Fatal(err)
		}
		res, _ := r.Handle(ctx, req) // the error says why an error response was sent
		resp, err := ocsp.ParseResponseForCert(res.DER, c, p.inter)
		if err != nil {
			return 0, false
		}
		return resp.Status, res.Cacheable
	}
	p.clock.Add(time.Second)
	puts := st.puts.Load()
	page := append(append([]string{}, serials...), serials[3], unknownSerial, "not-a-serial")
	err = r.UpdateMany(ctx, page)
	if !errors.Is(err, ErrBadSerial) {
		t.Fatalf("UpdateMany with a malformed serial: %v", err)
	}
	if n := st.puts.Load() - puts; n != 1 {
		t.Fatalf("a page of %d changes stored its responses in %d transactions, want 1", len(page), n)
	}
	for i, s := range serials {
		want := ocsp.Good
		if i == 0 {
			want = ocsp.Revoked
		}
		if got, cached := status(certs[s]); got != want || !cached {
			t.Fatalf("%s: status %d cached %v, want %d from the cache", s, got, cached, want)
		}
		o, err := st.OCSPResponse(ctx, s)
		if err != nil || o.DER[0] == nil || o.DER[1] == nil {
			t.Fatalf("%s: stored responses: %v", s, err)
		}
	}
	if _, ok := status(unknown); ok {
		t.Fatal("a serial the store does not have was answered")
	}
}

// TestPresignThenUpdateIssued: certificates pre-signed by the issuing request (Presign) are stored by the
// change feed's UpdateIssued without a second signature, in one transaction; a certificate revoked after the
// issuing request took its ticket stays revoked in the cache even if that request's Presign comes late.
func TestPresignThenUpdateIssued(t *testing.T) {
	ctx := context.Background()
	p := newTestPKI(t, testEpoch, 2)
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "mohr.db"), store.WithClock(p.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := &countingStore{SQLite: db}
	k := &countingSigner{Signer: newKey(t)}
	r, err := NewResponder(ResponderConfig{Issuer: p.issuer, Store: st, Key: k, Shards: 2, Now: p.clock.Now, Issue: p.issueFunc(t, st, k)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	issue := func() (*x509.Certificate, ca.CertRecord, Ticket) {
		tk := r.Ticket()
		c, s := p.leaf(t, false)
		rec := ca.CertRecord{Serial: s, Profile: "physician-auth", Subject: c.Subject.String(), NotBefore: c.NotBefore,
			NotAfter: c.NotAfter, TBSHash: make([]byte, 32), Shard: ca.ShardFor(c.SerialNumber, 2)}
		if err := st.AddPending(ctx, rec, audit.Event{Kind: "cert.intent", Actor: "test", Subject: s}); err != nil {
			t.Fatal(err)
		}
		if err := st.MarkIssued(ctx, s, c.Raw, audit.Event{Kind: "cert.issued", Actor: "test", Subject: s}); err != nil {
			t.Fatal(err)
		}
		rec.DER, rec.Status = c.Raw, ca.StatusIssued // what IssueRecord returns
		return c, rec, tk
	}
	status := func(c *x509.Certificate) int {
		req, _ := ocsp.CreateRequest(c, p.inter, &ocsp.RequestOptions{Hash: crypto.SHA1})
		res, _ := r.Handle(ctx, req)
		resp, err := ocsp.ParseResponseForCert(res.DER, c, p.inter)
		if err != nil || !res.Cacheable {
			t.Fatalf("%x: no cached response: %v", c.SerialNumber, err)
		}
		return resp.Status
	}
	var serials []string
	for i := 0; i < 8; i++ {
		c, rec, tk := issue()
		if err := r.Presign(rec, tk); err != nil {
			t.Fatal(err)
		}
		if status(c) != ocsp.Good {
			t.Fatalf("%s: not good after Presign", rec.Serial)
		}
		serials = append(serials, rec.Serial)
	}
	signs, puts := k.n.Load(), st.puts.Load()
	cached, err := r.UpdateIssued(ctx, serials)
	if err != nil || cached != len(serials) {
		t.Fatalf("UpdateIssued: %d of %d already pre-signed, %v", cached, len(serials), err)
	}
	if k.n.Load() != signs || st.puts.Load()-puts != 1 {
		t.Fatalf("UpdateIssued signed %d times and stored in %d transactions, want 0 and 1", k.n.Load()-signs, st.puts.Load()-puts)
	}
	for _, s := range serials {
		if o, err := st.OCSPResponse(ctx, s); err != nil || o.Status != ca.StatusIssued {
			t.Fatalf("%s: stored %v %v", s, o.Status, err)
		}
	}

	// Revoked between the issuance and its late Presign: the revocation wins.
	c, rec, tk := issue()
	p.clock.Add(time.Second)
	if _, err := st.Revoke(ctx, rec.Serial, int(KeyCompromise), p.clock.Now(), audit.Event{Kind: EventRevoked, Actor: "test", Subject: rec.Serial}); err != nil {
		t.Fatal(err)
	}
	if err := r.Update(ctx, rec.Serial); err != nil {
		t.Fatal(err)
	}
	if err := r.Presign(rec, tk); err != nil {
		t.Fatal(err)
	}
	if got := status(c); got != ocsp.Revoked {
		t.Fatalf("a late Presign replaced the revoked response: status %d", got)
	}
	// And the feed, seeing cert.issued and the revocation in one page, leaves it revoked.
	if _, err := r.UpdateIssued(ctx, []string{rec.Serial}); err != nil {
		t.Fatal(err)
	}
	if got := status(c); got != ocsp.Revoked {
		t.Fatalf("UpdateIssued after a revocation: status %d", got)
	}
}
