package agent

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"
)

// ClientHeader must be present (with any non-empty value) on every API request. A custom header cannot be
// sent cross-origin without a CORS preflight, which the agent only grants to allowed origins.
const ClientHeader = "X-Mohr-Agent"

// maxBatchBody bounds a batch request's body.
const maxBatchBody = 64 << 20

// ServerConfig configures the local API.
type ServerConfig struct {
	Agent *Agent
	// Token is the per-installation secret (LoadOrCreateToken) the EMR sends as "Authorization: Bearer".
	Token []byte
	// AllowedOrigins are the web origins (scheme://host[:port]) of a browser-based EMR that may call the
	// agent. A request that carries any other Origin is refused; native EMRs send none.
	AllowedOrigins []string
	// Metrics are served on /metrics (behind the same token) if set.
	Metrics *Metrics
	// MaxDocument bounds one document (1 MiB when zero).
	MaxDocument int64
	// PINPage, if set, is served under /pin/ (pinpage.go), and GET /v1/pin tells the EMR its URL.
	PINPage *PINPage
}

// Server is the agent's local HTTP API (docs/agent.md). Serve it on 127.0.0.1 only.
type Server struct {
	cfg     ServerConfig
	tokenH  [32]byte
	origins map[string]bool
	mux     *http.ServeMux
}

// NewServer returns the API handler.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Agent == nil {
		return nil, errors.New("agent: server needs an Agent")
	}
	if len(cfg.Token) < minToken {
		return nil, fmt.Errorf("%w: token shorter than %d characters", ErrTokenFile, minToken)
	}
	if cfg.MaxDocument <= 0 {
		cfg.MaxDocument = 1 << 20
	}
	s := &Server{cfg: cfg, tokenH: sha256.Sum256(cfg.Token), origins: map[string]bool{}}
	for _, o := range cfg.AllowedOrigins {
		o = strings.TrimRight(strings.ToLower(strings.TrimSpace(o)), "/")
		if o == "" || o == "null" || o == "*" {
			return nil, fmt.Errorf("agent: origin %q cannot be allowed", o)
		}
		s.origins[o] = true
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /v1/status", s.handleStatus)
	m.HandleFunc("GET /v1/session", s.handleGetSession)
	m.HandleFunc("POST /v1/session", s.handleStartSession)
	m.HandleFunc("DELETE /v1/session", s.handleEndSession)
	m.HandleFunc("POST /v1/sign", s.handleSign)
	m.HandleFunc("POST /v1/batch", s.handleBatch)
	if cfg.PINPage != nil {
		m.HandleFunc("GET /v1/pin", s.handlePIN)
	}
	if cfg.Metrics != nil {
		h := cfg.Metrics.Handler()
		m.HandleFunc("GET /metrics", h.ServeHTTP)
	}
	s.mux = m
	return s, nil
}

// ServeHTTP applies the local-API protections in order (Host, Origin, bearer token, client header, JSON
// body) and routes the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	defer func() { s.cfg.Metrics.request(routeOf(r), rw.code) }()
	h := rw.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Vary", "Origin")
	if !localHost(r.Host) {
		// DNS rebinding: a page on a hostile name that resolves to 127.0.0.1 still sends its own Host.
		writeProblem(rw, http.StatusMisdirectedRequest, "bad_host", "requests must address 127.0.0.1 or localhost", nil)
		return
	}
	if s.cfg.PINPage != nil && strings.HasPrefix(r.URL.Path, pinPrefix) {
		// The PIN page is for the physician's browser, which has no token: its secret URL and its own
		// same-origin check protect it (pinpage.go).
		s.cfg.PINPage.serve(rw, r)
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if !s.origins[strings.ToLower(origin)] {
			writeProblem(rw, http.StatusForbidden, "origin_not_allowed", "this web origin may not use the signing agent", nil)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, "+ClientHeader)
			h.Set("Access-Control-Max-Age", "600")
			rw.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if !s.authorised(r) {
		h.Set("WWW-Authenticate", `Bearer realm="mohr-agent"`)
		writeProblem(rw, http.StatusUnauthorized, "unauthorized", "missing or wrong agent token", nil)
		return
	}
	if r.URL.Path != "/metrics" && r.Header.Get(ClientHeader) == "" {
		writeProblem(rw, http.StatusForbidden, "client_header_missing", "the "+ClientHeader+" header is required", nil)
		return
	}
	if r.Method == http.MethodPost {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			writeProblem(rw, http.StatusUnsupportedMediaType, "json_required", "the request body must be application/json", nil)
			return
		}
	}
	s.mux.ServeHTTP(rw, r)
}

