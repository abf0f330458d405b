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
	maxAge := int64(nextUpdate.Sub(now) / time.Second)
	if maxAge < 0 {
		maxAge = 0
	}
	sum := sha256.Sum256(der)
	return map[string]string{
		"Cache-Control": "public, max-age=" + strconv.FormatInt(maxAge, 10) + ", no-transform, must-revalidate",
		"Expires":       nextUpdate.UTC().Format(httpTime),
		"Last-Modified": thisUpdate.UTC().Format(httpTime),
		"ETag":          `"` + hex.EncodeToString(sum[:16]) + `"`,
	}
}
