package web

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/internal/testpki"
)

func post(t *testing.T, url, name string, data []byte, lang string) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if lang != "" {
		_ = mw.WriteField("lang", lang)
	}
	if name != "" {
		fw, _ := mw.CreateFormFile("file", name)
		fw.Write(data)
	}
	mw.Close()
	resp, err := http.Post(url+Prefix, mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// visible returns the text of the page's first (shown) view, without tags.
func visible(page string) string {
	i := strings.Index(page, `class="view"`)
	j := strings.Index(page[i+10:], `class="view"`)
	if j > 0 {
		page = page[i : i+10+j]
	}
	return html.UnescapeString(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(page, " "))
}

func TestResults(t *testing.T) {
	f := newFixture(t)
	seen := map[string]int{}
	var mu sync.Mutex
	f.h.Observe(func(ind string) { mu.Lock(); seen[ind]++; mu.Unlock() })
	t.Cleanup(func() {
		if seen["TOTAL_PASSED"] != 4 || seen["TOTAL_FAILED"] != 2 || seen["INDETERMINATE"] != 2 {
			t.Errorf("observed %v", seen)
		}
	})
	srv := f.server(t)
	for _, tc := range []struct {
		name    string
		file    []byte
		verdict string
		fa, en  []string
	}{
		{"passed", f.pass, "passed", []string{"معتبر: امضای این نسخه تأیید شد", doctorFa, "۱۲۳۴۵۶", patientFa, medicineName, dosageFa,
			"۱۲ آذر ۱۴۰۵", "۳ دسامبر ۲۰۲۶", "بله، عضو فعال نظام پزشکی بوده است", "مهر زمانی معتبر", "۲۱ کپسول"},
			[]string{"Valid: the prescription's signature is confirmed", doctorFa, "123456", "12 Azar 1405", "3 December 2026", "Yes, in good standing"}},
		{"failed", f.fail, "failed", []string{"نامعتبر: امضای این نسخه رد شد", "محتوای نسخه پس از امضا تغییر کرده است", "Dr. Ali Rezaei", medicineName,
			"امضا این محتوا را تأیید نمی‌کند"},
			[]string{"Not valid: the prescription's signature failed", "changed after it was signed", "HASH_FAILURE"}},
		{"pdf passed", f.signedPDF, "passed", []string{"معتبر: امضای این نسخه تأیید شد", doctorFa, "متن نسخه در خود فایل PDF است"},
			[]string{"Valid: the prescription's signature is confirmed", "The prescription's text is in the PDF itself", "Yes, in good standing", "123456"}},
		{"undetermined", f.undetermined, "undetermined", []string{"نامشخص: اعتبار امضا قابل تأیید نیست", "صادرکنندهٔ ناشناخته", "Dr. Ali Rezaei"},
			[]string{"Undetermined: the signature cannot be confirmed yet", "not issued by an authority this service trusts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, lang := range []string{"fa", "en"} {
				status, page := post(t, srv.URL, "rx.p7s", tc.file, lang)
				if status != 200 {
					t.Fatalf("%s: status %d", lang, status)
				}
				if !strings.Contains(page, `data-verdict="`+tc.verdict+`"`) {
					t.Errorf("%s: verdict %s missing", lang, tc.verdict)
				}
				want := tc.fa
				if lang == "en" {
					want = tc.en
				}
				text := visible(page)
				for _, w := range want {
					if !strings.Contains(text, w) {
						t.Errorf("%s: page lacks %q", lang, w)
					}
				}
				// Only a signature that passed lends the registry's name and standing to the signer.
				if tc.verdict != "passed" {
					for _, w := range []string{doctorFa, "بله، عضو فعال", "Yes, in good standing"} {
						if strings.Contains(text, w) {
							t.Errorf("%s: a %s signature shows %q", lang, tc.verdict, w)
						}
					}
				}
				if !strings.Contains(page, `<html lang="`+lang+`" dir="`+dirOf(lang)+`">`) {
					t.Errorf("%s: html lang/dir wrong", lang)
				}
			}
		})
	}
}

