package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/ca"
)

// maxShard bounds the shard number a client may ask for.
const maxShard = 1 << 16

// reShard is the canonical form of a shard number: decimal, no sign, no leading zero.
var reShard = regexp.MustCompile(`^(0|[1-9][0-9]{0,5})$`)

// handleCRL serves a shard's CRL (RFC 5280 §5) with caching headers derived from it: Last-Modified is
// thisUpdate, Expires and Cache-Control max-age run to nextUpdate, the ETag is a digest of the DER. Conditional
// requests (If-None-Match, If-Modified-Since) get 304 from http.ServeContent.
func (s *Server) handleCRL(w http.ResponseWriter, r *http.Request) {
	// Only the canonical decimal form names a shard: "00", "+1" or "0x1" would be other URLs for the same
	// CRL, each a separate cache entry at every CDN in front of this one.
	raw := chi.URLParam(r, "shard")
	if !reShard.MatchString(raw) {
		s.problem(w, probNotFound, "")
		return
	}
	shard, err := strconv.Atoi(raw)
	if err != nil || shard > maxShard {
		s.problem(w, probNotFound, "")
		return
	}
	der, thisUpdate, nextUpdate, ok := s.svc.CRL.CRL(shard)
	if !ok {
		s.problem(w, probNotFound, "")
		return
	}
	sum := sha256.Sum256(der)
	h := w.Header()
	h.Set("Content-Type", ctPKIXCRL)
	h.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	setCacheUntil(h, s.cfg.Now(), nextUpdate)
	// CRLs are small: no byte ranges, so http.ServeContent never answers with its own text/plain 416.
	r.Header.Del("Range")
	r.Header.Del("If-Range")
	http.ServeContent(w, r, "", thisUpdate.UTC(), bytes.NewReader(der))
}

// setCacheUntil sets Cache-Control and Expires so caches keep a response until next (RFC 5019 §6.2 for OCSP,
// the same reasoning for CRLs).
func setCacheUntil(h http.Header, now, next time.Time) {
	age := int64(next.Sub(now) / time.Second)
	if age <= 0 || next.IsZero() {
		h.Set("Cache-Control", "no-cache")
		return
	}
	h.Set("Cache-Control", "public, max-age="+strconv.FormatInt(age, 10)+", no-transform, must-revalidate")
	h.Set("Expires", next.UTC().Format(http.TimeFormat))
}

// handleOCSPGet answers GET {url}/{url-encoding of base-64 encoding of the DER OCSPRequest} (RFC 6960 A.1).
// The route is a wildcard because base64 contains '/', which not every client escapes.
func (s *Server) handleOCSPGet(w http.ResponseWriter, r *http.Request) {
	raw := chi.URLParam(r, "*")
	b64, err := url.PathUnescape(raw)
	if err != nil || b64 == "" || len(b64) > 4096 {
		s.problem(w, probMalformed, "the path does not hold a base64 OCSP request")
		return
	}
	if hr, ok := s.svc.OCSP.(OCSPGETHeaders); ok {
		resp, hdr := hr.RespondGETHeaders(r.Context(), b64, s.cfg.Now())
		h := w.Header()
		if hdr == nil {
			h.Set("Cache-Control", "no-cache")
		}
		for k, v := range hdr {
			h.Set(k, v)
		}
		writeBytes(w, http.StatusOK, ctOCSPResp, resp)
		return
	}
	resp, err := s.svc.OCSP.RespondGET(r.Context(), b64)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// RFC 5019 §5: GET responses are cacheable until nextUpdate.
	if parsed, err := ocsp.ParseResponse(resp, nil); err == nil {
		setCacheUntil(w.Header(), s.cfg.Now(), parsed.NextUpdate)
		if !parsed.ThisUpdate.IsZero() {
			w.Header().Set("Last-Modified", parsed.ThisUpdate.UTC().Format(http.TimeFormat))
		}
		sum := sha256.Sum256(resp)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	writeBytes(w, http.StatusOK, ctOCSPResp, resp)
}

func (s *Server) handleOCSPPost(w http.ResponseWriter, r *http.Request) {
	req, err := readAll(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp, err := s.svc.OCSP.Respond(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeBytes(w, http.StatusOK, ctOCSPResp, resp)
}

// handleTSA answers an RFC 3161 time-stamp query over HTTP (RFC 3161 §3.4).
func (s *Server) handleTSA(w http.ResponseWriter, r *http.Request) {
	req, err := readAll(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp, err := s.svc.TSA.Respond(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeBytes(w, http.StatusOK, ctTSReply, resp)
}

// handleRevocationFeed serves one page of the revocation change feed (GET /v1/revocations?from=N).
func (s *Server) handleRevocationFeed(w http.ResponseWriter, r *http.Request) {
	from := int64(-1)
	if r.URL.Query().Has("from") {
		n, err := queryInt(r, "from")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		from = n
	}
	profile := r.URL.Query().Get("profile")
	if profile != "" && !slices.Contains(ca.Profiles, profile) {
		s.fail(w, r, malformed("query parameter profile names no certificate profile"))
		return
	}
	page, err := s.svc.Revocations.RevocationChanges(r.Context(), from, profile)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if page.Changes == nil {
		page.Changes = []RevocationChange{}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, page)
}
