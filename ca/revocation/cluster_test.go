package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/store"
	"github.com/mohr-hix/mohr/internal/store/storetest"
)

// clusterNodes returns n stores on one fresh PostgreSQL database ("nodes") holding count issued
// certificates of p, recorded through the first.
func clusterNodes(t *testing.T, p *testPKI, n, count int) ([]*store.Postgres, []string, string) {
	t.Helper()
	ctx := context.Background()
	nodes, dsn := storetest.OpenNodes(t, n, store.WithClock(p.clock.Now))
	var serials []string
	for i := 0; i < count; i++ {
		c, s := p.leaf(t, false)
		rec := ca.CertRecord{Serial: s, Profile: "physician-auth", Subject: c.Subject.String(), Subject2: "IDCIR-0499370899",
			NotBefore: c.NotBefore, NotAfter: c.NotAfter, TBSHash: make([]byte, 32), Shard: ca.ShardFor(c.SerialNumber, p.shards)}
		if err := nodes[0].AddPending(ctx, rec, audit.Event{Kind: "cert.intent", Actor: "test", Subject: s}); err != nil {
			t.Fatal(err)
		}
		if err := nodes[0].MarkIssued(ctx, s, c.Raw, audit.Event{Kind: "cert.issued", Actor: "test", Subject: s}); err != nil {
			t.Fatal(err)
		}
		serials = append(serials, s)
	}
	return nodes, serials, dsn
}

