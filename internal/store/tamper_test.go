package store

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

type testStore interface {
	Store
	execRaw(tb testing.TB, query string, args ...any)
}

// backends runs fn against a fresh store of each kind.
func backends(t *testing.T, fn func(t *testing.T, s testStore)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, OpenTestSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, OpenTestPostgres(t)) })
}

func testKey(t *testing.T, name string) (*audit.Checkpointer, string) {
	t.Helper()
	skey, vkey, err := audit.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.NewCheckpointer(name, s)
	if err != nil {
		t.Fatal(err)
	}
	return cp, vkey
}

func testRecord(serial string) ca.CertRecord {
	h := sha256.Sum256([]byte(serial))
	return ca.CertRecord{Serial: serial, Profile: "p", Subject: "CN=x", Subject2: "x", NotAfter: time.Now().Add(time.Hour), TBSHash: h[:]}
}

func testEvent(kind, subject string) audit.Event {
	return audit.Event{Time: time.Now(), Kind: kind, Actor: "system", Subject: subject, Data: json.RawMessage(`{"n":1}`)}
}

// fill appends 10 entries (seq 0-9) with checkpoints at sizes 5 and 10.
func fill(t *testing.T, s Store, cp *audit.Checkpointer) {
	t.Helper()
	ctx := context.Background()
	for i := range 10 {
		if err := s.AppendAudit(ctx, testEvent("test.event", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		if i == 4 || i == 9 {
			if err := s.Checkpoint(ctx, cp); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestTamper(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, s testStore)
		seq    int64
		reason string
	}{
		{"alter data", func(t *testing.T, s testStore) {
			s.execRaw(t, `UPDATE audit_log SET event = replace(event, '"system"', '"mallory"') WHERE seq = 3`)
		}, 3, "altered"},
		{"garbage event", func(t *testing.T, s testStore) {
			s.execRaw(t, `UPDATE audit_log SET event = 'not json' WHERE seq = 5`)
		}, 5, "does not decode"},
		{"garbage before", func(t *testing.T, s testStore) {
			s.execRaw(t, `UPDATE audit_log SET event = 'not json' WHERE seq = 5`)
			s.execRaw(t, `UPDATE audit_log SET hash = ? WHERE seq = 1`, make([]byte, 32))
		}, 1, "altered"},
		{"delete row", func(t *testing.T, s testStore) {
			s.execRaw(t, `DELETE FROM audit_log WHERE seq = 4`)
		}, 4, "missing"},
		{"swap rows", func(t *testing.T, s testStore) {
			s.execRaw(t, `UPDATE audit_log SET seq = -1 WHERE seq = 2`)
			s.execRaw(t, `UPDATE audit_log SET seq = 2 WHERE seq = 6`)
			s.execRaw(t, `UPDATE audit_log SET seq = 6 WHERE seq = -1`)
		}, 2, "previous-entry hash"},
		{"truncate tail", func(t *testing.T, s testStore) {
			s.execRaw(t, `DELETE FROM audit_log WHERE seq >= 8`)
			s.execRaw(t, `DELETE FROM audit_hashes WHERE idx >= ?`, tlog.StoredHashIndex(0, 8))
			s.execRaw(t, `UPDATE audit_head SET size = 8`)
		}, 8, "beyond the end"},
		{"tree hash", func(t *testing.T, s testStore) {
			s.execRaw(t, `UPDATE audit_hashes SET hash = ? WHERE idx = ?`, make([]byte, 32), tlog.StoredHashIndex(0, 7))
		}, 7, "stored Merkle"},
		{"forged checkpoint", func(t *testing.T, s testStore) {
			forger, _ := testKey(t, "hix")
			root, err := audit.TreeHash(context.Background(), s, 7)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := forger.Sign(tlog.Tree{N: 7, Hash: root})
			s.execRaw(t, `INSERT INTO audit_checkpoints (size, note, created_us) VALUES (?, ?, 0)`, 7, string(msg))
		}, 6, "checkpoint of size 7"},
		{"edited checkpoint", func(t *testing.T, s testStore) {
			s.execRaw(t, `UPDATE audit_checkpoints SET note = replace(note, 'hix
5
', 'hix
4
'), size = 4 WHERE size = 5`)
		}, 3, "checkpoint of size 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backends(t, func(t *testing.T, s testStore) {
				cp, vkey := testKey(t, "hix")
				fill(t, s, cp)
				if _, err := audit.Verify(context.Background(), s, vkey); err != nil {
					t.Fatalf("untouched log: %v", err)
				}
				tc.tamper(t, s)
				_, err := audit.Verify(context.Background(), s, vkey)
				var bad *audit.BadEntryError
				if !errors.As(err, &bad) {
					t.Fatalf("Verify: %v, want *audit.BadEntryError", err)
				}
				if bad.Seq != tc.seq || !strings.Contains(bad.Reason, tc.reason) {
					t.Fatalf("Verify: %v; want entry %d (%s)", bad, tc.seq, tc.reason)
				}
			})
		})
	}
}

