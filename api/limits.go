package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

// windowLimiter counts events per key in fixed windows of the injected clock: at most limit events per key per
// window. Fixed windows rather than a sliding log keep it to one counter per key, and the whole map is dropped
// when the window rolls over. At most maxKeys keys are tracked in a window; further keys share one counter,
// so a flood of spoofed-looking sources cannot grow memory.
type windowLimiter struct {
	mu      sync.Mutex
	limit   int
	window  time.Duration
	now     func() time.Time
	start   time.Time
	counts  map[string]int
	maxKeys int
}

const overflowKey = "\x00overflow"

func newWindowLimiter(limit int, window time.Duration, now func() time.Time) *windowLimiter {
	return &windowLimiter{limit: limit, window: window, now: now, counts: map[string]int{}, maxKeys: 100000}
}

// rollLocked starts a new window when the current one has ended. Callers hold mu.
func (l *windowLimiter) rollLocked(now time.Time) {
	if now.Before(l.start) || !now.Before(l.start.Add(l.window)) {
		l.start = now.Truncate(l.window)
		clear(l.counts)
	}
}

func (l *windowLimiter) keyLocked(key string) string {
	if _, ok := l.counts[key]; !ok && len(l.counts) >= l.maxKeys {
		return overflowKey
	}
	return key
}

// take counts one event for key. ok is false when the key is over the limit (the event is still counted);
// retry is then the time until the window ends.
func (l *windowLimiter) take(key string) (ok bool, n int, retry time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.rollLocked(now)
	key = l.keyLocked(key)
	l.counts[key]++
	n = l.counts[key]
	if n > l.limit {
		return false, n, l.start.Add(l.window).Sub(now)
	}
	return true, n, 0
}

// blocked reports whether key went over its limit in this window, without counting an event.
func (l *windowLimiter) blocked(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.rollLocked(now)
	if l.counts[l.keyLocked(key)] > l.limit {
		return true, l.start.Add(l.window).Sub(now)
	}
	return false, 0
}

// tooMany answers 429 with Retry-After in whole seconds (RFC 9110 §10.2.3, RFC 6585 §4).
func tooMany(w http.ResponseWriter, retry time.Duration, detail string) {
	secs := int64((retry + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	writeProblem(w, newProblem(probRateLimited, detail))
}

// limitSigning applies the per-IP and global limits of routes whose answer costs a signature with a service
// key (the TSA; OCSP when the responder signs on request). It answers 429 and returns true when either is
// exhausted. The global limit bounds what the whole public internet can make the key sign.
func (s *Server) limitSigning(w http.ResponseWriter, r *http.Request) bool {
	ip := peerIP(r)
	if ok, _, retry := s.signIP.take(ip); !ok {
		tooMany(w, retry, "too many signing requests from this address")
		return true
	}
	if ok, _, retry := s.signAll.take("all"); !ok {
		tooMany(w, retry, "the signing service is busy")
		return true
	}
	return false
}

// authFailed records a credential that was presented and not accepted: counted per source address, written
// to the audit log (the first AuthFailLimit per source and window, then one auth.throttled event), and
// answered 401, or 429 once the source is over its limit.
func (s *Server) authFailed(w http.ResponseWriter, r *http.Request, cerr error) {
	ip := peerIP(r)
	ok, n, retry := s.authFail.take(ip)
	switch {
	case ok:
		s.auditAuth(r, "auth.failed", ip)
	case n == s.cfg.AuthFailLimit+1:
		s.auditAuth(r, "auth.throttled", ip)
	}
	s.noteError(r, cerr, "")
	if !ok {
		tooMany(w, retry, "too many failed logins from this address")
		return
	}
	s.problem(w, probBadCredential, "")
}

// auditAuth appends an authentication event. The presented credential is named by kind and, for a
// certificate, by fingerprint and serial; a bearer secret is never written anywhere.
func (s *Server) auditAuth(r *http.Request, kind, ip string) {
	if s.svc.Auditor == nil {
		return
	}
	data := map[string]any{"peer": ip, "route": r.Method + " " + routePattern(r)}
	if _, present := bearer(r); present {
		data["credential"] = "bearer"
	} else if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		leaf := r.TLS.PeerCertificates[0]
		data["credential"] = "certificate"
		data["certSha256"] = fingerprint(leaf)
		data["certSerial"] = leaf.SerialNumber.Text(16)
		data["certIssuer"] = leaf.Issuer.String()
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return
	}
	ev := audit.Event{Time: s.cfg.Now().UTC(), Kind: kind, Actor: "api:anonymous", Subject: "peer:" + ip, Data: raw}
	if err := s.svc.Auditor.AppendAudit(context.WithoutCancel(r.Context()), ev); err != nil {
		s.noteError(r, err, "")
	}
}
