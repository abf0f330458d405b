package web

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/internal/testenv/browser"
	"github.com/mohr-hix/mohr/signing/offline"
	"github.com/mohr-hix/mohr/signing/pades"
)

// printedPage renders the prescription with the QR code of text on it (signing/pades) and rasterises the page
// at 150 dpi with pdftoppm, as a scanner would: the PNG a pharmacist uploads.
func printedPage(t *testing.T, f *qrFixture, text string) string {
	t.Helper()
	q, err := offline.NewQR(text)
	if err != nil {
		t.Fatal(err)
	}
	pdf, err := pades.RenderQR(bundle(t, 21), f.doc.Cert, q.Modules)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pdfPath, pngPath := filepath.Join(dir, "rx.pdf"), filepath.Join(dir, "page")
	if err := os.WriteFile(pdfPath, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(testenv.Tool(t, "pdftoppm"), "-png", "-r", "200", "-singlefile", pdfPath, pngPath).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v\n%s", err, out)
	}
	return pngPath + ".png"
}

// uploadQR picks the image in the shown QR form and submits it.
func uploadQR(t *testing.T, b *browser.Browser, path string) {
	t.Helper()
	b.Do(t,
		chromedp.SetUploadFiles(chromedp.CSS(shown+` form.qr input[type=file]`), []string{path}),
		chromedp.Click(chromedp.CSS(shown+` form.qr button[type=submit]`)),
		// The answer is a verdict or a message (for example "no QR code found"): wait for either, then say which.
		chromedp.WaitVisible(chromedp.CSS(shown+` .verdict h2, `+shown+` .msg`)),
	)
	if msg := browser.Get(t, b, chromedp.Evaluate[string](`(document.querySelector(".view:not([hidden]) .msg")||{}).textContent||""`)); strings.TrimSpace(msg) != "" {
		t.Fatalf("upload of %s: the page answered a message, not a verdict: %s", path, strings.TrimSpace(msg))
	}
}

// TestBrowserQR: in Chromium, a pharmacist uploads the scan of a printed prescription (pdftoppm of the
// rendered page): the QR code is decoded on the server and checked offline, and the page says so, with the
// bundle's age, in Persian and English. The scan of a page whose code was tampered with is refused; a pasted
// code of a revoked physician is undetermined.
func TestBrowserQR(t *testing.T) {
	f := newQRFixture(t)
	srv := f.server(t)
	b := browser.Start(t)
	verdict := func() string {
		return browser.Get(t, b, chromedp.Evaluate[string](`document.querySelector(".view:not([hidden]) .verdict h2").dataset.verdict`))
	}
	check := func(lang string, words ...string) {
		t.Helper()
		text := shownText(t, b)
		for _, w := range words {
			if !strings.Contains(text, w) {
				t.Errorf("%s: %q not shown", lang, w)
			}
		}
	}

	b.Do(t, chromedp.Navigate(srv.URL+Prefix))
	uploadQR(t, b, printedPage(t, f, f.qr["passed"]))
	if v := verdict(); v != "passed" {
		t.Fatalf("printed page: verdict %q: %s", v, shownText(t, b))
	}
	check("fa", "معتبر: امضای این نسخه تأیید شد", "بررسی برون‌خط", "این نتیجهٔ یک بررسی برون‌خط است", "عمر بستهٔ اعتماد", "۳ ساعت و ۰ دقیقه",
		"J01CA04", dosageFa, "۲۱ کپسول", "۱۲۳۴۵۶", "بررسی نشد (بررسی برون‌خط")
	shot(t, b, "verify-qr-passed-fa")
	b.Do(t, chromedp.Click(chromedp.CSS(shown+` a.lang`)), chromedp.WaitVisible(chromedp.CSS(`.view[lang=en] .verdict h2`)))
	check("en", "Valid: the prescription's signature is confirmed", "Offline check", "This is the result of an offline check",
		"Age of the trust bundle", "3 h 0 min", "J01CA04", "123456", "Revocations after the bundle's issue")
	shot(t, b, "verify-qr-passed-en")

	b.Do(t, chromedp.Navigate(srv.URL+Prefix))
	uploadQR(t, b, printedPage(t, f, f.qr["tampered"]))
	if v := verdict(); v != "failed" {
		t.Fatalf("tampered page: verdict %q: %s", v, shownText(t, b))
	}
	check("fa", "نامعتبر: امضای این نسخه رد شد", "بررسی برون‌خط")
	shot(t, b, "verify-qr-tampered-fa")

	b.Do(t, chromedp.Navigate(srv.URL+Prefix+"?lang=en"),
		chromedp.SetValue(chromedp.CSS(shown+` form.qr textarea`), f.qr["revoked"]),
		chromedp.Click(chromedp.CSS(shown+` form.qr button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(shown+` .verdict h2`)))
	if v := verdict(); v != "undetermined" {
		t.Fatalf("pasted revoked code: verdict %q", v)
	}
	check("en", "is revoked (it is in the trust bundle's revocation list)", "Offline check")
	b.NoConsoleErrors(t)
}
