// Package remotepage is the physician's side of remote signing in a browser, on Mohr's own origin (the
// WebAuthn relying party): the passkey registration page, where the physician enters the one-use
// registration code the RA officer handed over in person and their authenticator creates the passkey
// (navigator.credentials.create), and the activation page, where the physician approves a signing request
// of their signing application (navigator.credentials.get over exactly the challenge Mohr made from the
// document hashes). Persian and English, rendered on the server with html/template from embedded files; the
// ceremony itself needs the page's small script (WebAuthn is a JavaScript API).
//
// Package api mounts the handler under Prefix, rate-limits it per client address and logs it. The pages hold
// no session and set no cookie: the registration code, or the activation handle, is what a request is
// about, and each is checked by package signing/remote.
package remotepage

import (
	"context"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/signing/remote"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Paths the handler serves.
const (
	Prefix       = "/remote"
	RegisterPath = Prefix + "/register"
	ActivatePath = Prefix + "/activate"
	staticPath   = Prefix + "/static/"
)

// maxBody bounds a JSON request of the pages (an attestation or assertion response is a few KiB).
const maxBody = 64 << 10

// Service is what the pages need of the remote signing service (*remote.Service).
type Service interface {
	RegistrationOptions(ctx context.Context, code string) (remote.PendingRegistration, error)
	FinishRegistrationWithCode(ctx context.Context, code string, response []byte) (remote.Credential, error)
	ActivationOptions(ctx context.Context, handle string) (remote.PendingActivation, error)
	ApproveActivation(ctx context.Context, handle string, assertion []byte) error
}

// Config configures the pages.
type Config struct {
	Service Service
	// OnError receives errors that are not the visitor's fault, with the reference the visitor sees.
	OnError func(r *http.Request, ref string, err error)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Handler serves the pages, their JSON calls and static files.
type Handler struct {
	cfg    Config
	tmpl   *template.Template
	static http.Handler
}

// New parses the templates.
func New(cfg Config) (*Handler, error) {
	if cfg.Service == nil {
		return nil, errors.New("remotepage: Config.Service is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t, err := template.New("").ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg, tmpl: t, static: http.StripPrefix(staticPath, http.FileServerFS(sub))}, nil
}

// securityHeaders: the page loads only its own files and talks only to its own origin; it cannot be framed
// (a framed WebAuthn prompt is a clickjacking vector); no referrer (the URL may hold an activation handle).
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "+
		"font-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// ServeHTTP routes the pages.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, staticPath) && get:
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.static.ServeHTTP(w, r)
	case p == RegisterPath && get:
		h.render(w, r, http.StatusOK, "register")
	case p == RegisterPath+"/options" && r.Method == http.MethodPost:
		h.registerOptions(w, r)
	case p == RegisterPath+"/finish" && r.Method == http.MethodPost:
		h.registerFinish(w, r)
	case p == ActivatePath && get:
		h.render(w, r, http.StatusOK, "activate")
	case p == ActivatePath+"/options" && r.Method == http.MethodPost:
		h.activateOptions(w, r)
	case p == ActivatePath+"/approve" && r.Method == http.MethodPost:
		h.activateApprove(w, r)
	default:
		h.render(w, r, http.StatusNotFound, "notfound")
	}
}

// view is what a template shows: the texts of one language.
type msg struct{ Key, Text string }

type view struct {
	Lang, Dir, Other, Page string
	T                      map[string]string
	// Msgs are the script's messages in this language, by the key the JSON calls answer.
	Msgs []msg
}

func langOf(r *http.Request) string {
	if r.URL.Query().Get("lang") == "en" {
		return "en"
	}
	return "fa"
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, page string) {
	lang := langOf(r)
	v := view{Lang: lang, Dir: "rtl", Other: "en", Page: page, T: texts[lang]}
	if lang == "en" {
		v.Dir, v.Other = "ltr", "fa"
	}
	for k, t := range v.T {
		if key, ok := strings.CutPrefix(k, "m."); ok {
			v.Msgs = append(v.Msgs, msg{key, t})
		}
	}
	sort.Slice(v.Msgs, func(i, j int) bool { return v.Msgs[i].Key < v.Msgs[j].Key })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var b strings.Builder
	if err := h.tmpl.ExecuteTemplate(&b, "page.html", v); err != nil {
		ref := h.report(r, err)
		http.Error(w, "The page could not be shown. Reference: "+ref, http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, b.String())
}

func (h *Handler) report(r *http.Request, err error) string {
	ref := newRef()
	if h.cfg.OnError != nil {
		h.cfg.OnError(r, ref, err)
	}
	return ref
}

// readJSON decodes a small JSON body strictly. The content type must be JSON, so that a cross-site form
// cannot post here without a CORS preflight (which this handler never grants).
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeErr(w, http.StatusUnsupportedMediaType, "bad-request")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, "bad-request")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeErr answers {"error": key}; the page shows the text of key in its language.
func writeErr(w http.ResponseWriter, status int, key string) {
	writeJSON(w, status, map[string]string{"error": key})
}

// fail maps a remote error to the page's message keys. Nothing internal reaches the visitor.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error, what string) {
	switch {
	case errors.Is(err, remote.ErrNotFound), errors.Is(err, remote.ErrUsed):
		writeErr(w, http.StatusForbidden, what+"-not-accepted")
	case errors.Is(err, remote.ErrExpired):
		writeErr(w, http.StatusGone, what+"-expired")
	case errors.Is(err, remote.ErrCredentialStatus):
		writeErr(w, http.StatusConflict, "credential-status")
	case errors.Is(err, remote.ErrAssertion):
		writeErr(w, http.StatusBadRequest, "passkey-refused")
	case errors.Is(err, remote.ErrForbidden):
		writeErr(w, http.StatusForbidden, what+"-not-accepted")
	default:
		ref := h.report(r, err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server", "ref": ref})
	}
}

type codeRequest struct {
	Code string `json:"code"`
}

// registerOptions answers the creation options of the ceremony a registration code opens.
func (h *Handler) registerOptions(w http.ResponseWriter, r *http.Request) {
	var req codeRequest
	if !readJSON(w, r, &req) {
		return
	}
	reg, err := h.cfg.Service.RegistrationOptions(r.Context(), req.Code)
	if err != nil {
		h.fail(w, r, err, "code")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": reg.Name, "councilNumber": reg.CouncilNumber,
		"expiresAt": reg.ExpiresAt.UTC(), "publicKey": reg.Options.Response})
}

type finishRequest struct {
	Code       string          `json:"code"`
	Credential json.RawMessage `json:"credential"`
}

// registerFinish registers the passkey the browser created.
func (h *Handler) registerFinish(w http.ResponseWriter, r *http.Request) {
	var req finishRequest
	if !readJSON(w, r, &req) {
		return
	}
	cred, err := h.cfg.Service.FinishRegistrationWithCode(r.Context(), req.Code, req.Credential)
	if err != nil {
		h.fail(w, r, err, "code")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"credentialID": cred.ID, "status": string(cred.Status)})
}

