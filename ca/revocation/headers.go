package revocation

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// httpTime is the IMF-fixdate of RFC 9110 §5.6.7 (net/http's TimeFormat; this package knows no HTTP).
const httpTime = "Mon, 02 Jan 2006 15:04:05 GMT"

// CacheHeaders returns the HTTP response headers for serving der (a CRL, or a cacheable OCSP response)
// that was produced at thisUpdate and is valid until nextUpdate, as RFC 5019 §6.2 recommends for OCSP and
// RFC 5280 §5 implies for CRLs: Cache-Control with a max-age that ends no later than nextUpdate, Expires
// at nextUpdate, Last-Modified at thisUpdate and a strong ETag over the bytes. Once nextUpdate has passed,
// max-age is 0 and caches must revalidate. The API layer copies the map into the response headers and
// answers If-None-Match itself. Do not use it for nonce-bearing OCSP responses (Response.Cacheable false).
func CacheHeaders(now, thisUpdate, nextUpdate time.Time, der []byte) map[string]string {
	return staticHeaders(thisUpdate, nextUpdate, der).at(now)
}

// cacheHeaders are the parts of CacheHeaders that do not depend on the time of the request; the
// responder computes them once per pre-signed response instead of once per request.
type cacheHeaders struct {
	nextUpdate                  time.Time
	expires, lastModified, etag string
}

func staticHeaders(thisUpdate, nextUpdate time.Time, der []byte) *cacheHeaders {
	sum := sha256.Sum256(der)
	return &cacheHeaders{
		nextUpdate:   nextUpdate,
		expires:      nextUpdate.UTC().Format(httpTime),
		lastModified: thisUpdate.UTC().Format(httpTime),
		etag:         `"` + hex.EncodeToString(sum[:16]) + `"`,
	}
}

func (h *cacheHeaders) at(now time.Time) map[string]string {
	maxAge := int64(h.nextUpdate.Sub(now) / time.Second)
	if maxAge < 0 {
		maxAge = 0
	}
	return map[string]string{
		"Cache-Control": "public, max-age=" + strconv.FormatInt(maxAge, 10) + ", no-transform, must-revalidate",
		"Expires":       h.expires,
		"Last-Modified": h.lastModified,
		"ETag":          h.etag,
	}
}

// CacheHeaders returns the HTTP caching headers for r at now, as the package-level CacheHeaders does, or
// nil when r is not Cacheable (a nonce, unknown, or an error response: send it with no caching headers
// or with Cache-Control: no-store). For pre-signed responses the values are computed once, at signing.
func (r Response) CacheHeaders(now time.Time) map[string]string {
	if !r.Cacheable {
		return nil
	}
	if r.headers != nil {
		return r.headers.at(now)
	}
	return CacheHeaders(now, r.ThisUpdate, r.NextUpdate, r.DER)
}
