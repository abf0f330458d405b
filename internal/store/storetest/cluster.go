package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/store"
	"github.com/mohr-hix/mohr/internal/testenv"
)

// FreshPostgres creates an empty database mohr_test_<random> on the cluster at testenv.PostgresDSN and returns
// its DSN; the database is dropped when tb ends. Tests of several nodes open one store per node on it.
func FreshPostgres(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	dsn := testenv.PostgresDSN(tb)
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect to the test cluster: %v", err)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	name := "mohr_test_" + hex.EncodeToString(rnd[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close(ctx)
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
		}
		admin.Close(ctx)
	})
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			tb.Fatal("MOHR_TEST_PG_DSN is not a URL")
		}
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name
}

// OpenNodes opens n PostgreSQL stores (n "nodes") on one fresh database, closed when tb ends, and returns
// them with the database's DSN.
func OpenNodes(tb testing.TB, n int, opts ...store.Option) ([]*store.Postgres, string) {
	tb.Helper()
	dsn := FreshPostgres(tb)
	out := make([]*store.Postgres, n)
	for i := range out {
		s, err := store.OpenPostgres(context.Background(), dsn, opts...)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		out[i] = s
	}
	return out, dsn
}

// shared is the state several nodes share, as both stores implement it.
type shared interface {
	store.Store
	ca.CRLStore
	ca.OCSPStore
	ClaimLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
	AddApproval(ctx context.Context, a store.Approval, max int, ev audit.Event) error
	PendingApproval(ctx context.Context, id string) (store.Approval, error)
	PendingApprovals(ctx context.Context) ([]store.Approval, error)
	GrantApproval(ctx context.Context, id, approvedBy string, ev audit.Event) error
	FinishApproval(ctx context.Context, id, status string, ev audit.Event) error
}

func asShared(t *testing.T, s store.Store) shared {
	sh, ok := s.(shared)
	if !ok {
		t.Fatalf("%T does not implement the shared-state methods", s)
	}
	return sh
}

func testLeases(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	sh := asShared(t, s)
	claim := func(holder string, ttl time.Duration, want bool) {
		t.Helper()
		got, err := sh.ClaimLease(ctx, "work", holder, ttl)
		if err != nil || got != want {
			t.Fatalf("%s claims: %v %v, want %v", holder, got, err, want)
		}
	}
	claim("a", time.Hour, true)
	claim("b", time.Hour, false) // held by a
	claim("a", time.Hour, true)  // renewed
	if err := sh.ReleaseLease(ctx, "work", "b"); err != nil {
		t.Fatal(err)
	}
	claim("b", time.Hour, false) // b cannot release a's lease
	if err := sh.ReleaseLease(ctx, "work", "a"); err != nil {
		t.Fatal(err)
	}
	claim("b", time.Microsecond, true)
	time.Sleep(5 * time.Millisecond)
	claim("a", time.Hour, true) // b's lease expired
}

func testApprovals(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	sh := asShared(t, s)
	now := time.Now().UTC()
	a := store.Approval{ID: "ap1", Operation: "key.destroy", Params: []byte(`{"keyId":"k"}`), RequestedBy: "op1",
		Requester: "CN=op1", RequesterDN: []byte{0x30, 0}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	before := auditSize(t, s)
	if err := sh.AddApproval(ctx, a, 2, ev("approval.requested", "ap1")); err != nil {
		t.Fatal(err)
	}
	exp := a
	exp.ID, exp.ExpiresAt = "ap2", now.Add(-time.Second)
	if err := sh.AddApproval(ctx, exp, 2, ev("approval.requested", "ap2")); err != nil {
		t.Fatal(err)
	}
	third := a
	third.ID = "ap3"
	if err := sh.AddApproval(ctx, third, 1, ev("approval.requested", "ap3")); !errors.Is(err, ca.ErrConflict) {
		t.Fatalf("beyond the limit: %v", err)
	}
	got, err := sh.PendingApproval(ctx, "ap1")
	if err != nil || got.Operation != a.Operation || string(got.Params) != string(a.Params) || !bytes.Equal(got.RequesterDN, a.RequesterDN) {
		t.Fatalf("pending: %+v %v", got, err)
	}
	if _, err := sh.PendingApproval(ctx, "ap2"); !errors.Is(err, ca.ErrNotFound) {
		t.Fatalf("expired approval: %v", err)
	}
	if l, err := sh.PendingApprovals(ctx); err != nil || len(l) != 1 {
		t.Fatalf("list: %d %v", len(l), err)
	}
	// Granted once, concurrently.
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := sh.GrantApproval(ctx, "ap1", "op2", ev("approval.granted", "ap1"))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				granted++
			} else if !errors.Is(err, ca.ErrNotFound) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if granted != 1 {
		t.Fatalf("granted %d times", granted)
	}
	if err := sh.GrantApproval(ctx, "ap2", "op2", ev("approval.granted", "ap2")); !errors.Is(err, ca.ErrNotFound) {
		t.Fatalf("expired approval granted: %v", err)
	}
	if err := sh.FinishApproval(ctx, "ap1", "executed", ev("approval.executed", "ap1")); err != nil {
		t.Fatal(err)
	}
	if n := auditSize(t, s) - before; n != 4 {
		t.Fatalf("%d audit events, want 4", n)
	}
	verify(t, s)
}

