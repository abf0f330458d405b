package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/api"
	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/ca/revocation"
	"github.com/mohr-hix/mohr/internal/testenv"
)

// countedRevocation is the node's database read of a client certificate's status, counted.
type countedRevocation struct {
	clientRevocation
	reads *atomic.Int64
}

func (c countedRevocation) Revoked(ctx context.Context, cert *x509.Certificate) (bool, error) {
	c.reads.Add(1)
	return c.clientRevocation.Revoked(ctx, cert)
}

// TestClientRevocationFollowsFeed: the API answers a client certificate's revocation from memory while the
// node's change feed is in sync, and a client revoked on another node (a second store handle on the same
// database, as another `mohr serve` has) is refused once the feed has read the change, the injected clock not
// having moved (so the refusal is the feed's doing, not the bound's). With the feed stopped, a second client
// revoked on the other node is refused as soon as the injected clock passes the bound (clientRevocationBound):
// the stale cache reads the database. SQLite and PostgreSQL.
func TestClientRevocationFollowsFeed(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			var mutate func(*Config)
			if driver == "postgres" {
				dsn := testenv.PostgresDSN(t)
				name := "mohr_clientrev_" + fmt.Sprint(time.Now().UnixNano())
				if out, err := exec.Command("psql", dsn, "-c", "CREATE DATABASE "+name).CombinedOutput(); err != nil {
					t.Fatalf("create database: %v %s", err, out)
				}
				t.Cleanup(func() { exec.Command("psql", dsn, "-c", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)").Run() })
				u, _ := url.Parse(dsn)
				u.Path = "/" + name
				mutate = func(c *Config) { c.Database.Driver, c.Database.DSN = "postgres", u.String() }
			}
			clk := &fakeClock{t: time.Now()}
			n := clockNodeWith(t, clk, mutate)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var reads atomic.Int64
			n.clientRev = api.NewClientRevocationCache(countedRevocation{clientRevocation{n.st}, &reads}, clientRevocationBound, clk.Now)
			srv, err := n.apiServer()
			if err != nil {
				t.Fatal(err)
			}
			h := srv.Handler()
			// The other node: its own handle on the database.
			other, err := openStore(context.Background(), n.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()

			client := func(name string) *x509.Certificate {
				key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				leaf, err := issueFor(ctx, n.ca, key, ca.Request{Profile: ca.ProfileOrganisationAuth, CommonName: name, Role: "pharmacy"})
				if err != nil {
					t.Fatal(err)
				}
				return leaf
			}
			whoami := func(leaf *x509.Certificate) int {
				req := httptest.NewRequest("GET", "https://mohr.test/v1/whoami", nil)
				req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec.Code
			}
			revokeElsewhere := func(leaf *x509.Certificate) {
				serial := ca.SerialHex(leaf.SerialNumber)
				if _, err := other.Revoke(context.Background(), serial, 1, time.Time{}, newEvent(revocation.EventRevoked, "op:other-node", serial, nil)); err != nil {
					t.Fatal(err)
				}
			}

			feedCtx, stopFeed := context.WithCancel(ctx)
			feedDone := make(chan error, 1)
			go func() { feedDone <- n.changeFeed(feedCtx) }()
			if !waitFor(clusterWait, n.clientRev.Fresh) {
				t.Fatal("the change feed never synced")
			}

			a := client("Razi Pharmacy")
			if code := whoami(a); code != http.StatusOK {
				t.Fatalf("issued client: %d", code)
			}
			before := reads.Load()
			for range 5 {
				if code := whoami(a); code != http.StatusOK {
					t.Fatalf("issued client: %d", code)
				}
			}
			if got := reads.Load(); got != before {
				t.Fatalf("%d database reads for 5 requests with the feed in sync; want 0", got-before)
			}

			// Revoked on the other node: refused once this node's feed has read the change (clock still).
			revokeElsewhere(a)
			if !waitFor(clusterWait, func() bool { return whoami(a) == http.StatusUnauthorized }) {
				t.Fatalf("revoked on another node, still admitted: %d", whoami(a))
			}

			// The feed stops. A second client, admitted (remembered), revoked on the other node.
			stopFeed()
			<-feedDone
			b := client("Sina Pharmacy")
			if code := whoami(b); code != http.StatusOK {
				t.Fatalf("second client: %d", code)
			}
			revokeElsewhere(b)
			clk.Add(clientRevocationBound + time.Second)
			if n.clientRev.Fresh() {
				t.Fatal("the cache is fresh with the feed stopped beyond the bound")
			}
			if code := whoami(b); code != http.StatusUnauthorized {
				t.Fatalf("stale feed: a client revoked on another node got %d", code)
			}
			if code := whoami(a); code != http.StatusUnauthorized {
				t.Fatalf("stale feed: the first revoked client got %d", code)
			}
		})
	}
}
