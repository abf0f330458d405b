package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/mohr-hix/mohr/internal/jalali"
	"github.com/mohr-hix/mohr/internal/testenv/browser"
)

var updateShots = flag.Bool("update-screenshots", false, "write the browser screenshots to docs/img")

const shown = `.view:not([hidden])`

// shot takes a full-page PNG; with -update-screenshots it goes to docs/img/name.png.
func shot(t *testing.T, b *browser.Browser, name string) {
	t.Helper()
	img := browser.Get(t, b, chromedp.FullScreenshot(100))
	if _, err := png.Decode(bytes.NewReader(img)); err != nil || len(img) < 10000 {
		t.Fatalf("screenshot %s: %v (%d bytes)", name, err, len(img))
	}
	dir := t.TempDir()
	if *updateShots {
		dir = filepath.Join("..", "..", "docs", "img")
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), img, 0o644); err != nil {
		t.Fatal(err)
	}
}

func shownText(t *testing.T, b *browser.Browser) string {
	return browser.Get(t, b, chromedp.Evaluate[string](`document.querySelector(".view:not([hidden])").innerText`))
}

func files(t *testing.T, f *fixture) map[string]string {
	dir := t.TempDir()
	random := make([]byte, 4000)
	rand.Read(random)
	out := map[string]string{}
	for name, b := range map[string][]byte{"passed.p7s": f.pass, "failed.p7s": f.fail, "undetermined.p7s": f.undetermined,
		"signed.pdf": f.signedPDF, "unsigned.pdf": f.unsignedPDF, "photo.jpg": random, "huge.p7s": make([]byte, 3<<20)} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out[name] = p
	}
	return out
}

// upload picks the file in the shown form and submits it by keyboard (Enter on the button).
func upload(t *testing.T, b *browser.Browser, path string) {
	t.Helper()
	b.Do(t,
		chromedp.SetUploadFiles(chromedp.CSS(shown+` input[type=file]`), []string{path}),
		chromedp.Focus(chromedp.CSS(shown+` form.upload button`)),
		browser.Enter(),
		chromedp.Sleep(200*time.Millisecond),
		chromedp.WaitReady(chromedp.CSS(`body`)),
	)
}

// TestBrowserResults uploads a passing, a failing and an undetermined prescription (and a signed PDF) in
// Chromium and checks what a person sees, in Persian and, after the language switch, in English.
func TestBrowserResults(t *testing.T) {
	f := newFixture(t)
	srv := f.server(t)
	b := browser.Start(t)
	fs := files(t, f)
	for _, tc := range []struct {
		file, verdict string
		fa, en        []string
	}{
		{"passed.p7s", "passed", []string{"معتبر: امضای این نسخه تأیید شد", doctorFa, "۱۲۳۴۵۶", "متخصص داخلی", patientFa, medicineName,
			dosageFa, "۲۱ کپسول", "۱۲ آذر ۱۴۰۵", "۳ دسامبر ۲۰۲۶", "بله، عضو فعال نظام پزشکی بوده است", "دریافت گزارش اعتبارسنجی مهرشده"},
			[]string{"Valid: the prescription's signature is confirmed", doctorFa, "123456", medicineName, "12 Azar 1405, 11:30 Tehran time",
				"3 December 2026, 08:00 UTC", "Yes, in good standing", "Download the sealed validation report"}},
		{"failed.p7s", "failed", []string{"نامعتبر: امضای این نسخه رد شد", "محتوای نسخه پس از امضا تغییر کرده است", "Dr. Ali Rezaei", medicineName},
			[]string{"Not valid: the prescription's signature failed", "The prescription was changed after it was signed", "Dr. Ali Rezaei", medicineName}},
		{"undetermined.p7s", "undetermined", []string{"نامشخص: اعتبار امضا قابل تأیید نیست", "صادرکنندهٔ ناشناخته", "Dr. Ali Rezaei", medicineName},
			[]string{"Undetermined: the signature cannot be confirmed yet", "not issued by an authority this service trusts", "Unknown issuer"}},
		{"signed.pdf", "passed", []string{"معتبر: امضای این نسخه تأیید شد", doctorFa, "متن نسخه در خود فایل PDF است"},
			[]string{"Valid: the prescription's signature is confirmed", "The prescription's text is in the PDF itself"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b.Do(t, chromedp.Navigate(srv.URL+Prefix))
			upload(t, b, fs[tc.file])
			b.Do(t, chromedp.WaitVisible(chromedp.CSS(shown+` .verdict h2`)))
			if v := browser.Get(t, b, chromedp.Evaluate[string](`document.querySelector(".view:not([hidden]) .verdict h2").dataset.verdict`)); v != tc.verdict {
				t.Errorf("verdict %q, want %q", v, tc.verdict)
			}
			// The verdict is not colour alone: it has an icon and words.
			if n := browser.Get(t, b, chromedp.Evaluate[int](`document.querySelectorAll(".view:not([hidden]) .verdict svg.ico").length`)); n != 1 {
				t.Errorf("%d verdict icons", n)
			}
			// The focus moved to the verdict, so a screen reader reads it first.
			if got := browser.Get(t, b, chromedp.Evaluate[string](browser.Focused)); !strings.HasPrefix(got, "h2#verdict-fa") {
				t.Errorf("focus on %s", got)
			}
			text := shownText(t, b)
			for _, w := range tc.fa {
				if !strings.Contains(text, w) {
					t.Errorf("fa: %q not shown", w)
				}
			}
			name := "verify-" + strings.TrimSuffix(strings.ReplaceAll(tc.file, ".", "-"), "-p7s")
			shot(t, b, name+"-fa")
			// The language switch keeps the result.
			b.Do(t, chromedp.Click(chromedp.CSS(shown+` a.lang`)), chromedp.WaitVisible(chromedp.CSS(`.view[lang=en] .verdict h2`)))
			if l := browser.Get(t, b, chromedp.Evaluate[string](`document.documentElement.lang+"/"+document.documentElement.dir`)); l != "en/ltr" {
				t.Errorf("after the switch: %s", l)
			}
			text = shownText(t, b)
			for _, w := range tc.en {
				if !strings.Contains(text, w) {
					t.Errorf("en: %q not shown", w)
				}
			}
			if tc.file == "passed.p7s" || tc.file == "failed.p7s" {
				shot(t, b, name+"-en")
			}
			b.NoConsoleErrors(t)
		})
	}
}

