package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/httprate"

	"github.com/mohr-hix/mohr/internal/audit"
)

// Server is the HTTP API. Build it with New.
type Server struct {
	cfg       Config
	svc       Services
	admin     *adminCredential
	matrix    map[string]*route
	mux       *chi.Mux
	handler   http.Handler
	limiter   *httprate.RateLimiter // per client, protected routes
	publicLim *httprate.RateLimiter // per IP, public routes
	pageLim   *httprate.RateLimiter // per IP or client, uploads to the verification page (pages.go)
	approvals ApprovalStore
	verified  verifiedCache
	signIP    *windowLimiter // signing routes, per IP
	signAll   *windowLimiter // signing routes, all callers
	authFail  *windowLimiter // rejected credentials, per source address
	metrics   *metrics
	openapi   []byte
}

// New builds the server. It reads the admin credential file if cfg.AdminTokenFile is set (create it first
// with EnsureAdminCredential).
func New(cfg Config, svc Services) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.validate(svc); err != nil {
		return nil, err
	}
	idx, err := matrixIndex(routes)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, svc: svc, matrix: idx, metrics: newMetrics()}
	if cfg.AdminTokenFile != "" {
		secret, err := ReadAdminCredential(cfg.AdminTokenFile)
		if err != nil {
			return nil, err
		}
		s.admin = newAdminCredential(secret)
	}
	s.approvals = svc.Approvals
	if s.approvals == nil {
		aud := func(context.Context, audit.Event) error { return errors.New("api: no audit log for dual control") }
		if svc.Auditor != nil {
			aud = svc.Auditor.AppendAudit
		}
		s.approvals = newMemApprovals(cfg.Now, aud)
	}
	s.signIP = newWindowLimiter(cfg.SignRateLimit, cfg.RateWindow, cfg.Now)
	s.signAll = newWindowLimiter(cfg.SignGlobalRateLimit, cfg.RateWindow, cfg.Now)
	s.authFail = newWindowLimiter(cfg.AuthFailLimit, cfg.RateWindow, cfg.Now)
	s.limiter = httprate.NewRateLimiter(cfg.RateLimit, cfg.RateWindow,
		httprate.WithLimitHandler(s.rateLimited), httprate.WithErrorHandler(s.rateError))
	s.publicLim = httprate.NewRateLimiter(cfg.PublicRateLimit, cfg.RateWindow,
		httprate.WithLimitHandler(s.rateLimited), httprate.WithErrorHandler(s.rateError))
	if s.openapi, err = buildOpenAPI(cfg.Version); err != nil {
		return nil, err
	}

	r := chi.NewRouter()
	r.Use(s.observe)
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) { s.problem(w, probNotFound, "") })
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) { s.problem(w, probMethod, "") })
	for _, rt := range routes {
		r.With(s.enforce).MethodFunc(rt.method, rt.pattern, func(w http.ResponseWriter, req *http.Request) {
			rt.handle(s, w, req)
		})
	}
	s.mux = r
	s.handler = r
	s.mountPages(r)
	if err := s.mountRemotePages(); err != nil { // remote_pages.go
		return nil, err
	}
	return s, nil
}

// Handler returns the HTTP handler of the whole API.
func (s *Server) Handler() http.Handler { return s.handler }

// Routes exposes the router for chi.Walk (tests, documentation).
func (s *Server) Routes() chi.Routes { return s.mux }

// TLSConfig returns the server side of mutual TLS: it requests a client certificate but does not require one
// (the public routes stay reachable without), and names the client CAs in the CertificateRequest. The
// certificate is verified against Config.ClientCAs by the enforce middleware on every request, with the
// injected clock and the revocation checker, so that a bad certificate gets a 401 problem document instead of
// a bare TLS alert and a certificate revoked during a long connection stops working at its next request.
// The caller sets Certificates (or GetCertificate).
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequestClientCert,
		ClientCAs:  s.cfg.ClientCAs,
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// HTTPServer returns an http.Server for addr with the handler, TLSConfig and every timeout set. Serve it with
// ListenAndServeTLS("", "") after setting TLSConfig.Certificates, or Serve on a listener.
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s.handler,
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    32 * kib,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
	}
}

// reqInfo is what the outer middleware learns from the inner ones, for the access log.
type reqInfo struct {
	id    *Identity
	err   error
	errID string
}

type reqInfoKey struct{}
type identityKey struct{}

// IdentityFrom returns the authenticated caller of a request handled by the API.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	if !ok || id == nil {
		return Identity{}, false
	}
	return *id, true
}

func (s *Server) noteError(r *http.Request, err error, id string) {
	if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		ri.err, ri.errID = err, id
	}
}

// statusWriter records the status and size of a response. It keeps http.ResponseController working through
// Unwrap.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		f.Flush()
	}
}

