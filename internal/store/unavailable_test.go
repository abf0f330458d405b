package store_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/store"
	"github.com/mohr-hix/mohr/internal/store/storetest"
	"github.com/mohr-hix/mohr/internal/testenv"
)

// TestUnavailableOnReadOnlyDatabase makes the database read-only (as a standby, or a primary fenced during a
// failover, is) and checks that a write fails with an error the API answers 503 to, and that the store
// works again once the database takes writes.
func TestUnavailableOnReadOnlyDatabase(t *testing.T) {
	ctx := context.Background()
	nodes, dsn := storetest.OpenNodes(t, 1)
	st := nodes[0]
	u, _ := url.Parse(dsn)
	db := strings.TrimPrefix(u.Path, "/")
	admin, err := pgx.Connect(ctx, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	readOnly := func(on bool) {
		v := "off"
		if on {
			v = "on"
		}
		if _, err := admin.Exec(ctx, "ALTER DATABASE "+db+" SET default_transaction_read_only = "+v); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", db); err != nil {
			t.Fatal(err)
		}
	}
	ev := audit.Event{Kind: "test", Actor: "test", Data: []byte(`{}`)}
	readOnly(true)
	var err2 error
	for i := 0; i < 3; i++ { // the first call may meet a connection the termination closed: unavailable too
		if err2 = st.AppendAudit(ctx, ev); err2 == nil {
			break
		}
		var ua interface{ Unavailable() bool }
		if !errors.Is(err2, store.ErrUnavailable) || !errors.As(err2, &ua) || !ua.Unavailable() {
			t.Fatalf("write to a read-only database: %v, want ErrUnavailable", err2)
		}
	}
	if err2 == nil {
		t.Fatal("write to a read-only database succeeded")
	}
	readOnly(false)
	for i := 0; i < 3; i++ {
		if err2 = st.AppendAudit(ctx, ev); err2 == nil {
			break
		}
	}
	if err2 != nil {
		t.Fatalf("write after the database became writable: %v", err2)
	}
}
