package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
)

//go:embed pinpage.html pinpage.css
var pinFS embed.FS

var pinTmpl = template.Must(template.New("").Funcs(template.FuncMap{"fa": faDigits}).ParseFS(pinFS, "pinpage.html"))

// pinPrefix is where the PIN page lives on the agent's loopback listener.
const pinPrefix = "/pin/"

// PINPage is a PIN entry for the physician at a desktop: a page on the agent's loopback listener that shows
// what is about to be signed (how many prescriptions, the patients' initials, the medicines) and takes the
// card's PIN. Use its Prompt as Config.PIN and give it to ServerConfig.PINPage. The terminal prompt stays
// for headless use.
//
// Each PIN entry gets a fresh random secret in the page's URL (pinPrefix + secret), so only whoever the agent
// hands the URL to (the EMR through GET /v1/pin, or the browser the agent opens) can reach it. The page is
// served only to requests addressed to the loopback host (DNS rebinding), its form is accepted only from
// the page's own origin (Origin and Sec-Fetch-Site), it cannot be framed, is never cached and sends its
// URL as referrer to no other origin. The PIN is read from the form body into a byte slice that is handed to the agent, which
// presents it to the card once (VERIFY) and wipes it; the page keeps, logs and echoes none of it. A secret
// is good for one entry and ends with it.
type PINPage struct {
	cfg PINPageConfig

	mu  sync.Mutex
	cur *pinEntry
}

// PINPageConfig configures a PINPage.
type PINPageConfig struct {
	// BaseURL is the agent's own address as the browser reaches it, e.g. "http://127.0.0.1:7433".
	BaseURL string
	// Open, if set, is called with the page's URL when a PIN is needed (to open a browser, or to tell the
	// user). It must not block.
	Open func(url string)
	// Timeout is how long a PIN entry waits for the physician; 2 minutes when zero.
	Timeout time.Duration
}

type pinEntry struct {
	secretH [32]byte
	url     string
	prompt  string
	req     *PINRequest
	pin     chan []byte
	cancel  chan struct{}
	state   int // pinWaiting, pinSent, pinDone
}

const (
	pinWaiting = iota
	pinSent
	pinDone
)

// NewPINPage returns a PIN page for the agent at cfg.BaseURL.
func NewPINPage(cfg PINPageConfig) (*PINPage, error) {
	if !strings.HasPrefix(cfg.BaseURL, "http://") {
		return nil, errors.New("agent: PIN page needs the agent's http:// base URL")
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	return &PINPage{cfg: cfg}, nil
}

// Prompt is a keys.PINFunc: it opens a PIN entry, waits until the physician submits the page's form (or
// cancels, or the time is up, or ctx ends) and returns the PIN. The caller owns and wipes the returned slice.
func (p *PINPage) Prompt(ctx context.Context, prompt string) ([]byte, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	secret := base64.RawURLEncoding.EncodeToString(raw[:])
	e := &pinEntry{secretH: sha256.Sum256([]byte(secret)), url: p.cfg.BaseURL + pinPrefix + secret, prompt: prompt,
		pin: make(chan []byte, 1), cancel: make(chan struct{})}
	e.req, _ = PINRequestFrom(ctx)
	p.mu.Lock()
	if p.cur != nil && p.cur.state != pinDone {
		p.mu.Unlock()
		return nil, ErrSessionActive
	}
	p.cur = e
	p.mu.Unlock()
	if p.cfg.Open != nil {
		p.cfg.Open(e.url)
	}
	t := time.NewTimer(p.cfg.Timeout)
	defer t.Stop()
	select {
	case pin := <-e.pin:
		return pin, nil
	case <-e.cancel:
	case <-t.C:
	case <-ctx.Done():
	}
	p.finish(e)
	return nil, ErrPINCancelled
}

// URL returns the URL of the PIN entry waiting for the physician, if any.
func (p *PINPage) URL() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || p.cur.state != pinWaiting {
		return "", false
	}
	return p.cur.url, true
}

func (p *PINPage) finish(e *pinEntry) {
	p.mu.Lock()
	e.state = pinDone
	if p.cur == e {
		p.cur = nil
	}
	p.mu.Unlock()
}

// entry returns the open entry whose secret is secret (compared in constant time over SHA-256 digests).
func (p *PINPage) entry(secret string) *pinEntry {
	h := sha256.Sum256([]byte(secret))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil || p.cur.state == pinDone || subtle.ConstantTimeCompare(h[:], p.cur.secretH[:]) != 1 {
		return nil
	}
	return p.cur
}

// pinView is what the page shows.
type pinView struct {
	Signer      string
	Count       int
	Session     bool
	MaxSig      int
	Hours       string
	Docs        []DocumentSummary
	More        int
	Action      string
	Done        string // "ok", "wrong", "blocked", "cancelled", "error", "gone"
	RetriesLeft int
	HasRetries  bool
}

func pinHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: the secret URL still never goes to another origin, and the browser keeps
	// sending the page's real Origin on its own form post (under no-referrer it sends "Origin: null").
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// serve handles everything under pinPrefix. The server has checked the Host header already.
func (p *PINPage) serve(w http.ResponseWriter, r *http.Request) {
	pinHeaders(w.Header())
	rest := strings.TrimPrefix(r.URL.Path, pinPrefix)
	if rest == "pinpage.css" && r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		b, _ := pinFS.ReadFile("pinpage.css")
		w.Write(b)
		return
	}
	e := p.entry(rest)
	if e == nil {
		p.render(w, http.StatusNotFound, pinView{Done: "gone"})
		return
	}
	switch r.Method {
	case http.MethodGet:
		p.mu.Lock()
		waiting := e.state == pinWaiting
		p.mu.Unlock()
		if !waiting {
			p.render(w, http.StatusNotFound, pinView{Done: "gone"})
			return
		}
		p.render(w, http.StatusOK, p.view(e))
	case http.MethodPost:
		p.submit(w, r, e)
	default:
		w.Header().Set("Allow", "GET, POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// sameOrigin: a form post must come from the page itself. Browsers send Origin on every POST; a missing one
// is refused too (only a non-browser client would omit it, and it has no business here).
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" {
		return false
	}
	return r.Header.Get("Origin") == "http://"+r.Host
}

func (p *PINPage) submit(w http.ResponseWriter, r *http.Request, e *pinEntry) {
	if !sameOrigin(r) {
		writeProblem(w, http.StatusForbidden, "origin_not_allowed", "the PIN form is accepted only from its own page", nil)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		writeProblem(w, http.StatusUnsupportedMediaType, "form_required", "the PIN form is application/x-www-form-urlencoded", nil)
		return
	}
	body := make([]byte, 0, 256)
	buf := bytes.NewBuffer(body)
	_, err := io.Copy(buf, io.LimitReader(r.Body, 512))
	body = buf.Bytes()
	defer clear(body)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "bad_request", "the form could not be read", nil)
		return
	}
	action, pin := formFields(body)
	p.mu.Lock()
	if e.state != pinWaiting {
		p.mu.Unlock()
		clear(pin)
		p.render(w, http.StatusConflict, pinView{Done: "gone"})
		return
	}
	if action == "cancel" {
		e.state = pinDone
		p.mu.Unlock()
		clear(pin)
		close(e.cancel)
		p.render(w, http.StatusOK, pinView{Done: "cancelled"})
		return
	}
	if len(pin) == 0 || len(pin) > maxPIN {
		p.mu.Unlock()
		clear(pin)
		v := p.view(e)
		v.Done = "empty"
		p.render(w, http.StatusUnprocessableEntity, v)
		return
	}
	e.state = pinSent
	p.mu.Unlock()
	e.pin <- pin // the agent presents it to the card once and wipes it
	pin = nil
	v := pinView{Done: "ok"}
	if e.req != nil {
		v.Count, v.Session = len(e.req.Documents), len(e.req.Documents) == 0
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		err := e.req.Outcome(ctx)
		cancel()
		var pe *PINError
		switch {
		case err == nil:
		case errors.As(err, &pe) && pe.Retries == 0:
			v.Done, v.RetriesLeft, v.HasRetries = "blocked", 0, true
		case errors.As(err, &pe):
			v.Done, v.RetriesLeft, v.HasRetries = "wrong", pe.Retries, pe.Retries > 0
		default:
			v.Done = "error"
		}
	}
	p.finish(e)
	status := http.StatusOK
	if v.Done != "ok" {
		status = http.StatusForbidden
	}
	p.render(w, status, v)
}

// formFields reads "action" and "pin" from an urlencoded body. The PIN is decoded into a new byte slice
// (never a string, which could not be wiped).
func formFields(body []byte) (action string, pin []byte) {
	for _, kv := range bytes.Split(body, []byte("&")) {
		k, v, _ := bytes.Cut(kv, []byte("="))
		switch string(k) {
		case "action":
			action = string(v)
		case "pin":
			clear(pin)
			pin = make([]byte, 0, len(v))
			for i := 0; i < len(v); i++ {
				c := v[i]
				switch {
				case c == '+':
					c = ' '
				case c == '%' && i+2 < len(v) && unhex(v[i+1]) >= 0 && unhex(v[i+2]) >= 0:
					c = byte(unhex(v[i+1])<<4 | unhex(v[i+2]))
					i += 2
				}
				pin = append(pin, c)
			}
			pin = bytes.TrimSpace(pin)
		}
	}
	return action, pin
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

func (p *PINPage) view(e *pinEntry) pinView {
	v := pinView{Action: pinPrefix}
	if e.req == nil {
		return v
	}
	v.Signer = e.req.Signer
	v.Count = len(e.req.Documents)
	v.Session = v.Count == 0
	v.MaxSig = e.req.MaxSignatures
	v.Hours = fmt.Sprintf("%g", e.req.Duration.Round(time.Minute).Hours())
	v.Docs = e.req.Documents
	if len(v.Docs) > 25 {
		v.More, v.Docs = len(v.Docs)-25, v.Docs[:25]
	}
	return v
}

func (p *PINPage) render(w http.ResponseWriter, status int, v pinView) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var b bytes.Buffer
	if err := pinTmpl.ExecuteTemplate(&b, "pinpage.html", v); err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// faDigits writes an integer with Persian digits.
func faDigits(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			c = '۰' + (c - '0')
		}
		b.WriteRune(c)
	}
	return b.String()
}
