package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/store"
)

// testGroupCommit runs many concurrent issuances, so their intents and records share transactions, with failing
// changes among them: a duplicate serial, a record for a serial that is not pending, an event that cannot be
// encoded. Each failing change gets its own error and leaves nothing behind; every other change commits, with
// its audit event, and the audit log verifies with each intent before its record.
func testGroupCommit(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const workers, each = 32, 6
	mustIssue(t, s, rec("issued0", 0))
	before := auditSize(t, s)
	var wg sync.WaitGroup
	var dupOK, dupRefused, conflicts, bad sync.Map
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				serial := fmt.Sprintf("g%02x%02x", w, i)
				if err := s.AddPending(ctx, rec(serial, w%4), ev("cert.intent", serial)); err != nil {
					t.Errorf("AddPending(%s): %v", serial, err)
					return
				}
				if err := s.MarkIssued(ctx, serial, []byte("DER "+serial), ev("cert.issued", serial)); err != nil {
					t.Errorf("MarkIssued(%s): %v", serial, err)
					return
				}
				switch i {
				case 1: // two workers race for one serial: one wins
					err := s.AddPending(ctx, rec(fmt.Sprintf("dup%02x", w/2), 0), ev("cert.intent", "dup"))
					switch {
					case err == nil:
						dupOK.Store(w, true)
					case errors.Is(err, ca.ErrDuplicateSerial):
						dupRefused.Store(w, true)
					default:
						t.Errorf("duplicate AddPending: %v", err)
					}
				case 2: // already issued: a conflict
					if err := s.MarkIssued(ctx, "issued0", []byte("again"), ev("cert.issued", "issued0")); errors.Is(err, ca.ErrConflict) {
						conflicts.Store(w, true)
					} else {
						t.Errorf("MarkIssued of an issued serial: %v, want ErrConflict", err)
					}
				case 3: // an event that cannot be stored: the change is rolled back
					if err := s.AddPending(ctx, rec(fmt.Sprintf("bad%02x", w), 0), badEvent); err != nil {
						bad.Store(w, true)
					} else {
						t.Errorf("AddPending with a bad event succeeded")
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	count := func(m *sync.Map) (n int) {
		m.Range(func(any, any) bool { n++; return true })
		return n
	}
	if count(&dupOK) != workers/2 || count(&dupRefused) != workers/2 {
		t.Fatalf("duplicate serials: %d accepted, %d refused; want %d each", count(&dupOK), count(&dupRefused), workers/2)
	}
	if count(&conflicts) != workers || count(&bad) != workers {
		t.Fatalf("conflicts %d, bad events %d; want %d each", count(&conflicts), count(&bad), workers)
	}
	for w := range workers {
		if _, err := s.Certificate(ctx, fmt.Sprintf("bad%02x", w)); !errors.Is(err, ca.ErrNotFound) {
			t.Fatalf("a change whose event failed was kept: %v", err)
		}
		for i := range each {
			if r := get(t, s, fmt.Sprintf("g%02x%02x", w, i)); r.Status != ca.StatusIssued {
				t.Fatalf("%s is %s", r.Serial, r.Status)
			}
		}
	}
	if r := get(t, s, "issued0"); string(r.DER) != "DER issued0" {
		t.Fatal("a conflicting MarkIssued changed the record")
	}
	want := before + int64(workers*each*2+workers/2)
	res := verify(t, s)
	if res.Size != want {
		t.Fatalf("audit size %d, want %d", res.Size, want)
	}
	entries, err := s.AuditEntries(ctx, before, int(want-before))
	if err != nil {
		t.Fatal(err)
	}
	intent := map[string]int64{}
	for _, e := range entries {
		switch e.Event.Kind {
		case "cert.intent":
			intent[e.Event.Subject] = e.Seq
		case "cert.issued":
			if s, ok := intent[e.Event.Subject]; !ok || s > e.Seq {
				t.Fatalf("issuance of %s at %d before its intent", e.Event.Subject, e.Seq)
			}
		}
	}
}
