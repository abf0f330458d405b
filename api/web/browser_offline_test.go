package web

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"flag"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/veraison/go-cose"

	"github.com/mohr-hix/mohr/internal/testenv/browser"
	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/offline"
)

var jsMutations = flag.Int("js-mutations", 60, "random COSE mutations TestBrowserOfflineJS compares between the browser and Go")

// clockScript is the browser side of the tests' injected clock: Date reads t0 (the %d) plus the time since
// the document started plus window.__mohrSkew milliseconds. It is injected by DevTools into every document
// of the test's tab; the page itself has no clock hook.
const clockScript = `(function () {
  var D = Date, base = %d, start = D.now();
  function now() { return base + (D.now() - start) + (window.__mohrSkew || 0); }
  class F extends D { constructor(...a) { if (a.length === 0) { super(now()); } else { super(...a); } } static now() { return now(); } }
  window.Date = F;
})();`

// TestOfflineJSDictionary: the static part of the zlib preset dictionary in static/offline.js is
// signing/offline's (Dictionary(issuer) minus the issuer's DER).
func TestOfflineJSDictionary(t *testing.T) {
	js, err := staticFS.ReadFile("static/offline.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)var STATIC_DICT = (.*?);`).FindSubmatch(js)
	if m == nil {
		t.Fatal("no STATIC_DICT in offline.js")
	}
	var got strings.Builder
	for _, lit := range regexp.MustCompile(`"([^"\\]*)"`).FindAllSubmatch(m[1], -1) {
		got.Write(lit[1])
	}
	f := newFixture(t)
	d := offline.Dictionary(f.pki.Intermediate)
	if want := string(d[:len(d)-len(f.pki.Intermediate.Raw)]); got.String() != want {
		t.Fatalf("offline.js STATIC_DICT differs from signing/offline:\n%q\n%q", got.String(), want)
	}
}

// jsReport is what MohrOffline.check resolves to.
type jsReport struct {
	Indication    string `json:"indication"`
	SubIndication string `json:"subIndication"`
	Reason        string `json:"reason"`
}

// TestBrowserOfflineJS: the browser check of static/offline.js in headless Chromium. A bundle sealed by
// another key is refused and not cached; the Ministry's bundle is fetched once, its seal verified with
// WebCrypto against the key served with the page, and cached; a reload uses the cache; a tampered cache is
// refused and replaced. Then the server is stopped and every check runs with no network: the valid code
// passes, the tampered, revoked, expired-certificate and unknown-CA codes are refused, and for these and for
// 60 one-character mutations the browser's indication and sub-indication equal signing/offline.Verify's
// (what `mohr qr verify --at` prints) at the same time. Moving the browser's clock past the bundle's next
// update refuses the bundle with the same message as the Go verifier.
func TestBrowserOfflineJS(t *testing.T) {
	f := newQRFixture(t)
	var fetches atomic.Int32
	var mu sync.Mutex
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serving := makeBundle(t, f.pki, other, t0.Add(-time.Hour)) // first: a bundle the pinned key did not seal
	mux := http.NewServeMux()
	mux.Handle(Prefix, f.h)
	mux.Handle(Prefix+"/", f.h)
	mux.HandleFunc("/trust-bundle", func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		mu.Lock()
		b := serving
		mu.Unlock()
		w.Header().Set("Content-Type", `application/cose; cose-type="cose-sign1"`)
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := browser.Start(t)
	if _, err := chromedp.Call(b.Context(), cdppage.AddScriptToEvaluateOnNewDocument,
		cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: fmt.Sprintf(clockScript, t0.UnixMilli())}); err != nil {
		t.Fatal(err)
	}
	box := shown + ` [data-bcheck]`
	state := func() string {
		return browser.Get(t, b, chromedp.Evaluate[string](`document.querySelector("`+box+`").dataset.state || ""`))
	}
	status := func() string { return browser.Get(t, b, chromedp.Text(chromedp.CSS(box+` [data-bstatus]`))) }
	waitState := func(want string) {
		t.Helper()
		if err := b.Try(chromedp.WaitVisible(chromedp.CSS(box + `[data-state=` + want + `]`))); err != nil {
			t.Fatalf("state %q, want %q: %v; status %q", state(), want, err, status())
		}
	}
	cached := func() string {
		return browser.Get(t, b, chromedp.Evaluate[string](`localStorage.getItem(MohrOffline.cacheKey) || ""`))
	}

	// 1. A bundle sealed by another key: refused, nothing cached.
	b.Do(t, chromedp.Navigate(srv.URL+Prefix+"?lang=en"))
	waitState("refused")
	if s := status(); !strings.Contains(s, "not signed by the pinned seal key") || cached() != "" {
		t.Fatalf("bundle of another key: %q, cached %d bytes", s, len(cached()))
	}
	// 2. The Ministry's bundle: fetched, verified, cached, with its age.
	mu.Lock()
	serving = f.bundle
	mu.Unlock()
	b.Do(t, chromedp.Navigate(srv.URL+Prefix+"?lang=en"))
	waitState("ready")
	if s := status(); !strings.Contains(s, "3 h 0 min old") || !strings.Contains(s, "1 revoked") || cached() == "" || fetches.Load() != 2 {
		t.Fatalf("bundle: %q, %d fetches", s, fetches.Load())
	}
	// 3. A reload uses the cache.
	b.Do(t, chromedp.Navigate(srv.URL+Prefix))
	waitState("ready")
	if fetches.Load() != 2 {
		t.Fatalf("reload fetched the bundle again (%d fetches)", fetches.Load())
	}
	// 4. A tampered cache (one byte of the bundle changed in localStorage) is refused and fetched anew.
	b.Do(t, chromedp.Evaluate[chromedp.Void](`(function () {
		var c = JSON.parse(localStorage.getItem(MohrOffline.cacheKey)), s = atob(c.bundle), i = s.length >> 1;
		c.bundle = btoa(s.slice(0, i) + String.fromCharCode(s.charCodeAt(i) ^ 1) + s.slice(i + 1));
		localStorage.setItem(MohrOffline.cacheKey, JSON.stringify(c));
	})()`))
	b.Do(t, chromedp.Navigate(srv.URL+Prefix+"?lang=en"))
	waitState("ready")
	if fetches.Load() != 3 {
		t.Fatalf("tampered cache not replaced (%d fetches)", fetches.Load())
	}

	// 5. No network from here on.
	srv.Close()
	bundle, err := offline.OpenBundle(f.bundle, f.seal.Public(), t0)
	if err != nil {
		t.Fatal(err)
	}
	check := func(text string) jsReport {
		t.Helper()
		b.Do(t, chromedp.SetValue(chromedp.CSS(shown+` form.qr textarea`), text))
		ctx, cancel := context.WithTimeout(b.Context(), 3*time.Minute)
		defer cancel()
		r, err := chromedp.Run(ctx, chromedp.Evaluate[jsReport](`MohrOffline.check(document.querySelector("`+box+`"))`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("MohrOffline.check: %v", err)
		}
		return r
	}
	seen := map[string]int{}
	readerDiffs := 0
	certStep := map[string]bool{"NO_SIGNING_CERTIFICATE_FOUND": true, "CRYPTO_CONSTRAINTS_FAILURE": true, "SIG_CRYPTO_FAILURE": true}
	same := func(name, text string) {
		t.Helper()
		want := offline.Verify(text, bundle, t0).Report
		seen[string(want.Indication)+"/"+string(want.SubIndication)]++
		got := check(text)
		if (got.Indication == "TOTAL_PASSED") != want.Passed() {
			t.Fatalf("%s: browser %s/%s (%s), Go %s/%s (%s): one passes, the other does not", name, got.Indication, got.SubIndication, got.Reason,
				want.Indication, want.SubIndication, want.Reason)
		}
		if certStep[got.SubIndication] && certStep[string(want.SubIndication)] && got.SubIndication != string(want.SubIndication) {
			// Both refuse a damaged signing certificate, at the reading step or the signature step: crypto/x509
			// refuses some malformations the browser's small DER reader lets through to the signature check.
			readerDiffs++
			return
		}
		if got.Indication != string(want.Indication) || got.SubIndication != string(want.SubIndication) {
			t.Errorf("%s: browser %s/%s (%s), Go %s/%s (%s)", name, got.Indication, got.SubIndication, got.Reason,
				want.Indication, want.SubIndication, want.Reason)
		}
	}
	for _, c := range qrCases {
		// Through the page: the button, then the verdict it shows.
		b.Do(t, chromedp.SetValue(chromedp.CSS(shown+` form.qr textarea`), f.qr[c.name]),
			chromedp.Click(chromedp.CSS(box+` [data-bverify]`)),
			chromedp.WaitVisible(chromedp.CSS(box+` [data-bresult] [data-indication]`)))
		ind := browser.Get(t, b, chromedp.Evaluate[string](`(function(){var v=document.querySelector("`+box+` [data-indication]");return v.dataset.indication+"/"+v.dataset.sub})()`))
		if ind != c.indication+"/"+c.sub {
			t.Errorf("%s: the page shows %s, want %s/%s", c.name, ind, c.indication, c.sub)
		}
		if c.name == "passed" {
			shot(t, b, "verify-qr-browser-en")
			if text := shownText(t, b); !strings.Contains(text, "J01CA04") || !strings.Contains(text, "Checked in this browser, without the network") {
				t.Errorf("passed: %s", text)
			}
		}
		same(c.name, f.qr[c.name])
	}
	// One-character changes all along the text, a truncated text, and text that is not a Mohr code.
	text := f.qr["passed"]
	for i, n := len(offline.Prefix), 0; i < len(text) && n < 60; i, n = i+len(text)/60+1, n+1 {
		ch := byte('A')
		if text[i] == 'A' {
			ch = '%'
		}
		same(fmt.Sprintf("char %d", i), text[:i]+string(ch)+text[i+1:])
	}
	same("truncated", text[:len(text)-9])
	same("prefix only", offline.Prefix)
	same("HC1", "HC1:"+text[4:])
	for name, text := range extraCodes(t, f) {
		same(name, text)
	}
	// Random byte changes inside the COSE_Sign1 (protected header, certificate, payload, signature),
	// re-compressed properly, so they reach the CBOR, COSE and certificate readers of both verifiers.
	raw, err := offline.DecodeText(f.qr["passed"], bundle.Intermediates)
	if err != nil {
		t.Fatal(err)
	}
	rng := mathrand.New(mathrand.NewPCG(1, 2))
	for i := 0; i < *jsMutations; i++ {
		m := bytes.Clone(raw)
		for k := 0; k <= i%3; k++ {
			m[rng.IntN(len(m))] ^= byte(1 << rng.IntN(8))
		}
		text, err := offline.EncodeText(m, f.pki.Intermediate)
		if err != nil {
			t.Fatal(err)
		}
		same(fmt.Sprintf("COSE mutation %d", i), text)
	}
	t.Logf("verdicts compared with the Go verifier: %v; damaged certificates refused at another step: %d", seen, readerDiffs)

	// Persian, after the language switch, offline.
	b.Do(t, chromedp.Click(chromedp.CSS(shown+` a.lang`)), chromedp.WaitVisible(chromedp.CSS(`.view[lang=fa] [data-bcheck]`)))
	b.Do(t, chromedp.SetValue(chromedp.CSS(shown+` form.qr textarea`), f.qr["passed"]),
		chromedp.Click(chromedp.CSS(box+` [data-bverify]`)),
		chromedp.WaitVisible(chromedp.CSS(box+` [data-bresult] [data-indication]`)))
	if text := shownText(t, b); !strings.Contains(text, "در همین مرورگر و بدون شبکه") || !strings.Contains(text, "۳ ساعت و") {
		t.Errorf("fa: %s", text)
	}
	shot(t, b, "verify-qr-browser-fa")

	// Timing, logged and not asserted (a shared machine): the browser's check of the valid code against Go's.
	perCode := browser.Get(t, b, chromedp.Evaluate[float64](`MohrOffline.load().then(function (r) {
		var t = performance.now(), n = 20, p = Promise.resolve();
		for (var i = 0; i < n; i++) { p = p.then(function () { return MohrOffline.verify(`+"`"+f.qr["passed"]+"`"+`, r.bundle, Date.now()); }); }
		return p.then(function () { return (performance.now() - t) / n; });
	})`, chromedp.EvalAwaitPromise))
	start := time.Now()
	for i := 0; i < 20; i++ {
		offline.Verify(f.qr["passed"], bundle, t0)
	}
	goPer := time.Since(start) / 20
	t.Logf("one check of the valid code: browser %.2f ms, Go %v (same run, ratio %.1f)", perCode, goPer, perCode/(float64(goPer)/1e6))

	// 6. Past the bundle's next update the browser refuses it, as the Go verifier does.
	skew := bundle.NextUpdate.Sub(t0) + time.Minute
	b.Do(t, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.__mohrSkew = %d`, skew.Milliseconds())))
	got := check(f.qr["passed"])
	_, goErr := offline.OpenBundle(f.bundle, f.seal.Public(), t0.Add(skew))
	if goErr == nil || got.SubIndication != "TRY_LATER" || !strings.Contains(goErr.Error(), strings.TrimSuffix(got.Reason, "fetch a new one")) {
		t.Errorf("expired bundle: browser %s/%s %q; Go %v", got.Indication, got.SubIndication, got.Reason, goErr)
	}
	if s := state(); s != "ready" && s != "refused" {
		t.Errorf("state %q", s)
	}
	b.NoConsoleErrors(t)
}

// extraCodes are codes that reach the later steps of the check, each signed properly where the case needs
// it: no compression dictionary (passes), no certificate, a certificate chain in an array, a payload in
// non-canonical CBOR or with an unknown key, another council number than the certificate's, a certificate
// that is not a physician-signing one, and a COSE_Sign1 without its tag.
func extraCodes(t *testing.T, f *qrFixture) map[string]string {
	t.Helper()
	bind, err := signing.Binding(f.pass)
	if err != nil {
		t.Fatal(err)
	}
	pl := func(council string) []byte {
		p := &offline.Payload{Version: offline.PayloadVersion, ID: []byte("0123456789abcdef"), Issued: t0.Add(-time.Hour).Unix(),
			Patient: patientCode, Prescriber: council, Medicines: []offline.Medicine{{Code: "J01CA04", Dosage: dosageFa, Quantity: 21, Unit: "کپسول"}},
			ContentSHA256: bind.ContentSHA256[:], SignatureSHA256: bind.SignatureSHA256[:]}
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sign := func(prot cose.ProtectedHeader, payload []byte, key crypto.Signer, dict *x509.Certificate, untag bool) string {
		signer, err := cose.NewSigner(cose.AlgorithmES256, key)
		if err != nil {
			t.Fatal(err)
		}
		msg := cose.Sign1Message{Headers: cose.Headers{Protected: prot}, Payload: payload}
		if err := msg.Sign(rand.Reader, nil, signer); err != nil {
			t.Fatal(err)
		}
		raw, err := msg.MarshalCBOR()
		if err != nil {
			t.Fatal(err)
		}
		if untag {
			raw = raw[1:] // 0xd2: tag 18
		}
		text, err := offline.EncodeText(raw, dict)
		if err != nil {
			t.Fatal(err)
		}
		return text
	}
	hdr := func(x5 any) cose.ProtectedHeader {
		h := cose.ProtectedHeader{cose.HeaderLabelAlgorithm: cose.AlgorithmES256}
		if x5 != nil {
			h[cose.HeaderLabelX5Chain] = x5
		}
		return h
	}
	doc, inter := f.doc, f.pki.Intermediate
	nonCanonical := append([]byte{pl(council)[0], 0x18}, pl(council)[1:]...)   // key 1 written in two bytes
	unknownKey := append([]byte{0xa9}, append(pl(council)[1:], 0x09, 0x00)...) // a ninth pair, key 9
	seal, err := f.pki.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Not a physician"})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"no dictionary":     sign(hdr(doc.Cert.Raw), pl(council), doc.Key, nil, false),
		"no certificate":    sign(hdr(nil), pl(council), doc.Key, inter, false),
		"chain in an array": sign(hdr([]any{doc.Cert.Raw, inter.Raw}), pl(council), doc.Key, inter, false),
		"non-canonical":     sign(hdr(doc.Cert.Raw), nonCanonical, doc.Key, inter, false),
		"unknown key":       sign(hdr(doc.Cert.Raw), unknownKey, doc.Key, inter, false),
		"other council":     sign(hdr(doc.Cert.Raw), pl("654321"), doc.Key, inter, false),
		"not a physician":   sign(hdr(seal.Cert.Raw), pl(council), seal.Key, inter, false),
		"untagged COSE":     sign(hdr(doc.Cert.Raw), pl(council), doc.Key, inter, true),
	}
}
