package agent_test

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mohr-hix/mohr/internal/testenv/browser"
	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing/agent"
	"github.com/mohr-hix/mohr/signing/agent/agentcard"
)

var updateShots = flag.Bool("update-screenshots", false, "write the browser screenshots to docs/img")

// pinEnv is an agent whose PIN comes from the PIN page, behind a local API on a loopback listener.
type pinEnv struct {
	*env
	page *agent.PINPage
	base string
	urls chan string
}

func newPINEnv(t *testing.T, mk func(opt envOpt) *env) *pinEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pe := &pinEnv{base: "http://" + ln.Addr().String(), urls: make(chan string, 8)}
	if pe.page, err = agent.NewPINPage(agent.PINPageConfig{BaseURL: pe.base, Open: func(u string) { pe.urls <- u }, Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	pe.env = mk(func(c *agent.Config) { c.PIN = pe.page.Prompt })
	srv, err := agent.NewServer(agent.ServerConfig{Agent: pe.agent, Token: []byte(pe.token), PINPage: pe.page,
		AllowedOrigins: []string{"https://emr.clinic.example"}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	t.Cleanup(hs.Close)
	pe.api = hs // the EMR's calls go to this server
	return pe
}

// batchAsync starts an EMR batch that waits for the PIN; the channel gets the status and body.
func (pe *pinEnv) batchAsync(docs [][]byte) chan [2]any {
	out := make(chan [2]any, 1)
	var ds []map[string]any
	for i, d := range docs {
		ds = append(ds, map[string]any{"id": "rx-" + string(rune('a'+i)), "document": d})
	}
	go func() {
		b, _ := json.Marshal(map[string]any{"documents": ds, "submit": false})
		req, _ := http.NewRequest("POST", pe.api.URL+"/v1/batch", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+pe.token)
		req.Header.Set(agent.ClientHeader, "test-emr")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- [2]any{0, err.Error()}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- [2]any{resp.StatusCode, string(body)}
	}()
	return out
}

func (pe *pinEnv) nextURL(t *testing.T) string {
	t.Helper()
	select {
	case u := <-pe.urls:
		return u
	case <-time.After(20 * time.Second):
		t.Fatal("no PIN entry opened")
	}
	return ""
}

func wait(t *testing.T, ch chan [2]any) (int, string) {
	t.Helper()
	select {
	case r := <-ch:
		return r[0].(int), r[1].(string)
	case <-time.After(30 * time.Second):
		t.Fatal("EMR call did not end")
	}
	return 0, ""
}

func postForm(t *testing.T, u string, form url.Values, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPINPageProtections (soft card): what the page shows, its headers, and the refusals: wrong Host, a
// foreign or missing Origin, a cross-site fetch, a wrong secret, a second use of the same URL.
func TestPINPageProtections(t *testing.T) {
	var card *softCard
	pe := newPINEnv(t, func(opt envOpt) *env {
		return newEnv(t, func(p *testpki.PKI) agent.KeyOpener { card = newSoftCard(t, p); return card.opener() }, opt)
	})
	docs := [][]byte{pe.rx(), pe.rx()}
	done := pe.batchAsync(docs)
	u := pe.nextURL(t)
	// The EMR can ask for the URL with its token.
	resp, b := pe.call("GET", "/v1/pin", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), u) {
		t.Fatalf("GET /v1/pin: %d %s", resp.StatusCode, b)
	}
	r, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(r.Body)
	r.Body.Close()
	for k, want := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"} {
		if r.Header.Get(k) != want {
			t.Errorf("%s = %q", k, r.Header.Get(k))
		}
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "form-action 'self'") {
		t.Errorf("CSP %q", csp)
	}
	if r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("the PIN page allows cross-origin reads")
	}
	if !strings.Contains(string(page), "۲") || !strings.Contains(string(page), "2 prescription(s)") {
		t.Errorf("count not shown")
	}
	sum := agent.PINRequestForTest(docs)
	for _, d := range sum {
		if !strings.Contains(string(page), d.PatientInitials) || !strings.Contains(string(page), d.Medicines[0]) {
			t.Errorf("summary %+v not shown", d)
		}
	}
	good := url.Values{"pin": {goodPIN}, "action": {"sign"}}
	self := "http://" + strings.TrimPrefix(pe.base, "http://")
	for name, hdr := range map[string]map[string]string{
		"no origin":        {},
		"foreign origin":   {"Origin": "http://evil.example"},
		"null origin":      {"Origin": "null"},
		"cross-site fetch": {"Origin": self, "Sec-Fetch-Site": "cross-site"},
		"rebinding host":   {"Origin": "http://evil.example:80", "Host": "evil.example"},
	} {
		if code, body := postForm(t, u, good, hdr); code < 400 || strings.Contains(body, goodPIN) {
			t.Errorf("%s: %d", name, code)
		}
	}
	if code, _ := postForm(t, pe.base+"/pin/not-the-secret", good, map[string]string{"Origin": self}); code != 404 {
		t.Errorf("wrong secret: %d", code)
	}
	card.mu.Lock()
	v := card.verifies
	card.mu.Unlock()
	if v != 0 {
		t.Fatalf("a refused post reached the card (%d VERIFY)", v)
	}
	// The page's own post signs.
	code, body := postForm(t, u, good, map[string]string{"Origin": self, "Sec-Fetch-Site": "same-origin"})
	if code != 200 || !strings.Contains(body, "PIN accepted") || strings.Contains(body, goodPIN) {
		t.Fatalf("own post: %d %s", code, body)
	}
	if code, body := wait(t, done); code != 200 || strings.Count(body, `"status":"signed"`) != 2 {
		t.Fatalf("batch: %d %s", code, body)
	}
	// The URL was for one entry.
	if r, _ := http.Get(u); r.StatusCode != 404 {
		t.Errorf("second GET: %d", r.StatusCode)
	}
	if code, _ := postForm(t, u, good, map[string]string{"Origin": self}); code != 404 {
		t.Errorf("second post: %d", code)
	}
	pe.checkAudit()
}

// TestPINPageInBrowser drives the page in Chromium against the virtual card through the real pcscd: the
// correct PIN signs, a wrong PIN shows the tries the card has left, and a page from another origin can
// neither read the PIN page nor post to it.
func TestPINPageInBrowser(t *testing.T) {
	pe := newPINEnv(t, func(opt envOpt) *env {
		p, err := testpki.New(pkiStart())
		if err != nil {
			t.Fatal(err)
		}
		insertCard(t, p)
		key := &cardKey{o: &agentcard.Opener{URI: cardURI, Intermediates: []*x509.Certificate{p.Intermediate}}}
		return newEnvPKI(t, p, key, opt)
	})
	b := browser.Start(t)
	const pinInput = `#pin`

	// 1. The correct PIN signs the two prescriptions the page showed.
	docs := [][]byte{pe.rx(), pe.rx()}
	done := pe.batchAsync(docs)
	u := pe.nextURL(t)
	b.Do(t, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS(pinInput)))
	text := browser.Get(t, b, chromedp.Text(chromedp.CSS(`main`)))
	for _, d := range agent.PINRequestForTest(docs) {
		if !strings.Contains(text, d.PatientInitials) || !strings.Contains(text, d.Medicines[0]) {
			t.Errorf("page lacks %+v: %q", d, text)
		}
	}
	if !strings.Contains(text, "2 prescription(s)") {
		t.Errorf("count not shown: %q", text)
	}
	// The PIN field is the first stop of the keyboard (autofocus, or the first Tab).
	if focus := browser.Get(t, b, chromedp.Evaluate[string](browser.Focused)); !strings.HasPrefix(focus, "input#pin") {
		b.Do(t, browser.Tab())
		if focus := browser.Get(t, b, chromedp.Evaluate[string](browser.Focused)); !strings.HasPrefix(focus, "input#pin") {
			t.Errorf("focus on %s, want the PIN field", focus)
		}
	}
	pinShot(t, b, "agent-pin-fa")
	// Keyboard only: type the PIN, Tab to "Sign", Enter.
	b.Do(t, chromedp.KeyEvent(goodPIN), browser.Tab(), browser.Enter(), chromedp.WaitVisible(chromedp.CSS(`#result`)))
	if res := browser.Get(t, b, chromedp.Text(chromedp.CSS(`#result`))); !strings.Contains(res, "PIN accepted: signing 2 prescription(s)") {
		t.Errorf("result %q", res)
	}
	pinShot(t, b, "agent-pin-accepted-fa")
	if code, body := wait(t, done); code != 200 || strings.Count(body, `"status":"signed"`) != 2 {
		t.Fatalf("batch: %d %s", code, body)
	}
	b.NoConsoleErrors(t)

	// 2. A wrong PIN: the page says how many tries the card has left, the EMR gets pin_incorrect.
	done = pe.batchAsync([][]byte{pe.rx()})
	u = pe.nextURL(t)
	b.Do(t, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS(pinInput)),
		chromedp.SendKeys(chromedp.CSS(pinInput), "11112222"),
		chromedp.Focus(chromedp.CSS(`button.sign`)), browser.Enter(), chromedp.WaitVisible(chromedp.CSS(`#result`)))
	res := browser.Get(t, b, chromedp.Text(chromedp.CSS(`#result`)))
	if !strings.Contains(res, "Wrong PIN. 2 tries left.") || !strings.Contains(res, "۲ بار دیگر") {
		t.Errorf("wrong PIN result %q", res)
	}
	pinShot(t, b, "agent-pin-wrong-fa")
	if code, body := wait(t, done); code != 403 || !strings.Contains(body, `"retriesLeft":2`) {
		t.Fatalf("wrong PIN batch: %d %s", code, body)
	}
	b.NoConsoleErrorsExcept(t, "status of 403")

	// 3. Another origin (localhost instead of 127.0.0.1, another port) cannot read or post.
	done = pe.batchAsync([][]byte{pe.rx()})
	u = pe.nextURL(t)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, `<!doctype html><title>evil</title><p>hello</p>`)
	}))
	defer evil.Close()
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)
	b.Do(t, chromedp.Navigate(evilURL))
	js, _ := json.Marshal(u)
	read := browser.Get(t, b, chromedp.Evaluate[string](`fetch(`+string(js)+`).then(r => r.text()).then(t => "read " + t.length).catch(e => "blocked")`,
		chromedp.EvalAwaitPromise))
	if read != "blocked" {
		t.Errorf("another origin read the PIN page: %s", read)
	}
	posted := browser.Get(t, b, chromedp.Evaluate[string](`fetch(`+string(js)+`, {method: "POST", mode: "no-cors",
		headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "action=sign&pin=`+goodPIN+`"}).then(r => "sent").catch(e => "refused")`,
		chromedp.EvalAwaitPromise))
	t.Logf("no-cors post from another origin: %s", posted)
	// And a plain form post, which a browser sends cross-origin without asking.
	b.Do(t, chromedp.Evaluate[chromedp.Void](`(function(){var f=document.createElement("form");f.method="POST";f.action=`+string(js)+`;
		var i=document.createElement("input");i.name="pin";i.value="`+goodPIN+`";f.appendChild(i);document.body.appendChild(f);f.submit();})()`),
		chromedp.Sleep(500*time.Millisecond), chromedp.WaitReady(chromedp.CSS(`body`)))
	body := browser.Get(t, b, chromedp.Text(chromedp.CSS(`body`)))
	if !strings.Contains(body, "origin_not_allowed") {
		t.Errorf("cross-origin form post answered %q", body)
	}
	// Nothing reached the card: the entry still waits, and the physician can cancel it on the real page.
	if _, ok := pe.page.URL(); !ok {
		t.Fatal("the PIN entry was consumed by another origin")
	}
	b.Do(t, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS(`button.cancel`)), chromedp.Click(chromedp.CSS(`button.cancel`)),
		chromedp.WaitVisible(chromedp.CSS(`#result`)))
	if code, body := wait(t, done); code != 409 || !strings.Contains(body, "pin_cancelled") {
		t.Fatalf("cancelled batch: %d %s", code, body)
	}
	pe.checkAudit()
}

func pinShot(t *testing.T, b *browser.Browser, name string) {
	t.Helper()
	img := browser.Get(t, b, chromedp.FullScreenshot(100))
	dir := t.TempDir()
	if *updateShots {
		dir = filepath.Join("..", "..", "docs", "img")
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), img, 0o644); err != nil {
		t.Fatal(err)
	}
}
