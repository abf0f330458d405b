package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mohr-hix/mohr/internal/testenv"
)

// Test helpers, exported to the external test package (conformance_test.go) too.

// OpenTestSQLite opens a new SQLite store in a temporary directory, closed when tb ends.
func OpenTestSQLite(tb testing.TB) *SQLite {
	tb.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(tb.TempDir(), "mohr.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// OpenTestPostgres creates a fresh database mohr_test_<random> on the cluster at testenv.PostgresDSN, opens a
// store on it, and closes the store and drops the database when tb ends.
func OpenTestPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	s, err := OpenPostgres(context.Background(), newTestPostgresDB(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// newTestPostgresDB creates a fresh database mohr_test_<random> on the test cluster, dropped when tb ends, and
// returns its DSN (several stores on it are several nodes).
func newTestPostgresDB(tb testing.TB) string {
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
	return withDatabase(tb, dsn, name)
}

// withDatabase returns dsn with its database replaced by name.
func withDatabase(tb testing.TB, dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			tb.Fatalf("MOHR_TEST_PG_DSN is not a URL")
		}
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name
}

// execRaw runs SQL directly, as an attacker with database access would.
func (c *core) execRaw(tb testing.TB, query string, args ...any) {
	tb.Helper()
	err := c.b.inTx(context.Background(), func(q querier) error {
		_, err := q.exec(context.Background(), query, args...)
		return err
	})
	if err != nil {
		tb.Fatalf("raw SQL: %v", err)
	}
}
