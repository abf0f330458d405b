package api

import (
	"crypto/sha256"
	"sync"
	"time"
)

// verifiedCache remembers, for a short time, that a client certificate chained to the intermediate and which
// identity it maps to, so the chain's signature is not re-verified on every request of a busy client. Revocation
// is still checked on every request. Entries live at most verifiedTTL and never past the certificate's NotAfter;
// the cache holds at most verifiedMax entries and is emptied when full.
type verifiedCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verifiedEntry
}

type verifiedEntry struct {
	id    Identity
	until time.Time
}

const (
	verifiedTTL = time.Minute
	verifiedMax = 10000
)

func (c *verifiedCache) get(key [sha256.Size]byte, now time.Time) (Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return Identity{}, false
	}
	if !now.Before(e.until) || now.Before(e.id.Cert.NotBefore) {
		delete(c.m, key)
		return Identity{}, false
	}
	return e.id, true
}

func (c *verifiedCache) put(key [sha256.Size]byte, id Identity, now time.Time) {
	until := now.Add(verifiedTTL)
	if id.Cert.NotAfter.Before(until) {
		until = id.Cert.NotAfter
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= verifiedMax {
		c.m = make(map[[sha256.Size]byte]verifiedEntry)
	}
	c.m[key] = verifiedEntry{id: id, until: until}
}