// TestAuditWriteFailureRollsBack makes the audit INSERT itself fail in the database (its seq is taken). On
// SQLite the change fails and the certificate row written before it in the same transaction is gone. On
// PostgreSQL a grouped change commits with its event in the audit queue and a chain moves it into the log
// (groupcommit.go), so the failure is the chain's: the change is stored with its event queued, the log does
// not move, nothing appends past the queued event, grouped changes are refused (503) once it has waited
// longer than the limit, and after the log is repaired the event is chained, in order, before the next append.
func TestAuditWriteFailureRollsBack(t *testing.T) {
	backends(t, func(t *testing.T, s testStore) {
		ctx := context.Background()
		if err := s.AppendAudit(ctx, testEvent("ca.start", "")); err != nil {
			t.Fatal(err)
		}
		s.execRaw(t, `INSERT INTO audit_log (seq, event, prev, hash) VALUES (1, '{}', ?, ?)`, make([]byte, 32), make([]byte, 32))
		count := func(q string) int {
			var n int
			if err := s.(interface{ reader() querier }).reader().queryRow(ctx, q).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		queued := s.(interface{ queued() bool }).queued()
		err := s.AddPending(ctx, testRecord("77"), testEvent("cert.intent", "77"))
		if !queued {
			if err == nil {
				t.Fatal("AddPending succeeded although its audit entry could not be written")
			}
			if _, err := s.Certificate(ctx, "77"); !errors.Is(err, ca.ErrNotFound) {
				t.Fatalf("Certificate after the failed write: %v", err)
			}
		} else {
			if err != nil {
				t.Fatal(err)
			}
			if n := count(`SELECT COUNT(*) FROM audit_queue`); n != 1 {
				t.Fatalf("%d queued events, want the intent's", n)
			}
			// Nothing appends past a queued event it cannot chain, and this store does not read the log as if
			// its change were there...
			if err := s.AppendAudit(ctx, testEvent("ca.other", "")); err == nil {
				t.Fatal("an append succeeded while a queued event could not be chained")
			}
			if n, err := s.AuditSize(ctx); err == nil {
				t.Fatalf("AuditSize %d while this store's own event could not be chained", n)
			}
		}
		if n := count(`SELECT size FROM audit_head`); n != 1 {
			t.Fatalf("audit size %d, want 1", n)
		}
		if n := count(`SELECT COUNT(*) FROM audit_hashes`); n != 1 {
			t.Fatalf("%d stored tree hashes, want 1", n)
		}
		if !queued {
			return
		}
		// ...grouped changes are refused once the oldest queued event has waited too long...
		s.(interface{ setStale(time.Duration) }).setStale(500 * time.Millisecond)
		refused := false
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			err := s.AddPending(ctx, testRecord("78"), testEvent("cert.intent", "78"))
			if err != nil {
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("AddPending with the chain stuck: %v, want ErrUnavailable", err)
				}
				refused = true
				break
			}
			s.execRaw(t, `DELETE FROM certificates WHERE serial = '78'`) // accepted before the limit: try again
			s.execRaw(t, `DELETE FROM audit_queue WHERE event LIKE '%"78"%'`)
		}
		if !refused {
			t.Fatal("grouped changes still accepted while the queue was not chained")
		}
		// ...and once the bogus entry is gone, the intent is chained first.
		s.execRaw(t, `DELETE FROM audit_log WHERE seq = 1`)
		if err := s.AppendAudit(ctx, testEvent("ca.other", "")); err != nil {
			t.Fatal(err)
		}
		es, err := s.AuditEntries(ctx, 0, 10)
		if err != nil || len(es) != 3 || es[1].Event.Kind != "cert.intent" || es[2].Event.Kind != "ca.other" {
			t.Fatalf("log after the repair: %v %v", es, err)
		}
		if n := count(`SELECT COUNT(*) FROM audit_queue`); n != 0 {
			t.Fatalf("%d events still queued", n)
		}
	})
}

func (c *core) setStale(d time.Duration) { c.staleAfter = d }

func (c *core) queued() bool { return c.auditQueue }

func (c *core) reader() querier { return c.b.reader() }

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, testEvent("ca.start", "")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Reopening applies nothing twice and keeps the data.
	s, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s.AuditSize(ctx); n != 1 {
		t.Fatalf("audit size after reopen: %d", n)
	}
	s.execRaw(t, `INSERT INTO schema_migrations (version, name, applied_us) VALUES (99, 'future', 0)`)
	s.Close()
	if _, err := OpenSQLite(ctx, path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("opened a database from the future: %v", err)
	}
	for _, bad := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if _, err := OpenSQLite(ctx, bad); err == nil {
			t.Fatalf("OpenSQLite(%q) succeeded", bad)
		}
	}

	pg := OpenTestPostgres(t)
	pg.execRaw(t, `INSERT INTO schema_migrations (version, name, applied_us) VALUES (99, 'future', 0)`)
	dsn := pg.b.(*pgBackend).pool.Config().ConnString()
	if _, err := OpenPostgres(ctx, dsn); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("opened a PostgreSQL database from the future: %v", err)
	}
	if _, err := OpenPostgres(ctx, "postgres://u:s3cret@127.0.0.1:1/x?sslmode=disable&connect_timeout=1"); err == nil ||
		strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("OpenPostgres error leaks the password or succeeded: %v", err)
	}
	if _, err := OpenPostgres(ctx, "postgres://u:s3cret@[::1"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("OpenPostgres parse error leaks the password or succeeded: %v", err)
	}
}