// TestCRLTwoNodes runs two CRL publishers ("nodes") on one PostgreSQL database while certificates are revoked
// through both: every CRL of a shard has its own number, a higher number never lists less, both nodes serve
// the same bytes, and a node started later serves them too without signing a new CRL.
func TestCRLTwoNodes(t *testing.T) {
	ctx := context.Background()
	const shards = 2
	p := newTestPKI(t, testEpoch, shards)
	nodes, serials, _ := clusterNodes(t, p, 2, 24)
	pubs := make([]*CRLPublisher, 2)
	for i := range pubs {
		var err error
		if pubs[i], err = NewCRLPublisher(CRLConfig{Issuer: p.issuer, Store: nodes[i], Shards: shards, BaseURL: p.crlBase, Now: p.clock.Now}); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	seen := map[[2]int64][]byte{} // (shard, number) -> DER
	record := func(c PublishedCRL) {
		mu.Lock()
		defer mu.Unlock()
		key := [2]int64{int64(c.Shard), c.Number}
		if prev, ok := seen[key]; ok && !bytes.Equal(prev, c.DER) {
			t.Errorf("shard %d: two different CRLs numbered %d", c.Shard, c.Number)
		}
		seen[key] = c.DER
	}
	for i, s := range serials {
		node := nodes[i%2]
		if _, err := node.Revoke(ctx, s, 1, time.Time{}, audit.Event{Kind: EventRevoked, Actor: "test", Subject: s}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, pub := range pubs { // both nodes see the revocation (its own call, the change feed) at once
			for shard := 0; shard < shards; shard++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := pub.Publish(ctx, shard)
					if err != nil {
						t.Error(err)
						return
					}
					record(c)
				}()
			}
		}
		wg.Wait()
	}
	// A higher number never lists less: revocations only add entries.
	listed := func(der []byte) map[string]bool {
		crl, err := x509.ParseRevocationList(der)
		if err != nil || crl.CheckSignatureFrom(p.inter) != nil {
			t.Fatalf("CRL does not parse or verify: %v", err)
		}
		m := map[string]bool{}
		for _, e := range crl.RevokedCertificateEntries {
			m[ca.SerialHex(e.SerialNumber)] = true
		}
		return m
	}
	total := 0
	for shard := 0; shard < shards; shard++ {
		var prev map[string]bool
		var prevN int64
		for n := int64(1); n <= 200; n++ {
			der, ok := seen[[2]int64{int64(shard), n}]
			if !ok {
				continue
			}
			cur := listed(der)
			for s := range prev {
				if !cur[s] {
					t.Errorf("shard %d: CRL %d lists %s, CRL %d does not", shard, prevN, s, n)
				}
			}
			prev, prevN = cur, n
		}
		total += len(prev)
		for _, pub := range pubs {
			if err := pub.Load(ctx, shard); err != nil {
				t.Fatal(err)
			}
		}
		a, _, _, okA := pubs[0].CRL(shard)
		b, _, _, okB := pubs[1].CRL(shard)
		if !okA || !okB || !bytes.Equal(a, b) {
			t.Errorf("shard %d: the nodes serve different CRLs", shard)
		}
		// A third node, started now, serves the same CRL without signing another.
		pub3, err := NewCRLPublisher(CRLConfig{Issuer: p.issuer, Store: nodes[1], Shards: shards, BaseURL: p.crlBase, Now: p.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		c, err := pub3.Publish(ctx, shard)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.DER, a) {
			t.Errorf("shard %d: a new node signed CRL %d instead of serving the stored one", shard, c.Number)
		}
	}
	if total != len(serials) {
		t.Errorf("the newest CRLs list %d certificates, want %d", total, len(serials))
	}
	_, vkey, err := audit.GenerateKey("test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(ctx, nodes[0], vkey); err != nil {
		t.Fatal(err)
	}
}

// TestOCSPTwoNodes runs two responders ("nodes", each with its own delegated responder key) on one PostgreSQL
// database: the first signs and stores every response; the second starts warm, serving the very same bytes
// without signing; after a revocation through the first node, the second (told by its change feed) serves
// the first node's revoked response; a response tampered with in the database is not served.
func TestOCSPTwoNodes(t *testing.T) {
	ctx := context.Background()
	const shards = 2
	p := newTestPKI(t, testEpoch, shards)
	nodes, serials, dsn := clusterNodes(t, p, 2, 12)
	certs := map[string]*x509.Certificate{}
	for _, s := range serials {
		rec, err := nodes[0].Certificate(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		certs[s], _ = x509.ParseCertificate(rec.DER)
	}
	responder := func(st ca.Store) *Responder {
		k := newKey(t)
		r, err := NewResponder(ResponderConfig{Issuer: p.issuer, Store: st, Key: k, Shards: shards, Now: p.clock.Now, Issue: p.issueFunc(t, st, k)})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
	ask := func(r *Responder, s string, h crypto.Hash) []byte {
		req, err := ocsp.CreateRequest(certs[s], p.inter, &ocsp.RequestOptions{Hash: h})
		if err != nil {
			t.Fatal(err)
		}
		out, _ := r.Respond(ctx, req)
		if _, err := ocsp.ParseResponseForCert(out, certs[s], p.inter); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return out
	}
	a := responder(nodes[0])
	p.clock.Add(time.Minute) // a node signing anew would sign with another thisUpdate
	b := responder(nodes[1])
	for _, s := range serials {
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			if !bytes.Equal(ask(a, s, h), ask(b, s, h)) {
				t.Fatalf("%s: the warm node serves other bytes", s)
			}
		}
	}

	// A revocation through node a; node b hears of it through its change feed (Update).
	svc := &Service{Store: nodes[0], Now: p.clock.Now, OCSP: a}
	p.clock.Add(time.Minute)
	if _, err := svc.Revoke(ctx, serials[0], KeyCompromise, "test"); err != nil {
		t.Fatal(err)
	}
	p.clock.Add(time.Second)
	if err := b.Update(ctx, serials[0]); err != nil {
		t.Fatal(err)
	}
	ra, rb := ask(a, serials[0], crypto.SHA1), ask(b, serials[0], crypto.SHA1)
	resp, _ := ocsp.ParseResponse(rb, p.inter)
	if !bytes.Equal(ra, rb) || resp.Status != ocsp.Revoked {
		t.Fatalf("after the revocation: same bytes %v, status %d", bytes.Equal(ra, rb), resp.Status)
	}

	// A response altered in the database (good for the revoked certificate, from an older good response
	// under a newer version) is not taken by a starting node.
	good := ask(a, serials[1], crypto.SHA1)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE ocsp_responses SET der_sha1 = $1 WHERE serial = $2`, good, serials[0]); err != nil {
		t.Fatal(err)
	}
	c := responder(nodes[1])
	if r, _ := ocsp.ParseResponse(ask(c, serials[0], crypto.SHA1), p.inter); r.Status != ocsp.Revoked {
		t.Fatalf("a starting node served a tampered response: status %d", r.Status)
	}
}
