package adapter

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// StandingChecker says whether a facility is in good standing (DOMAIN.md: a valid licence, a known SIAM ID, a
// valid system certificate). ok is false with a nil error for a facility that is not; err is for "cannot tell"
// (the Gateway then refuses: fail closed). tokens.Standing implements it over the registry.
type StandingChecker interface {
	Standing(ctx context.Context, siamID string) (ok bool, err error)
}

// StandingFunc adapts a function to StandingChecker.
type StandingFunc func(ctx context.Context, siamID string) (bool, error)

// Standing calls f.
func (f StandingFunc) Standing(ctx context.Context, siamID string) (bool, error) {
	return f(ctx, siamID)
}

// StandingCache remembers a StandingChecker's answers, good and bad, for TTL: the propagation time, the longest
// a lapse of standing takes to shut a facility out (and a restored one to get back in). Errors are not cached.
type StandingCache struct {
	Checker StandingChecker
	TTL     time.Duration // zero means 1 minute
	Clock   func() time.Time

	mu      sync.Mutex
	entries map[string]standingEntry
	group   singleflight.Group
}

type standingEntry struct {
	ok      bool
	expires time.Time
}

func (c *StandingCache) now() time.Time {
	if c.Clock != nil {
		return c.Clock()
	}
	return time.Now()
}

// Standing implements StandingChecker.
func (c *StandingCache) Standing(ctx context.Context, siamID string) (bool, error) {
	now := c.now()
	c.mu.Lock()
	e, hit := c.entries[siamID]
	c.mu.Unlock()
	if hit && now.Before(e.expires) {
		return e.ok, nil
	}
	v, err, _ := c.group.Do(siamID, func() (any, error) {
		ok, err := c.Checker.Standing(ctx, siamID)
		if err != nil {
			return false, err
		}
		ttl := c.TTL
		if ttl <= 0 {
			ttl = time.Minute
		}
		c.mu.Lock()
		if c.entries == nil {
			c.entries = map[string]standingEntry{}
		}
		c.entries[siamID] = standingEntry{ok: ok, expires: c.now().Add(ttl)}
		c.mu.Unlock()
		return ok, nil
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}
