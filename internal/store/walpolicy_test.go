package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

// TestSQLiteCheckpointPolicyKeepsDurability: the writer runs in WAL mode with synchronous=FULL (every commit
// is fsynced in the WAL before SavePrescription returns) and checkpoints every walCheckpointPages pages; a
// prescription whose save returned is in the files on disk before any checkpoint has copied it into the
// database: a copy of the database and WAL files taken while the store is still open (as a crash leaves
// them) opens with every saved row and their audit events.
func TestSQLiteCheckpointPolicyKeepsDurability(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "mohr.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := s.b.(*sqliteBackend).w
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "2", "wal_autocheckpoint": "16000"} {
		var got string
		if err := w.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil || got != want {
			t.Fatalf("PRAGMA %s = %q (%v), want %q", pragma, got, err, want)
		}
	}
	now := time.Now()
	sig := make([]byte, 9500)
	for i := range 40 {
		rec := PrescriptionRecord{ID: string(rune('A'+i%26)) + string(rune('a'+i/26)), ReceivedAt: now, SigningTime: now,
			Indication: "TOTAL_PASSED", Signature: sig, SealedReport: []byte{1}}
		if err := s.SavePrescription(ctx, rec, audit.Event{Time: now, Kind: "rx.ingested", Actor: "test", Subject: rec.ID}); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing was checkpointed yet: the rows are only in the WAL.
	var busy, logPages, done int
	if err := w.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logPages, &done); err != nil {
		t.Fatal(err)
	}
	if logPages < 100 {
		t.Fatalf("the WAL holds %d pages after 40 rows of 9.5 KB; a checkpoint already ran?", logPages)
	}
	// That explicit checkpoint copied them; save more, which again stay in the WAL only, and copy the files.
	for i := range 10 {
		rec := PrescriptionRecord{ID: "late" + string(rune('a'+i)), ReceivedAt: now, SigningTime: now, Indication: "TOTAL_PASSED",
			Signature: sig, SealedReport: []byte{2}}
		if err := s.SavePrescription(ctx, rec, audit.Event{Time: now, Kind: "rx.ingested", Actor: "test", Subject: rec.ID}); err != nil {
			t.Fatal(err)
		}
	}
	crash := filepath.Join(t.TempDir(), "mohr.db")
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crash+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := OpenSQLite(ctx, crash)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 10 {
		if got, err := c.Prescription(ctx, "late"+string(rune('a'+i))); err != nil || len(got.Signature) != len(sig) {
			t.Fatalf("row %d saved before the copy is missing from it: %v", i, err)
		}
	}
	if size, err := c.AuditSize(ctx); err != nil || size < 50 {
		t.Fatalf("audit log of the copy: %d entries, %v", size, err)
	}
}
