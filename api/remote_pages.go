package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/httprate"

	"github.com/mohr-hix/mohr/api/web/remotepage"
)

// mountRemotePages puts the remote signing pages (package api/web/remotepage: passkey registration with the
// RA's code, activation of a signing request) in front of the API when the remote signing service offers
// them. Like the verification page they are outside the route table (HTML and the pages' own JSON calls, no
// client certificate needed: the registration code or the activation handle is what a call is about), are
// observed and logged like API requests, and are rate-limited per client address: every POST counts
// against the page limit, so a registration code cannot be guessed at speed (it has 100 bits anyway).
func (s *Server) mountRemotePages() error {
	svc, ok := s.svc.Remote.(remotepage.Service)
	if !ok {
		return nil
	}
	h, err := remotepage.New(remotepage.Config{Service: svc, Now: s.cfg.Now,
		OnError: func(r *http.Request, ref string, err error) { s.noteError(r, err, ref) }})
	if err != nil {
		return err
	}
	lim := httprate.NewRateLimiter(s.cfg.PageRateLimit, s.cfg.RateWindow,
		httprate.WithLimitHandler(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "60")
			http.Error(w, "Too many requests", http.StatusTooManyRequests)
		}))
	guarded := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := "ip:" + peerIP(r)
		if r.Method == http.MethodPost {
			if lim.RespondOnLimit(w, r, key) {
				return
			}
		} else if s.publicLim.RespondOnLimit(w, r, key) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
	pr := chi.NewRouter()
	pr.Use(s.observe)
	pr.Handle(remotepage.Prefix+"/*", guarded)
	next := s.handler
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, remotepage.Prefix+"/") {
			pr.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
	return nil
}