// TestBrowserBadInput: a random file, a file too large and a PDF without a signature each get a plain
// message in the page.
func TestBrowserBadInput(t *testing.T) {
	f := newFixture(t)
	srv := f.server(t)
	b := browser.Start(t)
	fs := files(t, f)
	for _, tc := range []struct{ file, fa, en string }{
		{"photo.jpg", "این فایل نسخهٔ امضاشده نیست", "This file is not a signed prescription"},
		{"huge.p7s", "این فایل بزرگ‌تر از ۱ مگابایت است", "This file is larger than 1 MB"},
		{"unsigned.pdf", "این PDF امضای دیجیتال ندارد", "This PDF has no digital signature"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			for _, lang := range []string{"fa", "en"} {
				b.Do(t, chromedp.Navigate(srv.URL+Prefix+"?lang="+lang))
				upload(t, b, fs[tc.file])
				b.Do(t, chromedp.WaitVisible(chromedp.CSS(shown+` .msg`)))
				want := tc.fa
				if lang == "en" {
					want = tc.en
				}
				if text := shownText(t, b); !strings.Contains(text, want) {
					t.Errorf("%s: %q not shown in %q", lang, want, text)
				}
				if tc.file == "photo.jpg" && lang == "fa" {
					shot(t, b, "verify-bad-input-fa")
				}
			}
			// A 413 or 422 answer is logged by Chromium as a failed resource load; that is the page's
			// answer to a bad file, not an error of the page.
			b.NoConsoleErrorsExcept(t, "status of 413", "status of 422")
		})
	}
}

