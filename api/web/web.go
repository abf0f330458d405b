// Package web is Mohr's people-facing verification page: a pharmacist or a claims officer drops a signed
// prescription (a .p7s file or a signed PDF) and reads, in Persian or English, whether the signature holds,
// the prescription as written, who signed it and when, whether the physician was in good standing then, and
// the certificate chain, and can download the exchange's sealed validation report.
//
// The page is rendered on the server with html/template from embedded files: no build step, no external
// fonts or scripts, and the basic upload works with JavaScript off (a plain multipart form). A little script
// adds drag and drop and switches the language of a result in place. Nothing a visitor uploads is stored:
// the file is verified in memory and the answer is the page itself (the sealed report travels in it as a
// data: link). Package api mounts the handler, rate-limits it and tells it who a signed-in visitor is.
package web

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/api/web/internal/pagesec"
	"github.com/mohr-hix/mohr/signing"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Paths the handler serves. Package api routes everything under Prefix here.
const (
	Prefix     = "/verify"
	staticPath = Prefix + "/static/"
)

// Config configures the page. Verifier is required.
type Config struct {
	// Verifier returns the current verifier (the node swaps it when its trust anchors change). It validates
	// signatures: CAdES, and through signing/pades the CMS inside signed PDFs.
	Verifier func() *signing.Verifier
	// Registry, if set, gives the prescriber's specialty and name as the medical council records them.
	Registry signing.PhysicianRegistry
	// Seal, if set, seals the validation report for the download button (signing.SealReport).
	Seal *signing.Seal
	// MaxUpload bounds an uploaded file; 4 MiB when zero.
	MaxUpload int64
	// TrustBundle, if set with SealKey, returns the signed trust bundle the exchange publishes (GET
	// /trust-bundle); the page then checks prescription QR codes offline against it (offline.go).
	TrustBundle func(ctx context.Context) ([]byte, error)
	// SealKey is the pinned public key of the Ministry's trust-bundle seal: the page opens the bundle with it,
	// as every offline verifier does, and never with a key taken from the bundle.
	SealKey crypto.PublicKey
	// Now is the clock for sealing and for offline checks; time.Now when nil.
	Now func() time.Time
	// OnError receives errors that are not the visitor's fault (a failed seal, a template error), with the
	// opaque reference the visitor sees, for the caller's log. nil drops them.
	OnError func(r *http.Request, ref string, err error)
}

// Handler serves the page (GET and POST Prefix) and its static files (GET Prefix/static/...).
type Handler struct {
	cfg     Config
	observe func(indication string)
	tmpl    *template.Template
	static  http.Handler
	teh     *time.Location
	bundles bundleCache
	// sealSPKI is SealKey as base64 DER SubjectPublicKeyInfo, handed to the browser check with the page.
	sealSPKI string
}

// New checks cfg and parses the templates.
func New(cfg Config) (*Handler, error) {
	if cfg.Verifier == nil {
		return nil, errors.New("web: Config.Verifier is required")
	}
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = 4 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, tmpl: t, static: http.StripPrefix(staticPath, http.FileServerFS(sub)), teh: tehran()}
	if cfg.SealKey != nil && cfg.TrustBundle != nil {
		spki, err := x509.MarshalPKIXPublicKey(cfg.SealKey)
		if err != nil {
			return nil, fmt.Errorf("web: seal key: %w", err)
		}
		h.sealSPKI = base64.StdEncoding.EncodeToString(spki)
	}
	return h, nil
}

// Observe sets a function called with the indication of every verification the page makes (for metrics).
// Call it before serving.
func (h *Handler) Observe(f func(indication string)) { h.observe = f }

// MaxUpload is the configured upload limit in bytes.
func (h *Handler) MaxUpload() int64 { return h.cfg.MaxUpload }

type viewerKey struct{}

// WithViewer returns ctx carrying the name of a signed-in visitor (a pharmacy or insurer over mTLS), shown
// in the page's header. Package api sets it only for a verified client certificate.
func WithViewer(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, viewerKey{}, name)
}

func viewer(ctx context.Context) string {
	s, _ := ctx.Value(viewerKey{}).(string)
	return s
}

// ServeHTTP routes the page and its files.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pagesec.Set(w.Header())
	switch {
	case strings.HasPrefix(r.URL.Path, staticPath) && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.static.ServeHTTP(w, r)
	case r.URL.Path != Prefix && r.URL.Path != Prefix+"/":
		h.render(w, r, http.StatusNotFound, h.page(r, langOf(r), nil, msgNotFound))
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		h.render(w, r, http.StatusOK, h.page(r, langOf(r), nil, ""))
	case r.Method == http.MethodPost:
		h.upload(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		h.render(w, r, http.StatusMethodNotAllowed, h.page(r, langOf(r), nil, msgNotFound))
	}
}

// Refuse answers with the page and a plain-language message instead of a result: package api calls it when
// its own checks (rate limit, size) stop a request before the handler.
func (h *Handler) Refuse(w http.ResponseWriter, r *http.Request, status int) {
	pagesec.Set(w.Header())
	msg := msgServer
	switch status {
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "60")
		msg = msgRateLimited
	case http.StatusRequestEntityTooLarge:
		msg = msgTooLarge
	}
	h.render(w, r, status, h.page(r, langOf(r), nil, msg))
}

// langOf picks the language: the form field or query parameter "lang", Persian unless it says "en".
func langOf(r *http.Request) string {
	if r.URL.Query().Get("lang") == "en" {
		return "en"
	}
	if r.Method == http.MethodPost && r.MultipartForm != nil {
		if v := r.MultipartForm.Value["lang"]; len(v) > 0 && v[0] == "en" {
			return "en"
		}
	}
	return "fa"
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, p *page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var b strings.Builder
	if err := h.tmpl.ExecuteTemplate(&b, "page.html", p); err != nil {
		ref := h.report(r, err)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "The page could not be shown. Reference: "+ref+"\n")
		return
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, b.String())
	}
}

// report hands err to OnError with a fresh opaque reference and returns the reference.
func (h *Handler) report(r *http.Request, err error) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	ref := hex.EncodeToString(b[:])
	if h.cfg.OnError != nil {
		h.cfg.OnError(r, ref, err)
	}
	return ref
}
