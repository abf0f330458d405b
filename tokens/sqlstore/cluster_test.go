package sqlstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/store"
	"github.com/mohr-hix/mohr/internal/store/storetest"
	"github.com/mohr-hix/mohr/tokens/sqlstore"
)

// TestOutboxDrainedOnceByTwoNodes fills the token audit outbox and lets two nodes (each with its own pools on
// one PostgreSQL database) drain it at the same time, repeatedly: every event reaches the audit log exactly
// once. Then, with the audit log wired in (sqlstore.Options.AppendAudit), events skip the outbox altogether.
func TestOutboxDrainedOnceByTwoNodes(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.FreshPostgres(t)
	type node struct {
		st *store.Postgres
		ts *sqlstore.Store
	}
	var nodes [2]node
	for i := range nodes {
		st, err := store.OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		ts, err := sqlstore.New(ctx, db, sqlstore.Options{Dialect: "postgres"})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = node{st, ts}
	}
	const events = 250
	for i := 0; i < events; i++ {
		ev := audit.Event{Time: time.Now().UTC(), Kind: "token.test", Actor: "test", Subject: fmt.Sprint(i), Data: []byte(`{}`)}
		if err := nodes[i%2].ts.AppendAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for round := 0; round < 3; round++ {
		for _, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := n.ts.DrainAuditOutbox(ctx, n.st.AppendAuditTx); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	left, err := nodes[0].ts.AuditOutbox(ctx)
	if err != nil || len(left) != 0 {
		t.Fatalf("outbox after draining: %d events, %v", len(left), err)
	}
	count := func() map[string]int {
		seen := map[string]int{}
		es, err := nodes[1].st.AuditEntries(ctx, 0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Event.Kind != "token.test" {
				continue
			}
			var d struct {
				OutboxID string `json:"outbox_id"`
			}
			json.Unmarshal(e.Event.Data, &d)
			seen[e.Event.Subject+"/"+d.OutboxID]++
		}
		return seen
	}
	seen := count()
	if len(seen) != events {
		t.Errorf("%d distinct events in the audit log, want %d", len(seen), events)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("event %s appended %d times", k, n)
		}
	}

	// Wired to the audit log, an event is in the log when the change commits; nothing goes to the outbox.
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	direct, err := sqlstore.New(ctx, db, sqlstore.Options{Dialect: "postgres", AppendAudit: nodes[0].st.AppendAuditTx})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := nodes[0].st.AuditSize(ctx)
	if err := direct.AppendAudit(ctx, audit.Event{Time: time.Now().UTC(), Kind: "token.direct", Actor: "test", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	after, _ := nodes[1].st.AuditSize(ctx)
	if after != before+1 {
		t.Errorf("audit size %d -> %d, want one more", before, after)
	}
	if left, _ := nodes[0].ts.AuditOutbox(ctx); len(left) != 0 {
		t.Errorf("outbox holds %d events", len(left))
	}
	_, vkey, _ := audit.GenerateKey("test")
	if _, err := audit.Verify(ctx, nodes[1].st, vkey); err != nil {
		t.Fatal(err)
	}
}