// TestBrowserKeyboard: the form and the result are usable with the keyboard alone, in a sensible order.
func TestBrowserKeyboard(t *testing.T) {
	f := newFixture(t)
	srv := f.server(t)
	b := browser.Start(t)
	fs := files(t, f)
	b.Do(t, chromedp.Navigate(srv.URL+Prefix))
	var order []string
	for i := 0; i < 4; i++ {
		b.Do(t, browser.Tab())
		order = append(order, browser.Get(t, b, chromedp.Evaluate[string](browser.Focused)))
	}
	want := []string{"a.skip", "a.lang", "input#file-fa", "button"}
	for i, w := range want {
		if !strings.HasPrefix(order[i], w) {
			t.Errorf("tab %d: %s, want %s (order %v)", i+1, order[i], w, order)
		}
	}
	// Enter on the skip link moves to the main content; Enter on the language link switches in place.
	b.Do(t, chromedp.Navigate(srv.URL+Prefix), browser.Tab(), browser.Enter())
	if got := browser.Get(t, b, chromedp.Evaluate[string](browser.Focused)); !strings.HasPrefix(got, "main#main-fa") {
		t.Errorf("after the skip link: %s", got)
	}
	b.Do(t, chromedp.Navigate(srv.URL+Prefix), browser.Tab(), browser.Tab(), browser.Enter())
	if l := browser.Get(t, b, chromedp.Evaluate[string](`document.documentElement.lang`)); l != "en" {
		t.Errorf("language link by keyboard: lang %s", l)
	}
	// The file input is reached by Tab (its chooser is the system's dialog; DevTools fills it), then Tab to
	// the button and Enter submits.
	b.Do(t, chromedp.Navigate(srv.URL+Prefix), browser.Tab(), browser.Tab(), browser.Tab(),
		chromedp.SetUploadFiles(chromedp.CSS(`#file-fa`), []string{fs["passed.p7s"]}), browser.Tab(), browser.Enter(),
		chromedp.WaitVisible(chromedp.CSS(shown+` .verdict h2`)))
	// From the verdict, Tab reaches the download button and the technical details.
	var seen []string
	for i := 0; i < 8; i++ {
		b.Do(t, browser.Tab())
		seen = append(seen, browser.Get(t, b, chromedp.Evaluate[string](browser.Focused)))
	}
	joined := strings.Join(seen, " ")
	for _, w := range []string{"a.button.download", "summary", "input#file-fa", "button["} {
		if !strings.Contains(joined, w) {
			t.Errorf("Tab from the verdict never reaches %s: %v", w, seen)
		}
	}
	// Enter on the details' summary opens them.
	b.Do(t, chromedp.Focus(chromedp.CSS(shown+` details.tech summary`)), browser.Enter())
	if open := browser.Get(t, b, chromedp.Evaluate[bool](`document.querySelector(".view:not([hidden]) details.tech").open`)); !open {
		t.Error("details did not open with Enter")
	}
	b.NoConsoleErrors(t)
}

// TestBrowserNoScript: with JavaScript off, the plain form still uploads and the result shows.
func TestBrowserNoScript(t *testing.T) {
	f := newFixture(t)
	srv := f.server(t)
	b := browser.Start(t)
	fs := files(t, f)
	if _, err := chromedp.Call(b.Context(), emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	b.Do(t, chromedp.Navigate(srv.URL+Prefix+"?lang=en"))
	upload(t, b, fs["passed.p7s"])
	b.Do(t, chromedp.WaitVisible(chromedp.CSS(shown+` .verdict h2`)))
	text := browser.Get(t, b, chromedp.Text(chromedp.CSS(shown)))
	if !strings.Contains(text, "Valid: the prescription's signature is confirmed") || !strings.Contains(text, medicineName) {
		t.Errorf("no-script result: %q", text)
	}
}

// TestJalaliAgainstICU checks internal/jalali against Chromium's ICU Persian calendar, an independent
// implementation, on a day every 11 days from 1925 to 2075.
func TestJalaliAgainstICU(t *testing.T) {
	b := browser.Start(t)
	var days []int64
	for d := time.Date(1925, 3, 1, 12, 0, 0, 0, time.UTC); d.Year() < 2075; d = d.AddDate(0, 0, 11) {
		days = append(days, d.UnixMilli())
	}
	ctx, cancel := context.WithTimeout(b.Context(), 3*time.Minute)
	defer cancel()
	js, _ := json.Marshal(days)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(function(days) {
		var f = new Intl.DateTimeFormat("en-u-ca-persian-nu-latn", {year: "numeric", month: "numeric", day: "numeric", timeZone: "UTC"});
		return days.map(function(ms) {
			var p = {}; f.formatToParts(new Date(ms)).forEach(function(x) { p[x.type] = x.value; });
			return parseInt(p.year, 10) + "-" + parseInt(p.month, 10) + "-" + parseInt(p.day, 10);
		});
	})(`+string(js)+`)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(days) {
		t.Fatalf("%d answers for %d days", len(got), len(days))
	}
	for i, ms := range days {
		j, err := jalali.FromTime(time.UnixMilli(ms).UTC())
		if err != nil {
			t.Fatal(err)
		}
		if w := strings.Join([]string{strconv.Itoa(j.Year), strconv.Itoa(j.Month), strconv.Itoa(j.Day)}, "-"); w != got[i] {
			t.Errorf("%s: jalali %s, ICU %s", time.UnixMilli(ms).UTC().Format(time.DateOnly), w, got[i])
		}
	}
	t.Logf("%d days agree with ICU", len(days))
}
