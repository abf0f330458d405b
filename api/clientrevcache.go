package api

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"time"
)

// ClientRevocationCache is a RevocationChecker that remembers what Source (the database: the certificate's
// record) answered for each client certificate, so that a busy client's requests do not each read the
// database. The database stays the one place of the state every node shares; the cache is kept current by the
// node's change feed (the audit log, the one ordered record of every revocation, hold and release, on every
// node): the feed calls Invalidate for the serial of each such change it reads, and Synced with the time it
// started a poll after which it had read the whole log.
//
// Fail closed: an entry is used only while the feed has caught up within Bound of now (Now, injected). A change
// committed at t (on any node) is therefore reflected from the first poll that started after t; past t+Bound
// either that poll has completed (the entry is gone) or the feed is stale and every request reads Source again,
// whose error refuses the request (authenticate answers 503). A read of Source that overlapped a change the feed
// applied is not remembered (an invalidation counter), so a stale answer never outlives its invalidation.
// Only "not revoked" answers are remembered: refusals (revoked, held, unknown serials) and errors are read
// again at every request, so an issuance needs no invalidation.
type ClientRevocationCache struct {
	source RevocationChecker
	bound  time.Duration
	now    func() time.Time

	mu     sync.Mutex
	m      map[string]bool // serial (ca.SerialHex form) -> revoked, as Source answered
	gen    uint64          // invalidations so far
	synced time.Time       // start of the feed's last poll that read the whole log; zero: never
}

// clientRevocationMax bounds the cache (one entry per client certificate; emptied when full).
const clientRevocationMax = 100000

// NewClientRevocationCache returns a cache over source whose entries are used while the feed has synced
// within bound of now().
func NewClientRevocationCache(source RevocationChecker, bound time.Duration, now func() time.Time) *ClientRevocationCache {
	if now == nil {
		now = time.Now
	}
	return &ClientRevocationCache{source: source, bound: bound, now: now, m: map[string]bool{}}
}

// serialKey is the serial as the audit events name it (ca.SerialHex).
func serialKey(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// fresh reports whether the feed synced within the bound (c.mu held).
func (c *ClientRevocationCache) fresh() bool {
	return !c.synced.IsZero() && c.now().Sub(c.synced) <= c.bound
}

// Fresh reports whether entries are being used: the feed synced within the bound.
func (c *ClientRevocationCache) Fresh() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fresh()
}

// Revoked implements RevocationChecker.
func (c *ClientRevocationCache) Revoked(ctx context.Context, cert *x509.Certificate) (bool, error) {
	key := serialKey(cert)
	c.mu.Lock()
	if c.fresh() {
		if revoked, ok := c.m[key]; ok {
			c.mu.Unlock()
			return revoked, nil
		}
	}
	gen := c.gen
	c.mu.Unlock()
	revoked, err := c.source.Revoked(ctx, cert)
	if err != nil {
		return false, err
	}
	if !revoked { // unknown serials read as revoked: never remembered, so an issuance needs no invalidation
		c.mu.Lock()
		if c.gen == gen {
			if len(c.m) >= clientRevocationMax {
				c.m = map[string]bool{}
			}
			c.m[key] = false
		}
		c.mu.Unlock()
	}
	return revoked, nil
}

// Invalidate forgets serial (ca.SerialHex form): the feed read a revocation, hold or release of it. A nil
// cache ignores it (as Synced does).
func (c *ClientRevocationCache) Invalidate(serial string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.m, serial)
	c.gen++
	c.mu.Unlock()
}

// Synced records that a poll of the feed that started at t (read before the log's size) has read and applied
// the whole log.
func (c *ClientRevocationCache) Synced(t time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if t.After(c.synced) {
		c.synced = t
	}
	c.mu.Unlock()
}
