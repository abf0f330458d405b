package signing

// The cache of fetched revocation data. A batch of prescriptions signed by one physician needs the same OCSP
// answer for every document, and a relying party may use an answer until its nextUpdate (RFC 6960 §2.4,
// RFC 5019 §6.1; RFC 5280 §5.1.2.5 for CRLs), so the verifier asks once per certificate (issuer and serial) and
// once per CRL distribution point, and concurrent documents share a lookup under way.

import (
	"context"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// fetchTimeout bounds a shared lookup: it runs detached from the first caller's context so that one caller
// giving up does not fail the others waiting on it.
const fetchTimeout = 30 * time.Second

type fetchedEntry struct {
	der                    []byte
	thisUpdate, nextUpdate time.Time
	// expires is nextUpdate, or earlier when the cache has a TTL.
	expires time.Time
}

// fetchCache holds fetched OCSP responses by issuer and serial and fetched CRLs by URL, each until its
// nextUpdate by the injected clock, at most max entries of each kind.
type fetchCache struct {
	now  func() time.Time
	skew time.Duration
	max  int
	ocsp bool          // cache OCSP answers (CRLs are always cached)
	ttl  time.Duration // when above zero, how long after its fetch an answer is kept at most

	mu    sync.Mutex
	ocsps map[string]fetchedEntry
	crls  map[string]fetchedEntry
	sf    singleflight.Group
}

func newFetchCache(now func() time.Time, skew, ttl time.Duration, max int, ocsp bool) *fetchCache {
	return &fetchCache{now: now, skew: skew, ttl: ttl, max: max, ocsp: ocsp, ocsps: map[string]fetchedEntry{}, crls: map[string]fetchedEntry{}}
}

// ocspKey names a certificate: its issuer (by the issuer certificate's fingerprint) and serial number. The
// key is remembered on the certificate's entry, which a batch of one signer shares.
func ocspFetchKey(issuer *certEntry, cert *certEntry) string {
	if m := cert.ocspKey.Load(); m != nil && m.issuer == issuer.fp {
		return m.key
	}
	k := "o" + hex.EncodeToString(issuer.fp[:]) + cert.cert.SerialNumber.Text(16)
	cert.ocspKey.Store(&ocspKeyMemo{issuer: issuer.fp, key: k})
	return k
}

// get returns an entry valid now: thisUpdate no later than now (with the clock skew a responder may be ahead
// by) and now strictly before nextUpdate. It never returns data outside that validity period.
func (c *fetchCache) get(m map[string]fetchedEntry, key string) []byte {
	now := c.now()
	c.mu.Lock()
	e, ok := m[key]
	if ok && !now.Before(e.expires) {
		delete(m, key)
		ok = false
	}
	c.mu.Unlock()
	if !ok || now.Add(c.skew).Before(e.thisUpdate) {
		return nil
	}
	return e.der
}

// put stores der when it has a nextUpdate in the future; data without nextUpdate (newer information is always
// available, RFC 6960 §4.2.2.1) is not kept. A full map first drops expired entries, then arbitrary ones.
func (c *fetchCache) put(m map[string]fetchedEntry, key string, der []byte, thisUpdate, nextUpdate time.Time) {
	now := c.now()
	if nextUpdate.IsZero() || !now.Before(nextUpdate) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(m) >= c.max {
		for k, e := range m {
			if !now.Before(e.expires) {
				delete(m, k)
			}
		}
		for k := range m { // Go's map order is random: this drops arbitrary entries
			if len(m) < c.max-c.max/8 {
				break
			}
			delete(m, k)
		}
	}
	exp := nextUpdate
	if c.ttl > 0 && now.Add(c.ttl).Before(exp) {
		exp = now.Add(c.ttl)
	}
	m[key] = fetchedEntry{der: der, thisUpdate: thisUpdate, nextUpdate: nextUpdate, expires: exp}
}

var errFetchEmpty = errors.New("signing: revocation source returned nothing")

// validity is what a fetched answer says about itself once checked: ok false for an answer that did not
// verify or does not speak for the certificate (returned to the caller, never cached).
type validity func(der []byte) (thisUpdate, nextUpdate time.Time, ok bool)

// lookup returns the cached answer for key, else fetches it with fn once for all concurrent callers with the
// same key (the first caller's lookup runs detached from its context, bounded by fetchTimeout; each caller waits
// at most until its own ctx ends), and caches it when check finds it valid. cache false only shares the lookup.
func (c *fetchCache) lookup(ctx context.Context, m map[string]fetchedEntry, key string, cache bool, fn func(context.Context) ([]byte, error), check validity) ([]byte, error) {
	if cache {
		if der := c.get(m, key); der != nil {
			return der, nil
		}
	}
	ch := c.sf.DoChan(key, func() (any, error) {
		if cache { // a lookup that ended between our miss and this flight already stored its answer
			if der := c.get(m, key); der != nil {
				return der, nil
			}
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		der, err := fn(fctx)
		if err == nil && len(der) == 0 {
			err = errFetchEmpty
		}
		if err != nil {
			return nil, err
		}
		if this, next, ok := check(der); ok && cache {
			c.put(m, key, der, this, next)
		}
		return der, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.([]byte), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