// observe is the outermost middleware: it recovers panics into a 500 problem document, counts the request in
// the metrics and writes the access log line. It logs the route pattern, never the raw path or query (OCSP
// GET paths and enrolment are not secrets, but there is no reason to keep them), never a body or a header.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{}
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, ri))
		sw := &statusWriter{ResponseWriter: w}
		s.metrics.inflight.Inc()
		defer func() {
			s.metrics.inflight.Dec()
			p := recover()
			if p == http.ErrAbortHandler {
				// Deliberate abort (a stream that failed half way): log it, then let net/http close the connection.
				defer panic(p)
				if ri.err == nil {
					ri.err = errors.New("response aborted")
				}
			} else if p != nil {
				ri.errID = opaqueID()
				ri.err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
				if sw.status == 0 {
					writeProblem(sw, Problem{Type: problemTypeBase + probInternal.slug, Title: probInternal.title,
						Status: probInternal.status, ID: ri.errID})
				}
			}
			pattern := "unmatched"
			if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
				pattern = rc.RoutePattern()
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			d := time.Since(start)
			s.metrics.observe(r.Method, pattern, status, d)
			attrs := []slog.Attr{
				slog.String("method", r.Method), slog.String("route", pattern), slog.Int("status", status),
				slog.Int64("bytes", sw.n), slog.Duration("duration", d), slog.String("peer", peerIP(r)),
			}
			if ri.id != nil {
				attrs = append(attrs, slog.String("role", string(ri.id.Role)), slog.String("subject", ri.id.Subject))
			}
			level := slog.LevelInfo
			if ri.errID != "" {
				level = slog.LevelError
				attrs = append(attrs, slog.String("error_id", ri.errID))
			}
			if ri.err != nil {
				attrs = append(attrs, slog.String("error", ri.err.Error()))
			}
			s.cfg.Logger.LogAttrs(context.Background(), level, "api request", attrs...)
		}()
		next.ServeHTTP(sw, r)
	})
}

func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// enforce is the one place the access matrix is enforced. It runs after routing, looks the matched route
// pattern up in the matrix and, in order: authenticates the caller, checks the role and the object, applies the
// rate limit, answers 501 for a missing service, checks the media type and the body size, and sets the
// request deadline. A route missing from the matrix is refused.
func (s *Server) enforce(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := chi.RouteContext(r.Context())
		rt := s.matrix[r.Method+" "+rc.RoutePattern()]
		if rt == nil {
			s.problem(w, probForbidden, "")
			return
		}
		var id *Identity
		var cerr error
		if !rt.public { // public routes never look at credentials
			if presentsCredential(r) {
				if blocked, retry := s.authFail.blocked(peerIP(r)); blocked {
					tooMany(w, retry, "too many failed logins from this address")
					return
				}
			}
			id, cerr = s.authenticate(r)
			if errors.Is(cerr, errRevocationUnknown) {
				s.fail(w, r, cerr)
				return
			}
		}
		if id != nil {
			if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
				ri.id = id
			}
		}
		switch {
		case rt.public:
		case rt.loopback && id == nil && cerr == nil && isLoopback(r):
		case cerr != nil:
			s.authFailed(w, r, cerr)
			return
		case id == nil:
			w.Header().Set("WWW-Authenticate", `Bearer realm="mohr"`)
			s.problem(w, probUnauthenticated, "a client certificate from the health intermediate CA is required")
			return
		default:
			switch rt.roles[id.Role] {
			case allow:
			case own:
				if rt.ownParam == ownByRecord {
					break // the handler decides from the object it reads (ownsRecord)
				}
				if v := chi.URLParam(r, rt.ownParam); v == "" || v != ownValue(id, rt.ownParam) {
					s.problem(w, probForbidden, "")
					return
				}
			default:
				s.auditDeniedRole(r, rt, id) // csc.go
				s.problem(w, probForbidden, "")
				return
			}
		}

		if rt.public || id == nil {
			if s.publicLim.RespondOnLimit(w, r, "ip:"+peerIP(r)) {
				return
			}
		} else if s.limiter.RespondOnLimit(w, r, rateKey(id, r)) {
			return
		}

		if (rt.signs || s.cfg.OCSPSignsOnDemand && rt.tag == "revocation" && rt.respType == ctOCSPResp) && s.limitSigning(w, r) {
			return
		}

		if rt.needs != nil && !rt.needs(&s.svc) {
			s.problem(w, probNotImplemented, "")
			return
		}

		if len(rt.reqTypes) > 0 {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || !slices.Contains(rt.reqTypes, mt) {
				s.problem(w, probMediaType, "expected "+rt.reqTypes[0])
				return
			}
		}
		limit := s.bodyLimit(rt.body)
		if r.ContentLength > limit {
			s.problem(w, probTooLarge, "limit is "+strconv.FormatInt(limit, 10)+" bytes")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)

		timeout := s.cfg.RequestTimeout
		if rt.body == batchBody {
			timeout = s.cfg.BatchTimeout
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Now().Add(timeout))
			_ = rc.SetWriteDeadline(time.Now().Add(timeout))
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		if id != nil {
			ctx = context.WithValue(ctx, identityKey{}, id)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func ownValue(id *Identity, param string) string {
	switch param {
	case "siamID":
		return id.SIAMID
	case "councilNumber":
		return id.CouncilNumber
	}
	return ""
}

func rateKey(id *Identity, r *http.Request) string {
	if id.Fingerprint != "" {
		return "cert:" + id.Fingerprint
	}
	return "ip:" + peerIP(r)
}

func (s *Server) bodyLimit(k bodyKind) int64 {
	switch k {
	case jsonBody:
		return s.cfg.MaxJSONBody
	case cmsBody:
		return s.cfg.MaxCMSBody
	case importBody:
		return s.cfg.MaxImportBody
	case batchBody:
		return s.cfg.MaxBatchBody
	case pkiBody:
		return s.cfg.MaxPKIBody
	}
	return s.cfg.MaxJSONBody
}

func (s *Server) rateLimited(w http.ResponseWriter, _ *http.Request) {
	writeProblem(w, newProblem(probRateLimited, ""))
}

func (s *Server) rateError(w http.ResponseWriter, r *http.Request, err error) {
	s.fail(w, r, err)
}

// presentsCredential reports whether r carries a credential (a bearer header or a client certificate).
func presentsCredential(r *http.Request) bool {
	_, present := bearer(r)
	return present || r.TLS != nil && len(r.TLS.PeerCertificates) > 0
}

// routePattern is the matched chi route pattern, for logs and audit events (never the raw path).
func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
		return rc.RoutePattern()
	}
	return "unmatched"
}
