package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// TestGroupIntentsOneStatement: in a shared transaction the batch's intents are inserted by one multi-row
// INSERT (their own statements are not run), with their audit events, next to the batch's other changes; when
// one intent's serial already exists the statement fails and every change is retried alone, so the duplicate
// gets ErrDuplicateSerial and the others commit. On SQLite and PostgreSQL.
func TestGroupIntentsOneStatement(t *testing.T) {
	for name, open := range map[string]func(testing.TB) *core{
		"sqlite":   func(tb testing.TB) *core { return &OpenTestSQLite(tb).core },
		"postgres": func(tb testing.TB) *core { return &OpenTestPostgres(tb).core },
	} {
		t.Run(name, func(t *testing.T) {
			c := open(t)
			ctx := context.Background()
			now := time.Now().UTC().Truncate(time.Second)
			rec := func(serial string) ca.CertRecord {
				return ca.CertRecord{Serial: serial, Profile: ca.ProfileOrganisationAuth, Subject: "CN=" + serial, Subject2: serial,
					NotBefore: now, NotAfter: now.Add(time.Hour), TBSHash: []byte{1, 2, 3}, Shard: 1}
			}
			event := func(kind, serial string) audit.Event {
				return audit.Event{Time: now, Kind: kind, Actor: "test", Subject: serial}
			}
			if err := c.AddPending(ctx, rec("a0"), event("cert.intent", "a0")); err != nil {
				t.Fatal(err)
			}
			before, err := c.AuditSize(ctx)
			if err != nil {
				t.Fatal(err)
			}
			alone := 0
			intent := func(serial string) *groupOp {
				o := c.intentOp(ctx, rec(serial), event("cert.intent", serial))
				fn := o.fn
				o.fn = func(q querier) (bool, error) { alone++; return fn(q) }
				return o
			}
			issued := &groupOp{ev: event("cert.issued", "a0"), fn: func(q querier) (bool, error) {
				err := c.transition(ctx, q, "a0", ca.StatusPending, ca.StatusIssued, `, der = ?`, []byte("DER a0"))
				return err == nil, err
			}}
			// One batch: three intents and a record.
			batch := []*groupOp{intent("b1"), issued, intent("b2"), intent("b3")}
			c.runGroup(ctx, batch)
			for _, o := range batch {
				if o.err != nil {
					t.Fatalf("batch change: %v", o.err)
				}
			}
			if alone != 0 {
				t.Fatalf("%d intents were inserted by their own statement, want one statement for the batch", alone)
			}
			for _, s := range []string{"b1", "b2", "b3"} {
				if r, err := c.Certificate(ctx, s); err != nil || r.Status != ca.StatusPending || r.Subject != "CN="+s || r.Shard != 1 {
					t.Fatalf("%s: %+v, %v", s, r, err)
				}
			}
			// A batch with a serial that exists: the statement fails, each change alone.
			batch = []*groupOp{intent("c1"), intent("b2"), intent("c2")}
			c.runGroup(ctx, batch)
			if !errors.Is(batch[1].err, ca.ErrDuplicateSerial) || batch[0].err != nil || batch[2].err != nil {
				t.Fatalf("errors %v, %v, %v; want only the duplicate refused", batch[0].err, batch[1].err, batch[2].err)
			}
			if alone != 3 {
				t.Fatalf("%d changes retried alone, want 3", alone)
			}
			size, err := c.AuditSize(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := before + 6; size != want {
				t.Fatalf("audit size %d, want %d (one event per committed change)", size, want)
			}
			es, err := c.AuditEntries(ctx, before, 10)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Event.Kind+" "+e.Event.Subject)
			}
			if want := "[cert.intent b1 cert.issued a0 cert.intent b2 cert.intent b3 cert.intent c1 cert.intent c2]"; fmt.Sprint(got) != want {
				t.Fatalf("audit entries %v, want %s (the batch's order)", got, want)
			}
		})
	}
}