// TestSealedReport: the download link carries the exchange's sealed report, which verifies with OpenSSL
// against the test root and holds the verdict shown.
func TestSealedReport(t *testing.T) {
	f := newFixture(t)
	srv := f.server(t)
	_, page := post(t, srv.URL, "rx.p7s", f.pass, "en")
	m := regexp.MustCompile(`href="data:application/pkcs7-mime;base64,([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no sealed report link")
	}
	b64, err := url.PathUnescape(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	openssl := needTool(t, "openssl")
	dir := t.TempDir()
	in, root := filepath.Join(dir, "r.p7s"), filepath.Join(dir, "root.pem")
	os.WriteFile(in, der, 0o600)
	if err := testpki.WriteCerts(root, f.pki.Root); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", in, "-CAfile", root, "-purpose", "any",
		"-attime", "1796292000").Output()
	if err != nil {
		t.Fatalf("openssl cms -verify: %v", err)
	}
	if !bytes.Contains(out, []byte(`"indication":"TOTAL_PASSED"`)) {
		t.Errorf("sealed report content: %s", out)
	}
}

// TestBadInput: each gets a plain-language message, never internal text.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	srv := f.server(t)
	random := make([]byte, 5000)
	rand.Read(random)
	huge := make([]byte, 3<<20)
	for _, tc := range []struct {
		name   string
		file   string
		data   []byte
		status int
		fa, en string
	}{
		{"random", "photo.jpg", random, 422, "این فایل نسخهٔ امضاشده نیست", "This file is not a signed prescription"},
		{"huge", "big.p7s", huge, 413, "این فایل بزرگ‌تر از ۱ مگابایت است", "This file is larger than 1 MB"},
		{"unsigned pdf", "rx.pdf", f.unsignedPDF, 422, "این PDF امضای دیجیتال ندارد", "This PDF has no digital signature"},
		{"empty", "empty.p7s", nil, 400, "فایلی انتخاب نشده است", "No file was chosen"},
		{"no file", "", nil, 400, "فایلی انتخاب نشده است", "No file was chosen"},
		{"pem garbage", "x.p7s", []byte("-----BEGIN PKCS7-----\nAAAA\n-----END PKCS7-----\n"), 422, "این فایل نسخهٔ امضاشده نیست", "This file is not a signed prescription"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, lang := range []string{"fa", "en"} {
				status, page := post(t, srv.URL, tc.file, tc.data, lang)
				if status != tc.status {
					t.Errorf("%s: status %d, want %d", lang, status, tc.status)
				}
				want := tc.fa
				if lang == "en" {
					want = tc.en
				}
				text := visible(page)
				if !strings.Contains(text, want) {
					t.Errorf("%s: page lacks %q", lang, want)
				}
				for _, bad := range []string{"signing:", "pades:", "asn1", "goroutine", "panic", "web:", "x509:", "multipart:"} {
					if strings.Contains(strings.ToLower(page), bad) {
						t.Errorf("%s: page shows internal text %q", lang, bad)
					}
				}
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	f := newFixture(t)
	srv := f.server(t)
	resp, err := http.Get(srv.URL + Prefix + "?lang=en")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	for k, want := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
		"Referrer-Policy": "no-referrer", "Content-Type": "text/html; charset=utf-8"} {
		if h.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, h.Get(k), want)
		}
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	for _, p := range []string{"/static/style.css", "/static/app.js", "/static/fonts/NotoSansArabic-Regular.ttf", "/static/seal.svg"} {
		resp, err := http.Get(srv.URL + Prefix + p)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %v", p, err, resp.Status)
		}
		resp.Body.Close()
	}
	resp, _ = http.Get(srv.URL + Prefix + "/static/../web.go")
	if resp.StatusCode == 200 {
		t.Error("served a file outside static/")
	}
	resp.Body.Close()
}

// TestDuplicateMembers: a prescription whose JSON repeats a member is not shown (two readers could disagree).
func TestDuplicateMembers(t *testing.T) {
	if _, err := parsePrescription([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","name":[{"text":"a"}],"name":[{"text":"b"}]}}]}`)); err != errDuplicateKey {
		t.Errorf("duplicate accepted: %v", err)
	}
	if _, err := parsePrescription([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","name":[{"text":"a"}]}},{"resource":{"resourceType":"Patient","name":[{"text":"b"}]}}]}`)); err != nil {
		t.Errorf("same keys in sibling objects refused: %v", err)
	}
	p, err := parsePrescription(bundle(t, 21))
	if err != nil || p.PatientName != patientFa || len(p.Medicines) != 2 || p.Medicines[0].Quantity != "21 کپسول" {
		t.Errorf("%+v %v", p, err)
	}
}

func TestTextsComplete(t *testing.T) {
	for k := range texts["fa"] {
		if _, ok := texts["en"][k]; !ok {
			t.Errorf("en lacks %q", k)
		}
	}
	for k := range texts["en"] {
		if _, ok := texts["fa"][k]; !ok {
			t.Errorf("fa lacks %q", k)
		}
	}
}

func TestPersianDigits(t *testing.T) {
	if got := num("fa", "No. 0123456789"); got != "No. ۰۱۲۳۴۵۶۷۸۹" {
		t.Error(got)
	}
	if got := num("en", "12"); got != "12" {
		t.Error(got)
	}
}

// needTool finds an outside tool, or fails (MOHR_REQUIRE_SERVICES=1) or skips without it.
func needTool(t testing.TB, name string) string {
	t.Helper()
	return testenv.Tool(t, name)
}
