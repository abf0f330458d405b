package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// ctCOSESign1 is the media type of a COSE_Sign1 message (RFC 9052 §9.1: application/cose with cose-type).
const ctCOSESign1 = `application/cose; cose-type="cose-sign1"`

// TrustBundleSource serves the signed trust bundle of offline verification (signing/offline, docs/offline.md):
// the CA, TSA and OCSP responder certificates and a revocation snapshot of physician-signing certificates,
// signed by the Ministry's seal key.
type TrustBundleSource interface {
	Bundle(ctx context.Context) (signed []byte, issued, nextUpdate time.Time, err error)
}

// handleTrustBundle serves the trust bundle with caching headers: Last-Modified is its issue time, the ETag a
// digest of the bytes, and caches may keep it for at most an hour (the bundle is re-signed hourly with a fresh
// revocation snapshot), never beyond its next update.
func (s *Server) handleTrustBundle(w http.ResponseWriter, r *http.Request) {
	signed, issued, next, err := s.svc.Offline.Bundle(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sum := sha256.Sum256(signed)
	h := w.Header()
	h.Set("Content-Type", ctCOSESign1)
	h.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	now := s.cfg.Now()
	until := next
	if hour := now.Add(time.Hour); hour.Before(until) {
		until = hour
	}
	setCacheUntil(h, now, until)
	http.ServeContent(w, r, "", issued.UTC(), bytes.NewReader(signed))
}
