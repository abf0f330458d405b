package web

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/offline"
)

// qrFixture adds to the page's fixture the offline side: the Ministry's seal key, a trust bundle issued three
// hours before t0 whose revocation snapshot lists one physician, and QR texts of the passing prescription
// (bound to f.pass) and of the cases an offline verifier must refuse.
type qrFixture struct {
	*fixture
	seal   *ecdsa.PrivateKey
	bundle []byte
	qr     map[string]string // passed, tampered, revoked, expired, stranger
}

// qrCases are the QR texts of the fixture with the indication and sub-indication `mohr qr verify` gives them.
var qrCases = []struct{ name, indication, sub string }{
	{"passed", "TOTAL_PASSED", ""},
	{"tampered", "TOTAL_FAILED", "SIG_CRYPTO_FAILURE"},
	{"revoked", "INDETERMINATE", "REVOKED_NO_POE"},
	{"expired", "INDETERMINATE", "OUT_OF_BOUNDS_NO_POE"},
	{"stranger", "INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND"},
}

const bundleAge = 3 * time.Hour

func newQRFixture(t testing.TB) *qrFixture {
	t.Helper()
	ctx := context.Background()
	f := &qrFixture{fixture: newFixture(t), qr: map[string]string{}}
	p := f.pki
	bind, err := signing.Binding(f.pass)
	if err != nil {
		t.Fatal(err)
	}
	payload := func(qty uint32) *offline.Payload {
		return &offline.Payload{Version: offline.PayloadVersion, ID: []byte("0123456789abcdef"), Issued: t0.Add(-time.Hour).Unix(),
			Patient: patientCode, Prescriber: council,
			Medicines: []offline.Medicine{{Code: "J01CA04", Dosage: dosageFa, Quantity: qty, Unit: "کپسول"},
				{Code: "N02BE01", Dosage: "در صورت درد، هر ۶ ساعت یک قرص", Quantity: 10, Unit: "قرص", Repeats: 1}},
			ContentSHA256: bind.ContentSHA256[:], SignatureSHA256: bind.SignatureSHA256[:]}
	}
	encode := func(leaf *testpki.Leaf) string {
		s, err := offline.Encode(ctx, payload(21), leaf.Key, leaf.Chain)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	f.qr["passed"] = encode(f.doc)

	// Tampered: the signed payload's quantity 21 becomes 42 and the code is re-encoded with the old signature.
	msgDER, err := offline.SignPayload(ctx, payload(21), f.doc.Key, f.doc.Cert)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := offline.DecodeCOSE(msgDER)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Payload, err = payload(42).Marshal(); err != nil {
		t.Fatal(err)
	}
	tampered, err := msg.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	if f.qr["tampered"], err = offline.EncodeText(tampered, p.Intermediate); err != nil {
		t.Fatal(err)
	}

	issue := func(o testpki.LeafOptions) *testpki.Leaf {
		o.CommonName, o.NationalCode, o.CouncilNumber = "Dr. Ali Rezaei", doctorCode, council
		l, err := p.Issue(testpki.PhysicianSigning, o)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	revoked := issue(testpki.LeafOptions{})
	f.qr["revoked"] = encode(revoked)
	f.qr["expired"] = encode(issue(testpki.LeafOptions{NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.Add(-24 * time.Hour)}))
	other, err := testpki.New(t0.Add(-2 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.Issue(testpki.PhysicianSigning, testpki.LeafOptions{CommonName: "Dr. Ali Rezaei", NationalCode: doctorCode, CouncilNumber: council})
	if err != nil {
		t.Fatal(err)
	}
	f.qr["stranger"] = encode(stranger)

	if f.seal, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	f.bundle = makeBundle(t, p, f.seal, t0.Add(-bundleAge), revoked.Cert)
	cfg := f.h.cfg
	cfg.TrustBundle = func(context.Context) ([]byte, error) { return f.bundle, nil }
	cfg.SealKey = f.seal.Public()
	if f.h, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

// makeBundle signs a trust bundle of p issued at issued, valid for 7 days, listing revoked.
func makeBundle(t testing.TB, p *testpki.PKI, seal *ecdsa.PrivateKey, issued time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	in := offline.BundleInput{Issued: issued, NextUpdate: issued.Add(7 * 24 * time.Hour), Roots: []*x509.Certificate{p.Root},
		Intermediates: []*x509.Certificate{p.Intermediate}}
	for _, c := range revoked {
		in.Revoked = append(in.Revoked, offline.Revoked{Issuer: p.Intermediate, Serial: c.SerialNumber, RevokedAt: issued.Add(-time.Hour)})
	}
	b, err := offline.MakeBundle(context.Background(), in, seal)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// postQR posts the QR form: text in the "qr" field and/or an image in "file".
func postQR(t *testing.T, url, text string, img []byte, lang string) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("lang", lang)
	fw, _ := mw.CreateFormFile("file", "qr.png")
	fw.Write(img)
	_ = mw.WriteField("qr", text)
	mw.Close()
	resp, err := http.Post(url+Prefix, mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func qrPNG(t testing.TB, text string) []byte {
	t.Helper()
	b, _, err := offline.QRPNG(text, 4)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestQRResults: the QR text and the QR image of each case give, on the page, the indication the offline
// verifier gives, in both languages, with the statement that it is an offline check and the bundle's age; a
// passing code shows the medicines as signed in the code; no sealed report is offered for an offline check.
func TestQRResults(t *testing.T) {
	f := newQRFixture(t)
	srv := f.server(t)
	b, err := offline.OpenBundle(f.bundle, f.seal.Public(), t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range qrCases {
		t.Run(c.name, func(t *testing.T) {
			// The page's verdict is offline.Verify's for the same text, bundle and time.
			want := offline.Verify(f.qr[c.name], b, t0).Report
			if string(want.Indication) != c.indication || string(want.SubIndication) != c.sub {
				t.Fatalf("fixture: %s/%s (%s)", want.Indication, want.SubIndication, want.Reason)
			}
			for _, in := range []struct {
				kind string
				text string
				img  []byte
			}{{"text", f.qr[c.name], nil}, {"png", "", qrPNG(t, f.qr[c.name])}} {
				for _, lang := range []string{"en", "fa"} {
					code, page := postQR(t, srv.URL, in.text, in.img, lang)
					if code != http.StatusOK {
						t.Fatalf("%s %s: status %d", in.kind, lang, code)
					}
					txt := visible(page)
					wants := []string{"<code>" + c.indication + "</code>"}
					if c.sub != "" {
						wants = append(wants, "<code>"+c.sub+"</code>")
					}
					for _, w := range wants {
						if !strings.Contains(page, w) {
							t.Errorf("%s %s: %s missing", in.kind, lang, w)
						}
					}
					words := map[string][]string{
						"en": {"Offline check", "This is the result of an offline check", "Age of the trust bundle", "3 h 0 min", "Revocations after the bundle's issue"},
						"fa": {"بررسی برون‌خط", "عمر بستهٔ اعتماد", "۳ ساعت و ۰ دقیقه"},
					}[lang]
					if c.name == "passed" {
						words = append(words, "J01CA04", dosageFa, "N02BE01", map[string]string{"en": "21 کپسول", "fa": "۲۱ کپسول"}[lang],
							map[string]string{"en": "Not checked (an offline check", "fa": "بررسی نشد (بررسی برون‌خط"}[lang])
					}
					for _, w := range words {
						if !strings.Contains(txt, w) {
							t.Errorf("%s %s: %q not shown", in.kind, lang, w)
						}
					}
					if strings.Contains(page, "mohr-validation-report.p7s") {
						t.Errorf("%s %s: an offline check offered a sealed report", in.kind, lang)
					}
				}
			}
		})
	}
}

// TestQRPhotoJPEG: a JPEG photo stand-in (grey paper, the code off centre) is decoded server-side.
func TestQRPhotoJPEG(t *testing.T) {
	f := newQRFixture(t)
	srv := f.server(t)
	q, err := offline.NewQR(f.qr["passed"])
	if err != nil {
		t.Fatal(err)
	}
	code := q.Image(3)
	w := code.Bounds().Dx() * 2
	img := image.NewGray(image.Rect(0, 0, w, w))
	for i := range img.Pix {
		img.Pix[i] = 210
	}
	for y := 0; y < code.Bounds().Dy(); y++ {
		for x := 0; x < code.Bounds().Dx(); x++ {
			img.Pix[(y+w/5)*img.Stride+x+w/3] = code.Pix[y*code.Stride+x]/2 + 40
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	if code, page := postQR(t, srv.URL, "", buf.Bytes(), "en"); code != 200 || !strings.Contains(page, "<code>TOTAL_PASSED</code>") {
		t.Fatalf("JPEG photo: %d %s", code, visible(page))
	}
}

// TestQRBadInput: text that is not a QR text, an image without a code, a decompression bomb, an empty form
// and an over-long text each get a plain message, and nothing is verified.
func TestQRBadInput(t *testing.T) {
	f := newQRFixture(t)
	verified := 0
	f.h.Observe(func(string) { verified++ })
	srv := f.server(t)
	blank := image.NewGray(image.Rect(0, 0, 300, 300))
	for i := range blank.Pix {
		blank.Pix[i] = 0xff
	}
	var noCode bytes.Buffer
	png.Encode(&noCode, blank)
	for _, c := range []struct {
		name string
		text string
		img  []byte
		code int
		en   string
	}{
		{"not RX1", "HC1:6BFOXN%TS3DH0YOJ58S", nil, 422, "not the code of a Mohr prescription"},
		{"no code in image", "", noCode.Bytes(), 422, "No readable QR code was found"},
		{"huge canvas", "", hugePNG(t), 422, "too many pixels"},
		{"empty", "  ", nil, 400, "No file was chosen"},
		{"text too long", "RX1:" + strings.Repeat("A", maxQRText), nil, 413, "larger than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, page := postQR(t, srv.URL, c.text, c.img, "en")
			if code != c.code || !strings.Contains(visible(page), c.en) {
				t.Fatalf("status %d, want %d; %q not in %s", code, c.code, c.en, visible(page))
			}
		})
	}
	if verified != 0 {
		t.Errorf("%d verifications for bad input", verified)
	}
}

// hugePNG is a PNG of a few bytes whose header declares 100,000 x 100,000 pixels.
func hugePNG(t testing.TB) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b[16:], 100000)
	binary.BigEndian.PutUint32(b[20:], 100000)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// TestQRBundleRefused: the page checks only against a bundle sealed by the pinned key, and says so when the
// bundle is out of its dates. A bundle sealed by another key is a server fault (503, logged with a
// reference), never a result; an expired one gives INDETERMINATE/TRY_LATER with the bundle's dates and age.
func TestQRBundleRefused(t *testing.T) {
	f := newQRFixture(t)
	var logged []error
	f.h.cfg.OnError = func(_ *http.Request, _ string, err error) { logged = append(logged, err) }
	srv := f.server(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.bundle = makeBundle(t, f.pki, other, t0.Add(-time.Hour))
	code, page := postQR(t, srv.URL, f.qr["passed"], nil, "en")
	if code != http.StatusServiceUnavailable || !strings.Contains(visible(page), "The check could not be done right now") ||
		len(logged) != 1 || !strings.Contains(logged[0].Error(), "not signed by the pinned seal key") {
		t.Fatalf("bundle of another key: status %d, logged %v", code, logged)
	}
	f.bundle = makeBundle(t, f.pki, f.seal, t0.Add(-8*24*time.Hour))
	code, page = postQR(t, srv.URL, f.qr["passed"], nil, "en")
	if code != http.StatusOK || !strings.Contains(page, "<code>TRY_LATER</code>") || !strings.Contains(page, "trust bundle expired at") ||
		!strings.Contains(visible(page), "8 days 0 h") {
		t.Fatalf("expired bundle: status %d %s", code, visible(page))
	}
}
