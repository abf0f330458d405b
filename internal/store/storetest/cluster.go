package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

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
