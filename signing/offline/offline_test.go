package offline

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// t0 is the pinned "now" of the tests.
var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

type fixture struct {
	pki  *testpki.PKI
	doc  *testpki.Leaf
	ph   rxgen.Physician
	gen  *rxgen.Generator
	seal crypto.Signer
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	p, err := testpki.New(t0)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{pki: p, gen: rxgen.New(7)}
	f.gen.Now = p.Clock.Now
	f.ph = f.gen.Physician()
	f.doc, err = p.Issue(testpki.PhysicianSigning, testpki.LeafOptions{CommonName: "Dr. " + f.ph.Given + " " + f.ph.Family,
		NationalCode: f.ph.NationalCode, CouncilNumber: f.ph.CouncilNumber})
	if err != nil {
		t.Fatal(err)
	}
	if f.seal, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	return f
}

// prescription returns a FHIR prescription with exactly n MedicationRequests (rxgen makes one to four; the
// rest are copies with the longest dosage text rxgen knows, the worst case for the QR size).
func (f *fixture) prescription(t testing.TB, n int) []byte {
	t.Helper()
	var b map[string]any
	for {
		raw, err := f.gen.Prescription(f.ph)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		entries := b["entry"].([]any)
		var meds, rest []any
		for _, e := range entries {
			if e.(map[string]any)["resource"].(map[string]any)["resourceType"] == "MedicationRequest" {
				meds = append(meds, e)
			} else {
				rest = append(rest, e)
			}
		}
		for i := 0; len(meds) < n; i++ {
			c := clone(t, meds[i%len(meds)])
			res := c.(map[string]any)["resource"].(map[string]any)
			res["dosageInstruction"] = []any{map[string]any{"text": "1-2 tablets every 6 hours as needed, max 8 a day"}}
			meds = append(meds, c)
		}
		b["entry"] = append(rest, meds[:n]...)
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
}

func clone(t testing.TB, v any) any {
	b, _ := json.Marshal(v)
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// signed signs content as CAdES and as the QR payload with the same key, and returns the QR text.
func (f *fixture) signed(t testing.TB, content []byte, key crypto.Signer) (cades []byte, text string) {
	t.Helper()
	ctx := context.Background()
	cades, err := signing.Sign(ctx, content, signing.SignOptions{Signer: key, Chain: f.doc.Chain, Now: f.pki.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	p, err := FromPrescription(content, cades)
	if err != nil {
		t.Fatal(err)
	}
	if text, err = Encode(ctx, p, key, f.doc.Chain); err != nil {
		t.Fatal(err)
	}
	return cades, text
}

func (f *fixture) bundleInput(now time.Time) BundleInput {
	return BundleInput{Issued: now, NextUpdate: now.Add(7 * 24 * time.Hour), Roots: []*x509.Certificate{f.pki.Root},
		Intermediates: []*x509.Certificate{f.pki.Intermediate}, OCSPResponders: []*x509.Certificate{f.pki.Responder.Cert}}
}

func (f *fixture) bundle(t testing.TB, in BundleInput) *Bundle {
	t.Helper()
	signed, err := MakeBundle(context.Background(), in, f.seal)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenBundle(signed, f.seal.Public(), in.Issued.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRoundTripPNG: sign (CAdES and COSE with one key) -> QR PNG -> decode from the image -> verify offline.
func TestRoundTripPNG(t *testing.T) {
	f := newFixture(t)
	content := f.prescription(t, 3)
	cades, text := f.signed(t, content, f.doc.Key)
	pngBytes, ver, err := QRPNG(text, 4)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadQRFile(pngBytes)
	if err != nil {
		t.Fatal(err)
	}
	if got != text {
		t.Fatalf("QR decoded to a different text (version %d)", ver)
	}
	b := f.bundle(t, f.bundleInput(t0))
	res := Verify(got, b, t0.Add(2*time.Hour))
	if !res.Report.Passed() {
		t.Fatalf("offline check failed: %s", res.Report.Summary())
	}
	if res.Report.Prescriber.CouncilNumber != f.ph.CouncilNumber || res.Payload.Prescriber != f.ph.CouncilNumber || !res.Offline {
		t.Fatalf("report does not name the prescriber: %+v", res.Report.Prescriber)
	}
	if err := MatchesCAdES(res.Payload, cades); err != nil {
		t.Fatalf("binding: %v", err)
	}
	// The full (online) validation of the CAdES agrees on the content.
	if res.Report.ContentSHA256 == "" || !strings.EqualFold(res.Report.ContentSHA256, fmt.Sprintf("%x", res.Payload.ContentSHA256)) {
		t.Fatal("content digest not reported")
	}
}

// TestBindingRefusesOtherSignature: a QR payload does not match another CAdES signature of the same content
// (each signature act is named), nor a CAdES of other content.
func TestBindingRefusesOtherSignature(t *testing.T) {
	f := newFixture(t)
	content := f.prescription(t, 2)
	_, text := f.signed(t, content, f.doc.Key)
	other, _ := f.signed(t, content, f.doc.Key)
	res := Verify(text, f.bundle(t, f.bundleInput(t0)), t0.Add(time.Hour))
	if !res.Report.Passed() {
		t.Fatal(res.Report.Summary())
	}
	if err := MatchesCAdES(res.Payload, other); !errors.Is(err, ErrBindingMismatch) {
		t.Fatalf("payload matched another signature: %v", err)
	}
	otherContent, _ := f.signed(t, f.prescription(t, 2), f.doc.Key)
	if err := MatchesCAdES(res.Payload, otherContent); !errors.Is(err, ErrBindingMismatch) {
		t.Fatalf("payload matched another prescription: %v", err)
	}
	// FromPrescription refuses a signature that does not envelope the content it is given.
	if _, err := FromPrescription(f.prescription(t, 1), other); !errors.Is(err, ErrPayload) {
		t.Fatalf("payload built for a mismatched signature: %v", err)
	}
}

// productionSized re-issues the fixture's physician certificate the way Mohr's CA does, larger than testpki's:
// a Persian common name, OCSP and CA-issuer URLs, a CRL distribution point and a certificate policy (the CA's
// development profile makes 761-byte certificates; this one must be at least as large).
func (f *fixture) productionSized(t testing.TB) {
	t.Helper()
	tmpl := *f.doc.Cert
	tmpl.Subject.CommonName = "دکتر " + f.ph.Given + " " + f.ph.Family + " - پزشک عمومی"
	tmpl.Subject.Organization = []string{"سازمان نظام پزشکی جمهوری اسلامی ایران"}
	tmpl.RawSubject = nil
	tmpl.OCSPServer = []string{"http://ocsp.hix.behdasht.gov.ir/ocsp"}
	tmpl.IssuingCertificateURL = []string{"http://pki.hix.behdasht.gov.ir/ca/intermediate.crt"}
	tmpl.CRLDistributionPoints = []string{"http://crl.hix.behdasht.gov.ir/crl/17.crl"}
	tmpl.PolicyIdentifiers = []asn1.ObjectIdentifier{{2, 999, 1742, 2, 3}}
	tmpl.ExtraExtensions = tmpl.Extensions
	tmpl.Extensions = nil
	var keep []pkix.Extension
	for _, e := range tmpl.ExtraExtensions {
		if e.Id.Equal(hixext.OIDAdmission) {
			keep = append(keep, e)
		}
	}
	tmpl.ExtraExtensions = keep
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, f.pki.Intermediate, f.doc.Key.Public(), f.pki.InterKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Raw) < 761 {
		t.Fatalf("certificate of %d bytes is smaller than the CA's", len(c.Raw))
	}
	f.doc.Cert, f.doc.Chain = c, []*x509.Certificate{c, f.pki.Intermediate}
}

// TestFiveMedicinesQRVersion measures the QR version of the worst case this test knows: five medicines with
// the longest dosage text, a production-sized certificate, error correction M. A phone camera reads up to
// version 25 reliably.
func TestFiveMedicinesQRVersion(t *testing.T) {
	f := newFixture(t)
	f.productionSized(t)
	worst, chars := 0, 0
	b := f.bundle(t, f.bundleInput(t0))
	for i := 0; i < 10; i++ {
		_, text := f.signed(t, f.prescription(t, 5), f.doc.Key)
		q, err := NewQR(text)
		if err != nil {
			t.Fatal(err)
		}
		if q.Version > worst {
			worst, chars = q.Version, len(text)
		}
		if q.Version > 25 {
			t.Fatalf("five medicines need QR version %d (%d characters), above 25", q.Version, len(text))
		}
		if res := Verify(text, b, t0.Add(time.Hour)); !res.Report.Passed() {
			t.Fatal(res.Report.Summary())
		}
	}
	t.Logf("five medicines, %d-byte certificate: QR version %d at most (%d characters, error correction M)", len(f.doc.Cert.Raw), worst, chars)
}

// TestTamperedTextFails: one character of the QR text changed -> not TOTAL_PASSED (every position), unless
// the change only touched the unused padding bits of the last DEFLATE byte (RFC 1951 §3.1.1): then the
// inflated COSE message is byte for byte the signed one, nothing verified has changed, and it passes. Which
// positions can do that depends on the stream, so the test tells the two apart instead of expecting none.
func TestTamperedTextFails(t *testing.T) {
	f := newFixture(t)
	_, text := f.signed(t, f.prescription(t, 2), f.doc.Key)
	b := f.bundle(t, f.bundleInput(t0))
	orig, err := DecodeText(text, b.Intermediates)
	if err != nil {
		t.Fatal(err)
	}
	padding := 0
	for i := len(Prefix); i < len(text); i++ {
		c := byte('A')
		if text[i] == 'A' {
			c = 'B'
		}
		bad := text[:i] + string(c) + text[i+1:]
		if res := Verify(bad, b, t0.Add(time.Hour)); res.Report.Passed() {
			if raw, err := DecodeText(bad, b.Intermediates); err != nil || !bytes.Equal(raw, orig) {
				t.Fatalf("changed character %d still passes with another message", i)
			}
			padding++
		}
	}
	if padding > 3 { // the three characters of the Base45 group that holds that byte
		t.Fatalf("%d one-character changes inflate to the same message; only the last DEFLATE byte's padding can", padding)
	}
}

// TestTamperedPayloadFails: a payload changed and re-encoded with the same signature fails SIG_CRYPTO_FAILURE.
func TestTamperedPayloadFails(t *testing.T) {
	f := newFixture(t)
	_, text := f.signed(t, f.prescription(t, 2), f.doc.Key)
	raw, err := DecodeText(text, []*x509.Certificate{f.pki.Intermediate})
	if err != nil {
		t.Fatal(err)
	}
	// The patient's national code is a CBOR text string in the payload: change one digit of it in place.
	res := Verify(text, f.bundle(t, f.bundleInput(t0)), t0.Add(time.Hour))
	code := []byte(res.Payload.Patient)
	i := bytes.Index(raw, code)
	if i < 0 {
		t.Fatal("national code not found in the COSE message")
	}
	raw[i] = '0' + (raw[i]-'0'+1)%10
	bad, err := EncodeText(raw, f.pki.Intermediate)
	if err != nil {
		t.Fatal(err)
	}
	got := Verify(bad, f.bundle(t, f.bundleInput(t0)), t0.Add(time.Hour))
	if got.Report.SubIndication != signing.SigCryptoFailure || got.Report.Indication != signing.TotalFailed {
		t.Fatalf("tampered payload: %s", got.Report.Summary())
	}
}

// TestRevokedPhysicianFails: the physician's certificate in the bundle's revocation snapshot -> REVOKED_NO_POE.
func TestRevokedPhysicianFails(t *testing.T) {
	f := newFixture(t)
	_, text := f.signed(t, f.prescription(t, 1), f.doc.Key)
	in := f.bundleInput(t0.Add(24 * time.Hour))
	in.Revoked = []Revoked{{Issuer: f.pki.Intermediate, Serial: f.doc.Cert.SerialNumber, RevokedAt: t0.Add(time.Hour)}}
	b := f.bundle(t, in)
	res := Verify(text, b, t0.Add(25*time.Hour))
	if res.Report.Passed() || res.Report.SubIndication != signing.RevokedNoPOE {
		t.Fatalf("revoked physician: %s", res.Report.Summary())
	}
	if len(res.Report.Revocation) != 1 || res.Report.Revocation[0].Status != "revoked" {
		t.Fatalf("revocation not reported: %+v", res.Report.Revocation)
	}
}

// TestExpiredBundleRefused: a bundle past its next update is refused with its age in the message, both when
// opened and when a stale Bundle is used.
func TestExpiredBundleRefused(t *testing.T) {
	f := newFixture(t)
	_, text := f.signed(t, f.prescription(t, 1), f.doc.Key)
	in := f.bundleInput(t0)
	signed, err := MakeBundle(context.Background(), in, f.seal)
	if err != nil {
		t.Fatal(err)
	}
	later := in.NextUpdate.Add(3 * 24 * time.Hour)
	_, err = OpenBundle(signed, f.seal.Public(), later)
	var age *BundleAgeError
	if !errors.Is(err, ErrBundleExpired) || !errors.As(err, &age) || !strings.Contains(err.Error(), "10d0h ago") {
		t.Fatalf("expired bundle: %v", err)
	}
	if _, err := OpenBundle(signed, f.seal.Public(), t0.Add(-time.Hour)); !errors.Is(err, ErrBundleNotYetValid) {
		t.Fatalf("future bundle: %v", err)
	}
	b, err := InspectBundle(signed, f.seal.Public())
	if err != nil {
		t.Fatal(err)
	}
	res := Verify(text, b, later)
	if res.Report.Passed() || res.Report.SubIndication != signing.TryLater || !strings.Contains(res.Report.Reason, "expired") {
		t.Fatalf("verify with an expired bundle: %s", res.Report.Summary())
	}
	// Ageing across days with a fake clock: fresh until the next update, refused from then on.
	for d := 0; d <= 8; d++ {
		now := t0.Add(time.Duration(d) * 24 * time.Hour)
		_, err := OpenBundle(signed, f.seal.Public(), now)
		if (d < 7) != (err == nil) {
			t.Fatalf("day %d: %v", d, err)
		}
	}
}

// TestBundleOtherKeyRefused: a bundle signed by any key but the pinned one is refused, and so is a bundle
// whose signature is broken.
func TestBundleOtherKeyRefused(t *testing.T) {
	f := newFixture(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signed, err := MakeBundle(context.Background(), f.bundleInput(t0), other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBundle(signed, f.seal.Public(), t0); !errors.Is(err, ErrBundleSignature) {
		t.Fatalf("bundle of another key: %v", err)
	}
	good, _ := MakeBundle(context.Background(), f.bundleInput(t0), f.seal)
	good[len(good)-1] ^= 1
	if _, err := OpenBundle(good, f.seal.Public(), t0); !errors.Is(err, ErrBundleSignature) {
		t.Fatalf("broken bundle signature: %v", err)
	}
	// A QR payload signed by the seal key is not a bundle (content type).
	_, text := f.signed(t, f.prescription(t, 1), f.doc.Key)
	raw, _ := DecodeText(text, []*x509.Certificate{f.pki.Intermediate})
	if _, err := OpenBundle(raw, f.doc.Key.Public(), t0); err == nil {
		t.Fatal("a QR payload opened as a bundle")
	}
}

// TestUnknownCARefused: a physician certificate from a CA the bundle does not hold fails.
func TestUnknownCARefused(t *testing.T) {
	f := newFixture(t)
	g := newFixture(t) // another hierarchy
	_, text := f.signed(t, f.prescription(t, 1), f.doc.Key)
	res := Verify(text, g.bundle(t, g.bundleInput(t0)), t0.Add(time.Hour))
	if res.Report.SubIndication != signing.NoCertificateChainFound {
		t.Fatalf("unknown CA: %s", res.Report.Summary())
	}
}

// TestPayloadCanonical: the payload round-trips byte for byte, and a non-canonical encoding is refused.
func TestPayloadCanonical(t *testing.T) {
	f := newFixture(t)
	content := f.prescription(t, 2)
	cades, _ := f.signed(t, content, f.doc.Key)
	p, err := FromPrescription(content, cades)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ParsePayload(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := q.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatal("payload does not round-trip")
	}
	// Version 1 as a two-byte integer (0x18 0x01) is valid CBOR but not canonical.
	if b[1] != 0x01 || b[2] != 0x01 {
		t.Fatalf("unexpected encoding % x", b[:4])
	}
	nc := append([]byte{b[0], 0x01, 0x18, 0x01}, b[3:]...)
	if _, err := ParsePayload(nc); !errors.Is(err, ErrPayload) {
		t.Fatalf("non-canonical payload accepted: %v", err)
	}
}

// TestReadQRFromScaledImage decodes a QR from a downscaled, grey, JPEG-like rendering (photo stand-in).
func TestReadQRFromScaledImage(t *testing.T) {
	f := newFixture(t)
	_, text := f.signed(t, f.prescription(t, 5), f.doc.Key)
	q, err := NewQR(text)
	if err != nil {
		t.Fatal(err)
	}
	img := photo(q, 3)
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	got, err := ReadQRFile(buf.Bytes())
	if err != nil || got != text {
		t.Fatalf("photo: %v", err)
	}
	buf.Reset()
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadQRFile(buf.Bytes()); err != nil || got != text {
		t.Fatalf("JPEG photo: %v", err)
	}
}

// photo renders q the way a phone photo of a printed page looks to a decoder: a larger canvas, the code off
// centre, grey paper and grey ink with a gradient.
func photo(q *QR, scale int) image.Image {
	code := q.Image(scale)
	w := code.Bounds().Dx() * 2
	img := image.NewGray(image.Rect(0, 0, w, w))
	for y := 0; y < w; y++ {
		for x := 0; x < w; x++ {
			img.Pix[y*img.Stride+x] = uint8(200 + 40*x/w)
		}
	}
	off := w / 5
	for y := 0; y < code.Bounds().Dy(); y++ {
		for x := 0; x < code.Bounds().Dx(); x++ {
			if code.Pix[y*code.Stride+x] == 0 {
				img.Pix[(y+off)*img.Stride+x+off] = uint8(40 + 30*y/w)
			}
		}
	}
	return img
}

// TestPublisherRefresh: the served bundle is reused for Refresh, then rebuilt with a new revocation snapshot;
// what it serves opens with the pinned key for Validity and not after (fake clock across days).
func TestPublisherRefresh(t *testing.T) {
	f := newFixture(t)
	var revoked []Revoked
	calls := 0
	pub := &Publisher{Seal: f.seal, Now: f.pki.Clock.Now, Refresh: time.Hour, Validity: 3 * 24 * time.Hour,
		Content: func(context.Context) (BundleInput, error) {
			calls++
			in := f.bundleInput(time.Time{})
			in.Revoked = revoked
			return in, nil
		}}
	ctx := context.Background()
	b1, iss1, next1, err := pub.Bundle(ctx)
	if err != nil || next1.Sub(iss1) != 3*24*time.Hour {
		t.Fatalf("first bundle: %v %v %v", err, iss1, next1)
	}
	revoked = []Revoked{{Issuer: f.pki.Intermediate, Serial: f.doc.Cert.SerialNumber, RevokedAt: t0}}
	f.pki.Clock.Advance(30 * time.Minute)
	if b2, _, _, _ := pub.Bundle(ctx); !bytes.Equal(b1, b2) || calls != 1 {
		t.Fatal("bundle rebuilt before Refresh")
	}
	f.pki.Clock.Advance(31 * time.Minute)
	b3, iss3, _, err := pub.Bundle(ctx)
	if err != nil || bytes.Equal(b1, b3) || calls != 2 || !iss3.After(iss1) {
		t.Fatalf("bundle not rebuilt after Refresh: %v", err)
	}
	ob, err := OpenBundle(b3, f.seal.Public(), f.pki.Clock.Now())
	if err != nil || ob.RevokedCount != 1 {
		t.Fatalf("rebuilt bundle: %v", err)
	}
	if _, err := OpenBundle(b1, f.seal.Public(), iss1.Add(3*24*time.Hour)); !errors.Is(err, ErrBundleExpired) {
		t.Fatalf("bundle past its validity: %v", err)
	}
}

// TestReadQRFileRefusesHugeCanvas: a PNG of a few bytes that declares a 100,000 x 100,000 canvas (a
// decompression bomb) is refused from its header, before any pixel is decoded.
func TestReadQRFileRefusesHugeCanvas(t *testing.T) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// IHDR: length(4) "IHDR"(4) width(4) height(4) ... at offset 8; its CRC covers type and data.
	binary.BigEndian.PutUint32(b[16:], 100000)
	binary.BigEndian.PutUint32(b[20:], 100000)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	if _, err := ReadQRFile(b); !errors.Is(err, ErrImageTooLarge) {
		t.Fatalf("huge canvas: %v", err)
	}
}

// TestReadQRManyCodes decodes many different codes, each as a clean rendering at 4 pixels per module and as a
// photo stand-in: every one must read back exactly. gozxing alone misses about 2 % of the clean renderings
// (a false finder pattern); ReadQR's retries (halved image, pure code) must leave none unread.
func TestReadQRManyCodes(t *testing.T) {
	f := newFixture(t)
	n := 150
	if testing.Short() {
		n = 30
	}
	for i := 0; i < n; i++ {
		_, text := f.signed(t, f.prescription(t, 1+i%5), f.doc.Key)
		q, err := NewQR(text)
		if err != nil {
			t.Fatal(err)
		}
		for kind, img := range map[string]image.Image{"clean": q.Image(4), "photo": photo(q, 3)} {
			if got, err := ReadQR(img); err != nil || got != text {
				t.Errorf("code %d (%s, version %d): %v", i, kind, q.Version, err)
			}
		}
	}
}
