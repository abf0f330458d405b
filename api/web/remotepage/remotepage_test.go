package remotepage

import (
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestTexts: every text the template and the script name exists in Persian and in English, and every error
// key the calls answer has a message.
func TestTexts(t *testing.T) {
	tmpl, _ := os.ReadFile("templates/page.html")
	js, _ := os.ReadFile("static/remote.js")
	go_, _ := os.ReadFile("remotepage.go")
	var keys []string
	for _, m := range regexp.MustCompile(`index \.T "([^"]+)"`).FindAllStringSubmatch(string(tmpl), -1) {
		keys = append(keys, m[1])
	}
	for _, m := range regexp.MustCompile(`say\("([a-z-]+)"`).FindAllStringSubmatch(string(js), -1) {
		keys = append(keys, "m."+m[1])
	}
	for _, m := range regexp.MustCompile(`writeErr\(w, http\.Status\w+, (?:what\+)?"([a-z-]+)"\)`).FindAllStringSubmatch(string(go_), -1) {
		if strings.HasPrefix(m[1], "-") {
			keys = append(keys, "m.code"+m[1], "m.request"+m[1])
		} else {
			keys = append(keys, "m."+m[1])
		}
	}
	if len(keys) < 20 {
		t.Fatalf("only %d keys found: the patterns are stale", len(keys))
	}
	for _, k := range keys {
		for _, lang := range []string{"fa", "en"} {
			if texts[lang][k] == "" {
				t.Errorf("no %s text for %q", lang, k)
			}
		}
	}
	for k := range texts["fa"] {
		if texts["en"][k] == "" {
			t.Errorf("%q only in Persian", k)
		}
	}
}

// TestPagesRender: both pages in both languages, direction and language set, the security headers.
func TestPagesRender(t *testing.T) {
	h, err := New(Config{Service: refusingService{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{RegisterPath, `<html lang="fa" dir="rtl">`}, {RegisterPath + "?lang=en", `<html lang="en" dir="ltr">`},
		{ActivatePath, "تأیید با کلید عبور"}, {ActivatePath + "?lang=en", "Approve with passkey"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, c.path, nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("%s: %d, no %q", c.path, rec.Code, c.want)
		}
		if !strings.Contains(rec.Header().Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("%s: CSP %q", c.path, rec.Header().Get("Content-Security-Policy"))
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Prefix+"/nope", nil))
	if rec.Code != 404 {
		t.Errorf("unknown page: %d", rec.Code)
	}
}
