package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

func TestWithClock(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "c.db"), WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AddPending(ctx, testRecord("01"), audit.Event{Kind: "cert.intent", Actor: "system"}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Certificate(ctx, "01")
	if err != nil {
		t.Fatal(err)
	}
	if !r.CreatedAt.Equal(now) || !r.UpdatedAt.Equal(now) {
		t.Fatalf("timestamps %v, %v; want %v", r.CreatedAt, r.UpdatedAt, now)
	}
	if _, err := s.Revoke(ctx, "01", 1, time.Time{}, testEvent("x", "01")); err == nil {
		t.Fatal("revoked a pending certificate")
	}
	es, err := s.AuditEntries(ctx, 0, 1)
	if err != nil || len(es) != 1 || !es[0].Event.Time.Equal(now) {
		t.Fatalf("event time: %+v, %v", es, err)
	}
}
