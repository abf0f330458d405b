package pades

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// persianBundle is an rxgen prescription with Persian patient name, medicines and dosages.
func persianBundle(t *testing.T, ph rxgen.Physician) ([]byte, []string) {
	t.Helper()
	raw, err := rxgen.New(7).Prescription(ph)
	if err != nil {
		t.Fatal(err)
	}
	var b map[string]any
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	b["timestamp"] = "2026-12-03T08:30:00Z"
	meds := []struct{ name, dose string }{
		{"آموکسی‌سیلین ۵۰۰ میلی‌گرم کپسول", "هر ۸ ساعت یک کپسول، به مدت ۷ روز"},
		{"کلاریترومایسین ۲۵۰ میلی‌گرم قرص", "هر ۱۲ ساعت یک قرص"},
		{"Paracetamol 500 mg tablet", "در صورت درد، هر ۶ ساعت یک قرص؛ بیش از چهار قرص در روز مصرف نشود و در صورت ادامهٔ تب بیش از سه روز یا بروز حساسیت پوستی، مصرف را قطع کرده و به پزشک مراجعه کنید"},
	}
	var entries []any
	var tmpl []byte
	for _, e := range b["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		switch r["resourceType"] {
		case "Patient":
			r["name"] = []any{map[string]any{"family": "کاظمی", "given": []any{"لاله"}}}
			r["birthDate"] = "1990-03-21"
		case "Practitioner":
			r["name"] = []any{map[string]any{"family": "Someone Else", "given": []any{"Not"}}} // never printed
		case "MedicationRequest":
			tmpl, _ = json.Marshal(e)
			continue
		}
		entries = append(entries, e)
	}
	for _, m := range meds {
		var e map[string]any
		json.Unmarshal(tmpl, &e)
		r := e["resource"].(map[string]any)
		r["medicationCodeableConcept"].(map[string]any)["text"] = m.name
		r["dosageInstruction"] = []any{map[string]any{"text": m.dose}}
		entries = append(entries, e)
	}
	b["entry"] = entries
	out, _ := json.Marshal(b)
	want := []string{"لاله کاظمی"}
	for _, m := range meds {
		want = append(want, m.name, m.dose)
	}
	return out, want
}

// normalise makes extracted and source text comparable: compatibility forms (Arabic presentation forms) to
// their letters (NFKC), Arabic yeh and kaf to the Persian letters, zero-width non-joiners, the bidi embedding
// marks pdftotext writes around runs, whitespace and punctuation dropped (pdftotext moves a colon or a
// parenthesis next to a number to the other side of it in right-to-left lines, and writes parentheses
// mirrored).
func normalise(s string) string {
	s = norm.NFKC.String(s)
	s = strings.NewReplacer("ي", "ی", "ى", "ی", "ك", "ک", "\u200c", "", "\u200f", "", "\u200e", "",
		"\u202a", "", "\u202b", "", "\u202c", "", "\u202d", "", "\u202e", "", "\u2066", "", "\u2067", "", "\u2068", "", "\u2069", "").Replace(s)
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || unicode.IsPunct(r) {
			return -1
		}
		return r
	}, s)
}

func TestRenderPersian(t *testing.T) {
	p, err := testpki.New(time.Now().UTC())
	if err != nil {
		t.Fatal(err)
	}
	ph := rxgen.New(7).Physician()
	doc, err := p.Issue(testpki.PhysicianSigning, testpki.LeafOptions{CommonName: "دکتر مریم احمدی", NationalCode: ph.NationalCode, CouncilNumber: ph.CouncilNumber, Profession: "داخلی"})
	if err != nil {
		t.Fatal(err)
	}
	bundle, want := persianBundle(t, ph)
	pdf, err := Render(bundle, doc.Cert)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, "دکتر مریم احمدی", ph.CouncilNumber, "۱۲ آذر ۱۴۰۵", "December 3, 2026", "بیمار", "داروها", "امضا را بررسی کنید")
	dir := t.TempDir()
	f := filepath.Join(dir, "rx.pdf")
	os.WriteFile(f, pdf, 0o644)

	out, err := exec.Command(tool(t, "pdftotext"), "-enc", "UTF-8", f, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v\n%s", err, out)
	}
	got := normalise(string(out))
	for _, w := range want {
		if !strings.Contains(got, normalise(w)) {
			t.Errorf("pdftotext lost %q\n%s", w, out)
		}
	}
	if strings.Contains(string(out), "Someone Else") {
		t.Error("the prescriber was printed from the prescription data, not the certificate")
	}
	if strings.Contains(string(out), "?") {
		t.Errorf("replacement characters in the text:\n%s", out)
	}
	// The fonts are embedded (pdffonts: emb yes, with ToUnicode).
	fonts, err := exec.Command(tool(t, "pdffonts"), f).CombinedOutput()
	if err != nil || !strings.Contains(string(fonts), "NotoNaskhArabic") || strings.Contains(string(fonts), " no  ") {
		t.Fatalf("pdffonts: %v\n%s", err, fonts)
	}
	qpdfCheck(t, pdf)
	if len(pdf) > 200<<10 {
		t.Errorf("printout is %d bytes: the fonts are not subset", len(pdf))
	}

	png := filepath.Join(dir, "page")
	if out, err := exec.Command(tool(t, "pdftoppm"), "-png", "-r", "110", "-singlefile", f, png).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v\n%s", err, out)
	}
	if st, err := os.Stat(png + ".png"); err != nil || st.Size() < 10<<10 {
		t.Fatalf("pdftoppm made no page image: %v", err)
	}
	if os.Getenv("MOHR_UPDATE_DOCS") == "1" {
		img, _ := os.ReadFile(png + ".png")
		os.WriteFile(filepath.Join("..", "..", "docs", "img", "prescription.png"), img, 0o644)
		os.WriteFile(filepath.Join("..", "..", "docs", "img", "prescription.pdf"), pdf, 0o644)
	}
}

func TestRenderRefusesOtherPrescriber(t *testing.T) {
	p, _ := testpki.New(time.Now().UTC())
	ph := rxgen.New(7).Physician()
	other, _ := p.Issue(testpki.PhysicianSigning, testpki.LeafOptions{CommonName: "دکتر دیگر", NationalCode: ph.NationalCode, CouncilNumber: "99999"})
	bundle, _ := persianBundle(t, ph)
	if _, err := Render(bundle, other.Cert); !errors.Is(err, ErrPrescriberMismatch) {
		t.Fatalf("another physician's certificate: %v", err)
	}
	tsaCert, _ := p.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "TSA"})
	if _, err := Render(bundle, tsaCert.Cert); err == nil {
		t.Fatal("rendered with a certificate that names no prescriber")
	}
}

// TestDateFa: the issue date is the day in Iran (UTC+03:30), in both calendars.
func TestDateFa(t *testing.T) {
	for _, c := range []struct{ utc, want string }{
		{"2026-12-03T08:30:00Z", "۱۲ آذر ۱۴۰۵ خورشیدی (December 3, 2026)"},
		{"2026-12-03T21:00:00Z", "۱۳ آذر ۱۴۰۵ خورشیدی (December 4, 2026)"}, // 00:30 in Tehran
		{"2026-03-20T21:00:00Z", "۱ فروردین ۱۴۰۵ خورشیدی (March 21, 2026)"},
	} {
		tm, _ := time.Parse(time.RFC3339, c.utc)
		if got := dateFa(tm.In(tehran)); got != c.want {
			t.Errorf("%s: %s, want %s", c.utc, got, c.want)
		}
	}
}