// authorised compares the bearer token with the secret in constant time (over SHA-256 digests, so the
// comparison does not leak the secret's length either).
func (s *Server) authorised(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], s.tokenH[:]) == 1
}

// localHost reports whether a Host header names the loopback interface.
func localHost(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	h = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
	return h == "127.0.0.1" || h == "localhost" || h == "::1"
}

func routeOf(r *http.Request) string {
	switch p := r.URL.Path; p {
	case "/v1/status", "/v1/session", "/v1/sign", "/v1/batch", "/metrics":
		return r.Method + " " + p
	}
	return "other"
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(c int) {
	if !w.wrote {
		w.code, w.wrote = c, true
	}
	w.ResponseWriter.WriteHeader(c)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Problem is an RFC 9457 problem document with the agent's code and, for a wrong PIN, the tries left.
type Problem struct {
	Type        string `json:"type"`
	Title       string `json:"title"`
	Status      int    `json:"status,omitempty"`
	Code        string `json:"code"`
	Detail      string `json:"detail,omitempty"`
	RetriesLeft *int   `json:"retriesLeft,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, code, title string, p *Problem) {
	if p == nil {
		p = &Problem{}
	}
	p.Type, p.Title, p.Status, p.Code = "urn:mohr:agent:"+code, title, status, code
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// problemFor maps an agent error to a problem document. Card, token and network detail is not echoed; the
// session's end reason and the PIN tries left are.
func problemFor(err error) (int, *Problem) {
	p := &Problem{}
	set := func(code, title string) { p.Code, p.Title = code, title }
	status := http.StatusInternalServerError
	var pe *PINError
	var se *SessionEndedError
	var sge *SignerError
	switch {
	case errors.As(err, &pe):
		if pe.Retries >= 0 {
			r := pe.Retries
			p.RetriesLeft = &r
		}
		if pe.Retries == 0 {
			status = http.StatusLocked
			set("pin_blocked", "the card's PIN is blocked")
		} else {
			status = http.StatusForbidden
			set("pin_incorrect", "wrong PIN; the physician must start again")
		}
	case errors.Is(err, ErrCardRemoved):
		status = http.StatusConflict
		set("card_removed", "the card was removed")
	case errors.Is(err, ErrLimitReached):
		status = http.StatusConflict
		set("limit_reached", "the session's signature limit is reached")
	case errors.Is(err, ErrSessionExpired):
		status = http.StatusConflict
		set("session_expired", "the session's time is up")
	case errors.As(err, &se):
		status = http.StatusConflict
		set("session_ended", "the signing session ended")
		p.Detail = se.Reason
	case errors.Is(err, ErrNoSession):
		status = http.StatusConflict
		set("no_session", "no signing session is open")
	case errors.Is(err, ErrSessionActive):
		status = http.StatusConflict
		set("session_active", "a signing session is already open")
	case errors.Is(err, ErrPINUnavailable):
		status = http.StatusServiceUnavailable
		set("pin_unavailable", "the agent cannot ask for the PIN")
		p.Detail = "the agent has no terminal to ask the PIN on: run it in a terminal, or set pin_entry: web"
	case errors.Is(err, ErrPINTimeout):
		status = http.StatusConflict
		set("pin_timeout", "nobody entered the PIN in time")
	case errors.Is(err, ErrPINCancelled):
		status = http.StatusConflict
		set("pin_cancelled", "the physician did not enter the PIN")
	case errors.Is(err, ErrBadLimits), errors.Is(err, ErrBadRequest):
		status = http.StatusBadRequest
		set("bad_request", "malformed or out-of-range request")
		p.Detail = strings.TrimPrefix(err.Error(), "agent: ")
	case errors.Is(err, ErrRefused):
		status = http.StatusBadGateway
		set("refused", "the exchange refused the prescription; it is not stored there")
		p.Detail = submitDetail(err)
	case errors.Is(err, ErrSubmit):
		status = http.StatusBadGateway
		set("submit_failed", "the prescription is signed but not stored at the exchange; send it again later")
		p.Detail = submitDetail(err)
	case errors.As(err, &sge):
		status = http.StatusConflict
		set("signer_refused", "the card's signing certificate is not accepted; no session was opened")
		p.Detail = sge.Reason
	case errors.Is(err, ErrAudit):
		set("audit_failed", "the audit record could not be written; nothing was released")
	case errors.Is(err, ErrCard):
		status = http.StatusServiceUnavailable
		set("card_unavailable", "the card or reader is not available")
	default:
		set("internal", "internal error")
	}
	p.Status = status
	p.Type = "urn:mohr:agent:" + p.Code
	return status, p
}

// submitDetail is the exchange's status and reason, without transport detail.
func submitDetail(err error) string {
	var se *SubmitError
	if !errors.As(err, &se) {
		return ""
	}
	c := *se
	c.cause = nil
	return strings.TrimPrefix(c.Error(), "agent: ")
}

func fail(w http.ResponseWriter, err error) {
	status, p := problemFor(err)
	writeProblem(w, status, p.Code, p.Title, p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body strictly (unknown fields are errors) up to max bytes.
func decode(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, max))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: body: %v", ErrBadRequest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body: trailing data", ErrBadRequest)
	}
	return nil
}

type statusAnswer struct {
	Session            *SessionInfo `json:"session"`
	MaxSignatures      int          `json:"maxSignatures"`
	MaxDurationSeconds int64        `json:"maxDurationSeconds"`
	Submits            bool         `json:"submits"`
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	a := s.cfg.Agent
	n, d := a.Limits()
	st := statusAnswer{MaxSignatures: n, MaxDurationSeconds: int64(d / time.Second), Submits: a.cfg.Submitter != nil}
	if inf, ok := a.Session(); ok {
		st.Session = &inf
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleGetSession(w http.ResponseWriter, r *http.Request) {
	inf, ok := s.cfg.Agent.Session()
	if !ok {
		fail(w, ErrNoSession)
		return
	}
	writeJSON(w, http.StatusOK, inf)
}

type sessionRequest struct {
	MaxSignatures   int   `json:"maxSignatures"`
	DurationSeconds int64 `json:"durationSeconds"`
}

func (s *Server) handleStartSession(w http.ResponseWriter, r *http.Request) {
	var req sessionRequest
	if err := decode(w, r, 4096, &req); err != nil {
		fail(w, err)
		return
	}
	if req.DurationSeconds < 0 || req.DurationSeconds > int64(MaxSessionDuration/time.Second) {
		fail(w, ErrBadLimits)
		return
	}
	inf, err := s.cfg.Agent.StartSession(r.Context(), SessionOptions{MaxSignatures: req.MaxSignatures, Duration: time.Duration(req.DurationSeconds) * time.Second})
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, inf)
}

func (s *Server) handleEndSession(w http.ResponseWriter, r *http.Request) {
	inf, err := s.cfg.Agent.EndSession(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, inf)
}

type docRequest struct {
	ID       string `json:"id,omitempty"`
	Document []byte `json:"document"` // base64
}

type signRequest struct {
	docRequest
	RequireSession bool  `json:"requireSession,omitempty"`
	Submit         *bool `json:"submit,omitempty"`
	QR             bool  `json:"qr,omitempty"`
}

type batchRequest struct {
	Documents      []docRequest `json:"documents"`
	RequireSession bool         `json:"requireSession,omitempty"`
	Submit         *bool        `json:"submit,omitempty"`
	QR             bool         `json:"qr,omitempty"`
}

// ResultLine is one document's result, as POST /v1/sign answers and as each NDJSON line of POST /v1/batch.
type ResultLine struct {
	Index int    `json:"index"`
	ID    string `json:"id,omitempty"`
	// Status: submitted (stored at the exchange), refused (signed; the exchange refused it, nothing stored),
	// signed (signed; not stored: not sent, or the exchange failed or was unreachable), failed (not signed).
	Status string `json:"status"`
	// HTTPStatus is the exchange's answer to the submission (201, 422, 503, ...); 0 when none came.
	HTTPStatus    int             `json:"httpStatus,omitempty"`
	Attempts      int             `json:"attempts,omitempty"`
	ContentSHA256 string          `json:"contentSha256"`
	Signature     []byte          `json:"signature,omitempty"` // base64 CMS SignedData (HIX-Rx-CAdES B-B)
	Indication    string          `json:"indication,omitempty"`
	Report        json.RawMessage `json:"report,omitempty"`
	SealedReport  []byte          `json:"sealedReport,omitempty"`
	Error         *Problem        `json:"error,omitempty"`
	// QR is the offline QR code's text (RX1:...) when the request asked for it ("qr": true); QRError says
	// why it is missing.
	QR      string   `json:"qr,omitempty"`
	QRError *Problem `json:"qrError,omitempty"`
	// ExchangeProblem is the exchange's own problem document (RFC 9457) when it refused or failed with one.
	ExchangeProblem json.RawMessage `json:"exchangeProblem,omitempty"`
	Timings         Timings         `json:"timings"`
}

// BatchEnd is the last NDJSON line of POST /v1/batch.
type BatchEnd struct {
	Done bool `json:"done"`
	Summary
	Session *SessionInfo `json:"session,omitempty"`
}

func lineOf(r Result) ResultLine {
	l := ResultLine{Index: r.Index, ID: r.ID, ContentSHA256: r.ContentSHA256, Signature: r.Signature, Timings: r.Timings, QR: r.QR}
	if r.QRErr != nil && r.Signature != nil {
		_, l.QRError = problemFor(r.QRErr)
		if l.QRError.Code == "internal" {
			l.QRError.Code, l.QRError.Type = "qr_failed", "urn:mohr:agent:qr_failed"
			l.QRError.Title = "the offline QR code could not be made for this prescription"
			l.QRError.Detail = strings.TrimPrefix(r.QRErr.Error(), "offline: ")
		}
	}
	var se *SubmitError
	switch {
	case r.Signature == nil:
		l.Status = "failed"
	case r.Submission != nil:
		l.Status = "submitted"
		l.HTTPStatus, l.Attempts = r.Submission.Status, r.Submission.Attempts
		l.Indication, l.Report, l.SealedReport = r.Submission.Indication, r.Submission.Report, r.Submission.SealedReport
	case errors.As(r.Err, &se):
		l.Status = "signed"
		if se.Refused {
			l.Status = "refused"
		}
		l.HTTPStatus, l.Attempts, l.ExchangeProblem = se.Status, se.Attempts, se.Problem
		l.Indication, l.Report, l.SealedReport = se.Indication, se.Report, se.SealedReport
	default:
		l.Status = "signed"
	}
	if r.Err != nil {
		_, l.Error = problemFor(r.Err)
	}
	return l
}

func (s *Server) handleSign(w http.ResponseWriter, r *http.Request) {
	var req signRequest
	if err := decode(w, r, s.cfg.MaxDocument*4/3+4096, &req); err != nil {
		fail(w, err)
		return
	}
	o := SignOptions{RequireSession: req.RequireSession, NoSubmit: req.Submit != nil && !*req.Submit, QR: req.QR}
	var res Result
	_, err := s.cfg.Agent.SignBatch(r.Context(), []Document{{ID: req.ID, Content: req.Document}}, o, func(x Result) { res = x })
	if err != nil {
		fail(w, err)
		return
	}
	if res.Signature == nil {
		fail(w, res.Err)
		return
	}
	// A signed prescription the exchange did not store is never a 200: 422 when it refused it, 502 when it
	// failed or could not be reached. The body is still the result line (signature, report, errors).
	status := http.StatusOK
	switch {
	case errors.Is(res.Err, ErrRefused):
		status = http.StatusUnprocessableEntity
	case errors.Is(res.Err, ErrSubmit):
		status = http.StatusBadGateway
	}
	writeJSON(w, status, lineOf(res))
}

func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	var req batchRequest
	max := min(int64(s.cfg.Agent.cfg.MaxBatch)*(s.cfg.MaxDocument*4/3+1024), maxBatchBody)
	if err := decode(w, r, max, &req); err != nil {
		fail(w, err)
		return
	}
	docs := make([]Document, len(req.Documents))
	for i, d := range req.Documents {
		docs[i] = Document{ID: d.ID, Content: d.Document}
	}
	o := SignOptions{RequireSession: req.RequireSession, NoSubmit: req.Submit != nil && !*req.Submit, QR: req.QR}
	rc := http.NewResponseController(w)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	started := false
	start := func() {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
		}
	}
	sum, err := s.cfg.Agent.SignBatch(r.Context(), docs, o, func(res Result) {
		start()
		_ = enc.Encode(lineOf(res))
		_ = bw.Flush()
		_ = rc.Flush()
	})
	if err != nil && !started {
		fail(w, err)
		return
	}
	start()
	end := BatchEnd{Done: true, Summary: sum}
	if inf, ok := s.cfg.Agent.Session(); ok {
		end.Session = &inf
	}
	_ = enc.Encode(end)
	_ = bw.Flush()
	_ = rc.Flush()
}

// handlePIN tells the EMR where the PIN entry waiting for the physician is, so it can show the page.
func (s *Server) handlePIN(w http.ResponseWriter, r *http.Request) {
	u, ok := s.cfg.PINPage.URL()
	if !ok {
		writeProblem(w, http.StatusNotFound, "no_pin_request", "no PIN entry is waiting", nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"url": u})
}