func testSignCRL(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	sh := asShared(t, s)
	for i := 0; i < 3; i++ {
		mustIssue(t, s, rec(fmt.Sprintf("c%02d", i), 0))
	}
	sign := func(keep bool) ca.CRLSignFunc {
		return func(latest *ca.CRLRecord, number int64, entries []ca.RevokedEntry) (*ca.CRLRecord, audit.Event, error) {
			if keep && latest != nil && latest.EntriesHash == ca.CRLEntriesHash(entries) {
				return nil, audit.Event{}, nil
			}
			return &ca.CRLRecord{Shard: 0, Number: number, DER: []byte(fmt.Sprint("crl ", number, " ", len(entries))),
				ThisUpdate: t0, NextUpdate: t0.Add(time.Hour), EntriesHash: ca.CRLEntriesHash(entries)}, ev("crl.published", "crl/0"), nil
		}
	}
	if _, err := sh.LatestCRL(ctx, 0); !errors.Is(err, ca.ErrNotFound) {
		t.Fatalf("latest of none: %v", err)
	}
	c1, err := sh.SignCRL(ctx, 0, t0, sign(true))
	if err != nil || c1.Number != 1 {
		t.Fatalf("first CRL: %+v %v", c1, err)
	}
	kept, err := sh.SignCRL(ctx, 0, t0, sign(true))
	if err != nil || kept.Number != 1 || !bytes.Equal(kept.DER, c1.DER) {
		t.Fatalf("nothing new: %+v %v", kept, err)
	}
	if _, err := s.Revoke(ctx, "c01", 1, t0, ev("cert.revoked", "c01")); err != nil {
		t.Fatal(err)
	}
	// Concurrent signers: distinct, increasing numbers; the revocation is in every CRL after the first.
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := sh.SignCRL(ctx, 0, t0, sign(false)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	latest, err := sh.LatestCRL(ctx, 0)
	if err != nil || latest.Number != 7 || string(latest.DER) != "crl 7 1" {
		t.Fatalf("latest: %+v %v", latest, err)
	}
	if n, err := s.NextCRLNumber(ctx, 0); err != nil || n != 8 {
		t.Fatalf("the number sequence is shared: %d %v", n, err)
	}
	// A failing signer writes nothing.
	if _, err := sh.SignCRL(ctx, 0, t0, func(*ca.CRLRecord, int64, []ca.RevokedEntry) (*ca.CRLRecord, audit.Event, error) {
		return nil, audit.Event{}, errors.New("HSM away")
	}); err == nil {
		t.Fatal("signer failure not reported")
	}
	if l, _ := sh.LatestCRL(ctx, 0); l.Number != 7 {
		t.Fatalf("latest after a failure: %d", l.Number)
	}
	verify(t, s)
}

func testOCSPResponses(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	sh := asShared(t, s)
	v1, v2 := t0, t0.Add(time.Minute)
	r := func(serial string, version time.Time, this time.Time, body string) ca.OCSPRecord {
		return ca.OCSPRecord{Serial: serial, Status: ca.StatusIssued, CertVersion: version, ThisUpdate: this,
			NextUpdate: this.Add(time.Hour), DER: [2][]byte{[]byte(body), nil}, Responder: sha256.Sum256([]byte("r"))}
	}
	if err := sh.PutOCSPResponses(ctx, []ca.OCSPRecord{r("0a", v2, t0, "revoked"), r("0b", v1, t0, "good")}); err != nil {
		t.Fatal(err)
	}
	// An older version of the record never replaces a newer one; a newer thisUpdate of the same one does.
	if err := sh.PutOCSPResponses(ctx, []ca.OCSPRecord{r("0a", v1, t0.Add(time.Hour), "stale good"), r("0b", v1, t0.Add(time.Second), "good 2")}); err != nil {
		t.Fatal(err)
	}
	a, err := sh.OCSPResponse(ctx, "0a")
	if err != nil || string(a.DER[0]) != "revoked" || a.DER[1] != nil || !a.CertVersion.Equal(v2) {
		t.Fatalf("0a: %+v %v", a, err)
	}
	b, _ := sh.OCSPResponse(ctx, "0b")
	if string(b.DER[0]) != "good 2" {
		t.Fatalf("0b: %s", b.DER[0])
	}
	if l, err := sh.OCSPResponses(ctx, "0a", 10); err != nil || len(l) != 1 || l[0].Serial != "0b" {
		t.Fatalf("page after 0a: %+v %v", l, err)
	}
	if err := sh.DeleteOCSPResponse(ctx, "0a"); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.OCSPResponse(ctx, "0a"); !errors.Is(err, ca.ErrNotFound) {
		t.Fatalf("deleted: %v", err)
	}
}
