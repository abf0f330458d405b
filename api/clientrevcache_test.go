package api

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"
)

// dbRevocation stands for the database's answer (cmd/mohr's TestClientRevocationFollowsFeed runs the cache over
// the real store on SQLite and PostgreSQL); it counts the reads and can hold one read until released.
type dbRevocation struct {
	mu      sync.Mutex
	revoked map[string]bool
	err     error
	reads   int
	hold    chan struct{} // when set, the next read signals entered and waits for hold to close
	entered chan struct{}
}

func (d *dbRevocation) Revoked(_ context.Context, c *x509.Certificate) (bool, error) {
	d.mu.Lock()
	d.reads++
	hold, entered := d.hold, d.entered
	d.hold = nil
	revoked, err := d.revoked[serialKey(c)], d.err // the database's answer at the time of the read
	d.mu.Unlock()
	if hold != nil { // the answer is on its way back while the world changes
		close(entered)
		<-hold
	}
	return revoked, err
}

func (d *dbRevocation) set(serial string, revoked bool, err error) {
	d.mu.Lock()
	d.revoked[serial], d.err = revoked, err
	d.mu.Unlock()
}

func (d *dbRevocation) count() int { d.mu.Lock(); defer d.mu.Unlock(); return d.reads }

// TestClientRevocationCache: with the feed in sync, a client's status is read from the database once and then
// served from memory; a change the feed reads (Invalidate) is seen at the next request; with the feed stale
// beyond the bound (injected clock) every request reads the database again, so a revocation the feed never
// delivered still refuses, and a database error refuses (no stale admit); a read that overlapped an
// invalidation is not remembered; refusals and errors are never remembered.
func TestClientRevocationCache(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 3, 22, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	db := &dbRevocation{revoked: map[string]bool{}}
	const bound = 10 * time.Second
	c := NewClientRevocationCache(db, bound, clock)
	cert := &x509.Certificate{SerialNumber: big.NewInt(0x1234abcd)}
	serial := "1234abcd"
	ask := func(want bool, wantReads int, what string) {
		t.Helper()
		revoked, err := c.Revoked(ctx, cert)
		if err != nil || revoked != want || db.count() != wantReads {
			t.Fatalf("%s: revoked %v err %v after %d database reads; want %v after %d", what, revoked, err, db.count(), want, wantReads)
		}
	}

	// Before the feed's first complete poll: the database every time.
	ask(false, 1, "feed never synced")
	ask(false, 2, "feed never synced: the database again")
	c.Synced(now)
	ask(false, 2, "feed in sync: from memory")
	now = now.Add(5 * time.Second)
	ask(false, 2, "from memory")

	// Revoked on another node; the feed reads the change: refused at the next request.
	db.set(serial, true, nil)
	c.Synced(now)
	c.Invalidate(serial)
	ask(true, 3, "after the feed's invalidation")
	ask(true, 4, "a refusal is not remembered")

	// Released; then revoked again while the feed is stuck: entries serve until the bound, then the database.
	db.set(serial, false, nil)
	c.Invalidate(serial)
	ask(false, 5, "released")
	ask(false, 5, "released, from memory")
	db.set(serial, true, nil) // the feed never delivers this one
	now = now.Add(bound)
	ask(false, 5, "within the bound the entry serves") // the documented window
	now = now.Add(time.Second)
	if c.Fresh() {
		t.Fatal("fresh beyond the bound")
	}
	ask(true, 6, "stale feed: the database refuses")
	db.set(serial, false, errors.New("database unreachable"))
	if _, err := c.Revoked(ctx, cert); err == nil {
		t.Fatal("stale feed and the database unreachable: admitted")
	}
	// The feed catches up: it reads the revocation (refused), then a release (admitted, remembered).
	db.set(serial, true, nil)
	c.Invalidate(serial)
	c.Synced(now.Add(-time.Second)) // an older poll's time never moves the sync time back...
	c.Synced(now)
	ask(true, 8, "feed caught up with the revocation")
	db.set(serial, false, nil)
	c.Invalidate(serial)
	ask(false, 9, "released again")
	c.Synced(now.Add(-time.Minute)) // ...and cannot make a fresh cache stale
	ask(false, 9, "from memory")

	// A database read that overlapped an invalidation is not remembered.
	c.Invalidate(serial)
	db.mu.Lock()
	db.hold, db.entered = make(chan struct{}), make(chan struct{})
	hold, entered := db.hold, db.entered
	db.mu.Unlock()
	done := make(chan bool)
	go func() { r, _ := c.Revoked(ctx, cert); done <- r }()
	<-entered
	db.set(serial, true, nil)
	c.Invalidate(serial) // the feed reads the revocation while the read is in flight
	close(hold)
	if <-done {
		t.Fatal("the overlapping read saw the revocation; it should have read before it")
	}
	ask(true, 11, "the overlapping read's answer was not kept")

	// A nil cache (a node without one) ignores the feed's calls.
	var none *ClientRevocationCache
	none.Invalidate(serial)
	none.Synced(now)
}
