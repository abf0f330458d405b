package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/tokens"
	"github.com/mohr-hix/mohr/tokens/sqlstore"
	"github.com/mohr-hix/mohr/tokens/storetest"
)

func openSQLite(t *testing.T) *sql.DB {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "tokens.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tokens.Store {
		s, err := sqlstore.New(context.Background(), openSQLite(t), sqlstore.Options{Dialect: "sqlite"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// freshPostgres creates a database of its own on the throwaway cluster and drops it when t ends.
func freshPostgres(t *testing.T) *sql.DB {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var b [6]byte
	rand.Read(b[:])
	name := "tokens_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		admin.Exec(fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
	})
	return db
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tokens.Store {
		s, err := sqlstore.New(context.Background(), freshPostgres(t), sqlstore.Options{Dialect: "postgres"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestSchemaIdempotentAndOutbox(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	for i := 0; i < 2; i++ {
		if _, err := sqlstore.New(ctx, db, sqlstore.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := sqlstore.New(ctx, db, sqlstore.Options{})
	svc := &tokens.Service{Store: s}
	if err := svc.ImportFacilities(ctx, nil, "cli:test"); err != nil {
		t.Fatal(err)
	}
	evs, err := s.AuditOutbox(ctx)
	if err != nil || len(evs) != 1 || evs[0].Kind != "registry.facilities.imported" {
		t.Fatalf("outbox %+v %v", evs, err)
	}
}
