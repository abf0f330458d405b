package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mohr-hix/mohr/signing/offline"
)

// The page also checks the QR code printed on a prescription (signing/offline, docs/offline.md): a photo or
// scan of it (PNG or JPEG, decoded here with the same decoder as "mohr qr verify") or its RX1: text. The
// check is the offline one, made against the trust bundle the exchange publishes at GET /trust-bundle and
// opened with the pinned seal key exactly as a pharmacy's verifier opens it, so the page shows what an
// offline verifier would show, the bundle's age included. Nothing is stored; the image is decoded in memory.

// isImage reports whether b starts like a PNG or a JPEG file.
func isImage(b []byte) bool {
	return bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || bytes.HasPrefix(b, []byte{0xff, 0xd8, 0xff})
}

// maxQRText bounds the pasted text: the largest code (version 40) holds 4,296 alphanumeric characters.
const maxQRText = 8 << 10

// bundleCache keeps the last bundle opened, so a burst of checks does not verify the same seal and parse the
// same certificates again; a new bundle from the source (re-signed hourly) replaces it.
type bundleCache struct {
	mu     sync.Mutex
	digest [32]byte
	b      *offline.Bundle
}

// trustBundle opens the exchange's current bundle against the pinned seal key. A bundle that the pinned key
// did not seal is an error: the page does not check against it. Its dates are checked by offline.Verify,
// which answers INDETERMINATE/TRY_LATER with the bundle's age for one out of its dates.
func (h *Handler) trustBundle(ctx context.Context) (*offline.Bundle, error) {
	if h.cfg.TrustBundle == nil || h.cfg.SealKey == nil {
		return nil, errors.New("web: no trust bundle configured")
	}
	signed, err := h.cfg.TrustBundle(ctx)
	if err != nil {
		return nil, err
	}
	d := sha256.Sum256(signed)
	h.bundles.mu.Lock()
	defer h.bundles.mu.Unlock()
	if h.bundles.b == nil || d != h.bundles.digest {
		b, err := offline.InspectBundle(signed, h.cfg.SealKey)
		if err != nil {
			return nil, err
		}
		h.bundles.digest, h.bundles.b = d, b
	}
	return h.bundles.b, nil
}

// checkQR verifies a QR text offline. msg is set for input that is not a QR text at all; err for a fault
// that is not the visitor's (no usable trust bundle).
func (h *Handler) checkQR(ctx context.Context, text string) (res *checked, msg string, err error) {
	text = strings.TrimSpace(text)
	if !strings.HasPrefix(text, offline.Prefix) {
		return nil, msgNotQR, nil
	}
	b, err := h.trustBundle(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("web: trust bundle: %w", err)
	}
	r := offline.Verify(text, b, h.cfg.Now())
	return &checked{report: r.Report, offline: r}, "", nil
}

// checkQRImage decodes the QR code in a PNG or JPEG image and verifies it offline.
func (h *Handler) checkQRImage(ctx context.Context, img []byte) (*checked, string, error) {
	text, err := offline.ReadQRFile(img)
	switch {
	case errors.Is(err, offline.ErrImageTooLarge):
		return nil, msgImageTooLarge, nil
	case err != nil:
		return nil, msgNoQR, nil
	}
	return h.checkQR(ctx, text)
}

// offlineResult puts what an offline check adds into rv: the payload as the prescription (medicine codes and
// dosages, as signed in the code), the claimed issue date as the signing time, and the bundle's dates and age.
func (h *Handler) offlineResult(lang string, res *offline.Result, rv *resultView) {
	t := texts[lang]
	ov := &offlineView{Note: t["offline.note"]}
	if b := res.Bundle; b != nil {
		ov.IssuedJalali, ov.IssuedGreg = h.when(lang, b.Issued, true)
		ov.NextJalali, ov.NextGreg = h.when(lang, b.NextUpdate, true)
		ov.Age = age(lang, h.cfg.Now().Sub(b.Issued))
		ov.Revoked, ov.SHA256 = num(lang, fmt.Sprint(b.Revoked)), b.SHA256
	}
	rv.Offline = ov
	rv.Level = "offline"
	p := res.Payload
	if p == nil {
		rv.RxNote = t["rx.unreadable"]
		return
	}
	ov.PrescriptionID = p.IDString()
	// The issue date is the physician's claim: there is no timestamp in the code (docs/offline.md).
	rv.SignedJalali, rv.SignedGreg = h.when(lang, p.IssuedAt(), true)
	rv.SignedSource = t["time.claimed"]
	v := &rxView{PatientCode: num(lang, p.Patient)}
	v.WrittenJalali, v.WrittenGreg = h.when(lang, p.IssuedAt(), false)
	for i, m := range p.Medicines {
		mv := medView{N: num(lang, fmt.Sprint(i+1)), Name: m.Code, Dosage: m.Dosage}
		if m.Quantity > 0 {
			mv.Qty = num(lang, strings.TrimSpace(fmt.Sprint(m.Quantity)+" "+m.Unit))
		}
		if m.Repeats > 0 {
			mv.Repeats = num(lang, fmt.Sprint(m.Repeats))
		}
		v.Medicines = append(v.Medicines, mv)
	}
	rv.Rx = v
	rv.RxNote = t["rx.offline"]
	if rv.Verdict != "passed" {
		rv.RxNote = t["rx.unconfirmed"]
	}
}

// age words a bundle's age: minutes under an hour, hours under two days, then days and hours.
func age(lang string, d time.Duration) string {
	if d < 0 {
		d = 0
	}
	d = d.Round(time.Minute)
	days, hours, mins := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour), int(d%time.Hour/time.Minute)
	var s string
	switch {
	case lang == "fa" && d < time.Hour:
		s = fmt.Sprintf("%d دقیقه", mins)
	case lang == "fa" && d < 48*time.Hour:
		s = fmt.Sprintf("%d ساعت و %d دقیقه", int(d/time.Hour), mins)
	case lang == "fa":
		s = fmt.Sprintf("%d روز و %d ساعت", days, hours)
	case d < time.Hour:
		s = fmt.Sprintf("%d min", mins)
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h %d min", int(d/time.Hour), mins)
	default:
		s = fmt.Sprintf("%d days %d h", days, hours)
	}
	return num(lang, s)
}
