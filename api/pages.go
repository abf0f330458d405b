package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/httprate"

	"github.com/mohr-hix/mohr/api/web"
)

// Pages for people (package api/web) live beside the API, outside its route table: they answer HTML, not
// problem documents, and are not part of the OpenAPI document. api mounts them under web.Prefix, counts and
// logs them like API requests, rate-limits the uploads, and tells the page who a signed-in visitor is.
//
// The verification page is public: anyone may check a prescription without a client certificate, and
// nothing an anonymous visitor uploads is stored (the page keeps nothing at all). On the mTLS listener a
// pharmacy or insurer that presents its certificate is named in the page's header and gets the per-client
// rate limit instead of the per-IP one; a certificate that does not verify is ignored, as on every public
// route, so the page never grants anything on the strength of a bad credential.

// pageRoles are the roles named as signed-in visitors of the verification page.
var pageRoles = map[Role]bool{RolePharmacy: true, RoleInsurer: true, RoleOperator: true, RoleAuditor: true, RolePhysician: true, RoleFacility: true}

// mountPages puts the pages in front of the API router.
func (s *Server) mountPages(api http.Handler) {
	p := s.svc.Pages
	if p == nil {
		return
	}
	s.pageLim = httprate.NewRateLimiter(s.cfg.PageRateLimit, s.cfg.RateWindow,
		httprate.WithLimitHandler(func(w http.ResponseWriter, r *http.Request) { p.Refuse(w, r, http.StatusTooManyRequests) }),
		httprate.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
			s.noteError(r, err, "")
			p.Refuse(w, r, http.StatusInternalServerError)
		}))
	p.Observe(func(indication string) { s.metrics.verified("page", indication) })
	pr := chi.NewRouter()
	pr.Use(s.observe)
	guarded := s.guardPage(p)
	pr.Handle(web.Prefix, guarded)
	pr.Handle(web.Prefix+"/*", guarded)
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == web.Prefix || strings.HasPrefix(r.URL.Path, web.Prefix+"/") {
			pr.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// guardPage applies the page's rate limits and size limit and the optional identity.
func (s *Server) guardPage(p *web.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		key := "ip:" + peerIP(r)
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			if id, err := s.authenticate(r); err == nil && id != nil && id.Cert != nil && pageRoles[id.Role] {
				if ri, ok := ctx.Value(reqInfoKey{}).(*reqInfo); ok {
					ri.id = id
				}
				key = rateKey(id, r)
				ctx = web.WithViewer(ctx, viewerName(id))
			}
		}
		if r.Method == http.MethodPost {
			// Each upload is a signature verification: its own, tighter limit.
			if s.pageLim.RespondOnLimit(w, r, key) {
				return
			}
			if r.ContentLength > p.MaxUpload()+64*kib {
				p.Refuse(w, r, http.StatusRequestEntityTooLarge)
				return
			}
		} else if s.publicLim.RespondOnLimit(w, r, key) {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
		p.ServeHTTP(w, r.WithContext(ctx))
	})
}

// viewerName is how the page names a signed-in visitor: the certificate's organisation and common name.
func viewerName(id *Identity) string {
	c := id.Cert
	name := c.Subject.CommonName
	if len(c.Subject.Organization) > 0 && c.Subject.Organization[0] != name {
		name = strings.TrimSpace(c.Subject.Organization[0] + " " + name)
	}
	if name == "" {
		name = id.Subject
	}
	return name
}
