package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// TestAuditQueueNodes runs the issuance path of three stores on one PostgreSQL database (three nodes) at once,
// with appends of other kinds in between: the chainers empty the queue by themselves, every change's event is
// in the log exactly once, a serial's intent before its record, and the log verifies.
func TestAuditQueueNodes(t *testing.T) {
	ctx := context.Background()
	dsn := newTestPostgresDB(t)
	var nodes []*Postgres
	for range 3 {
		s, err := OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		nodes = append(nodes, s)
	}
	const workers, each = 12, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*2)
	for w := range workers {
		s := nodes[w%3]
		wg.Go(func() {
			for i := range each {
				serial := fmt.Sprintf("%x%04x", w+1, i)
				if err := s.AddPending(ctx, testRecord(serial), testEvent("cert.intent", serial)); err != nil {
					errs <- err
					return
				}
				if i%5 == 4 { // an append of another kind (as a revocation's): it chains what is queued first
					if err := s.AppendAudit(ctx, testEvent("test.other", serial)); err != nil {
						errs <- err
						return
					}
				}
				if err := s.MarkIssued(ctx, serial, []byte{0x30, 0}, testEvent("cert.issued", serial)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The nodes' chainers empty the queue by themselves.
	var queued int
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if err := nodes[0].b.reader().queryRow(ctx, `SELECT COUNT(*) FROM audit_queue`).Scan(&queued); err != nil {
			t.Fatal(err)
		}
		if queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still queued after a minute", queued)
		}
	}
	es, err := nodes[1].AuditEntries(ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	want := workers*each*2 + workers*(each/5)
	if len(es) != want {
		t.Fatalf("%d entries in the log, want %d", len(es), want)
	}
	seen := map[string]int{} // serial -> events seen: 1 after the intent, 2 after the record
	for _, e := range es {
		switch e.Event.Kind {
		case "cert.intent":
			if seen[e.Event.Subject] != 0 {
				t.Fatalf("entry %d: intent of %s twice or after its record", e.Seq, e.Event.Subject)
			}
			seen[e.Event.Subject] = 1
		case "cert.issued":
			if seen[e.Event.Subject] != 1 {
				t.Fatalf("entry %d: record of %s before its intent or twice", e.Seq, e.Event.Subject)
			}
			seen[e.Event.Subject] = 2
		}
	}
	recs, err := nodes[2].Certificates(ctx, ca.CertFilter{Limit: 10000})
	if err != nil || len(recs) != workers*each {
		t.Fatalf("%d certificates (%v)", len(recs), err)
	}
	cp, vkey := testKey(t, "hix")
	if err := nodes[0].Checkpoint(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(ctx, nodes[2], vkey); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

// TestAuditQueueLeftOver: an event a process committed into the queue and did not chain (it stopped) is chained
// by the next store opened on the database, and by the next append of a running one, before that append.
func TestAuditQueueLeftOver(t *testing.T) {
	ctx := context.Background()
	dsn := newTestPostgresDB(t)
	s, err := OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	enqueue := func(kind, subject string) {
		t.Helper()
		if err := s.b.inTx(ctx, func(q querier) error {
			_, err := s.enqueueAudits(ctx, q, []audit.Event{testEvent(kind, subject)})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	kinds := func() []string {
		t.Helper()
		es, err := s.AuditEntries(ctx, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var k []string
		for _, e := range es {
			k = append(k, e.Event.Kind)
		}
		return k
	}
	enqueue("test.left", "1")
	if k := kinds(); len(k) != 0 {
		t.Fatalf("log before anything chained: %v", k)
	}
	s2, err := OpenPostgres(ctx, dsn) // a node starting, or `mohr audit verify`
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if k := kinds(); fmt.Sprint(k) != "[test.left]" {
		t.Fatalf("log after a store was opened: %v", k)
	}
	enqueue("test.left", "2")
	if err := s.AppendAudit(ctx, testEvent("test.after", "3")); err != nil {
		t.Fatal(err)
	}
	if k := kinds(); fmt.Sprint(k) != "[test.left test.left test.after]" {
		t.Fatalf("log after an append: %v", k)
	}
}
