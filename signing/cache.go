package signing

import "sync"

// lru-less bounded cache: when full it is emptied. Chain and OCSP checks are cheap to redo, and a batch of
// prescriptions shares few distinct certificates and responses, so a reset now and then costs little and keeps
// memory bounded without bookkeeping on the hot path.
type boundedCache[K comparable, V any] struct {
	mu  sync.RWMutex
	m   map[K]V
	max int
}

func newCache[K comparable, V any](max int) *boundedCache[K, V] {
	return &boundedCache[K, V]{m: make(map[K]V), max: max}
}

func (c *boundedCache[K, V]) get(k K) (V, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

func (c *boundedCache[K, V]) put(k K, v V) {
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = v
	c.mu.Unlock()
}

// certCache maps a certificate's DER (as a string key: Go looks up map[string] with a []byte conversion
// without allocating) to its parsed entry.
type certCache struct {
	mu  sync.RWMutex
	m   map[string]*certEntry
	max int
}

func (c *certCache) get(der []byte) (*certEntry, bool) {
	c.mu.RLock()
	e, ok := c.m[string(der)]
	c.mu.RUnlock()
	return e, ok
}

func (c *certCache) put(der []byte, e *certEntry) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[string]*certEntry)
	}
	c.m[string(der)] = e
	c.mu.Unlock()
}