type handleRequest struct {
	Handle string `json:"handle"`
}

// activateOptions answers what the activation request is (whose credential, how many documents, their
// hashes, until when) and the WebAuthn request options.
func (h *Handler) activateOptions(w http.ResponseWriter, r *http.Request) {
	var req handleRequest
	if !readJSON(w, r, &req) {
		return
	}
	pa, err := h.cfg.Service.ActivationOptions(r.Context(), req.Handle)
	if err != nil {
		h.fail(w, r, err, "request")
		return
	}
	hashes := make([]string, len(pa.Hashes))
	for i, x := range pa.Hashes {
		hashes[i] = hex.EncodeToString(x)
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": pa.Name, "councilNumber": pa.CouncilNumber, "count": len(pa.Hashes),
		"hashes": hashes, "expiresAt": pa.ExpiresAt.UTC(), "publicKey": pa.Options.Response})
}

type approveRequest struct {
	Handle     string          `json:"handle"`
	Credential json.RawMessage `json:"credential"`
}

// activateApprove hands the assertion to the service, which checks and parks it for the signing application.
func (h *Handler) activateApprove(w http.ResponseWriter, r *http.Request) {
	var req approveRequest
	if !readJSON(w, r, &req) {
		return
	}
	if err := h.cfg.Service.ApproveActivation(r.Context(), req.Handle, req.Credential); err != nil {
		h.fail(w, r, err, "request")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"approved": true})
}
