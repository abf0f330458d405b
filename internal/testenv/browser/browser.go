// Package browser starts the machine's headless Chromium for tests, driven with chromedp, and collects what
// the page writes to its console, so tests can assert there were no errors. It is for tests only.
package browser

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mohr-hix/mohr/internal/testenv"
)

// Path is Debian's Chromium.
const Path = "/usr/bin/chromium"

// Browser is one headless Chromium with a fresh profile and one tab.
type Browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
}

// Start launches Chromium (failing under MOHR_REQUIRE_SERVICES=1, else skipping, when it is missing) and
// stops it when t ends. extra are further allocator options (for example chromedp.Env("HOME=...") to give it
// an NSS database that trusts a test root).
func Start(t testing.TB, extra ...chromedp.ExecAllocatorOption) *Browser {
	t.Helper()
	path := Path
	if _, err := os.Stat(path); err != nil {
		p, err := exec.LookPath("chromium")
		if err != nil {
			testenv.Missing(t, "chromium")
		}
		path = p
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // CI runs as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("font-render-hinting", "none"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	opts = append(opts, extra...)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &Browser{ctx: ctx}
	// The first Run starts the browser; it must not carry a timeout (chromedp.Run's rules).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		cancel()
		cancelA()
		if testenv.Required() {
			t.Fatalf("start chromium: %v", err)
		}
		t.Skipf("start chromium: %v", err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException:
				b.mu.Lock()
				b.errors = append(b.errors, m.String())
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); cancelA() })
	return b
}

// Do runs actions in the tab with a deadline, failing t on error.
func (b *Browser) Do(t testing.TB, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := b.Try(steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// stepTimeout bounds one group of browser actions. It only stops a hung test: on CI's two cores, with other
// packages' race-enabled tests running beside it, one page round trip (a server-side QR decode under -race)
// has taken over 30 s.
const stepTimeout = 3 * time.Minute

// Try runs actions in the tab with a deadline and returns the error.
func (b *Browser) Try(steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// Get runs one action that returns a value.
func Get[T any](t testing.TB, b *Browser, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// Context is the tab's context.
func (b *Browser) Context() context.Context { return b.ctx }

// NoConsoleErrors fails t if the page logged an error, a warning or an exception since the last call.
func (b *Browser) NoConsoleErrors(t testing.TB) {
	t.Helper()
	b.NoConsoleErrorsExcept(t)
}

// NoConsoleErrorsExcept is NoConsoleErrors ignoring messages that contain one of allowed (for example the
// failed-load line Chromium logs for a page answered with a 4xx status on purpose).
func (b *Browser) NoConsoleErrorsExcept(t testing.TB, allowed ...string) {
	t.Helper()
	time.Sleep(100 * time.Millisecond) // let the last events arrive
	b.mu.Lock()
	e := b.errors
	b.errors = nil
	b.mu.Unlock()
next:
	for _, m := range e {
		for _, a := range allowed {
			if strings.Contains(m, a) {
				continue next
			}
		}
		t.Errorf("browser console: %s", m)
	}
}

// Focused describes the focused element as tag#id.class[text].
const Focused = `(function(){var e=document.activeElement;if(!e)return "";` +
	`return e.tagName.toLowerCase()+(e.id?"#"+e.id:"")+(typeof e.className==="string"&&e.className?"."+e.className.split(" ").join("."):"")+"["+(e.textContent||"").trim().slice(0,40)+"]";})()`

// Tab and Enter press the keys.
func Tab() chromedp.Action[chromedp.Void]   { return chromedp.KeyEvent("\t") }
func Enter() chromedp.Action[chromedp.Void] { return chromedp.KeyEvent("\r") }
