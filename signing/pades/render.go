// Package pades makes and checks the printable form of a prescription: a one-page Persian PDF rendered from
// the FHIR Bundle (shaped right to left with go-text/typesetting, fonts embedded), signed as PAdES baseline
// (ETSI EN 319 142-1: B-B, B-T, B-LT with a document security store), and verified through package signing's
// one validation pipeline.
package pades

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/signing/internal/rx"
)

// bundle is the part of a FHIR prescription Bundle the printout shows.
type bundle struct {
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
	Entry     []struct {
		Resource struct {
			ResourceType string          `json:"resourceType"`
			Identifier   []rx.Identifier `json:"identifier"`
			Name         []struct {
				Family string   `json:"family"`
				Given  []string `json:"given"`
			} `json:"name"`
			BirthDate  string `json:"birthDate"`
			AuthoredOn string `json:"authoredOn"`
			Medication struct {
				Text string `json:"text"`
			} `json:"medicationCodeableConcept"`
			Dosage []struct {
				Text string `json:"text"`
			} `json:"dosageInstruction"`
			Dispense struct {
				Quantity struct {
					Value float64 `json:"value"`
					Unit  string  `json:"unit"`
				} `json:"quantity"`
			} `json:"dispenseRequest"`
		} `json:"resource"`
	} `json:"entry"`
}

func find(ids []rx.Identifier, system string) string {
	for _, id := range ids {
		if id.System == system {
			return id.Value
		}
	}
	return ""
}

// ErrPrescriberMismatch: the prescription names another prescriber than the signing certificate.
var ErrPrescriberMismatch = errors.New("pades: the prescription's practitioner is not the signing certificate's subject")

// Prescriber is who the printout names as prescriber: always read from the signing certificate (subject
// commonName, national code from serialNumber, council number and profession from the admission extension),
// never from the prescription data.
type Prescriber struct {
	Name, NationalCode, CouncilNumber, Profession string
}

// PrescriberFromCertificate reads the prescriber of a physician-signing certificate.
func PrescriberFromCertificate(c *x509.Certificate) (Prescriber, error) {
	p := Prescriber{Name: c.Subject.CommonName}
	if code, err := hixext.NationalCodeFromSubject(c); err == nil {
		p.NationalCode = code
	}
	a, err := hixext.ParseAdmission(c)
	if err != nil {
		return p, fmt.Errorf("pades: signing certificate has no council number: %w", err)
	}
	p.CouncilNumber, p.Profession = a.RegistrationNumber, a.Profession
	return p, nil
}

// Render returns a one-page A4 PDF of the prescription in bundleJSON, in Persian, laid out right to left:
// patient, medicines with quantity and dosage, the date in the Jalali and Gregorian calendars, the prescriber
// read from signer (the certificate that signs, or will sign, the printout) and a footer saying how to verify
// it. The fonts are embedded subsets with ToUnicode maps, so the text extracts. With signer nil the prescriber
// line says the signature names the prescriber. When signer is given, the Bundle's Practitioner must carry
// the certificate's council number and national code (ErrPrescriberMismatch).
func Render(bundleJSON []byte, signer *x509.Certificate) ([]byte, error) {
	return RenderQR(bundleJSON, signer, nil)
}

// ErrNoRoomForQR: the prescription is too long for the offline QR code to fit below it on one page.
var ErrNoRoomForQR = errors.New("pades: no room for the QR code on the page")

// RenderQR is Render with the offline verification QR code (signing/offline: offline.NewQR(text).Modules,
// [row][column], true for dark) drawn as vector modules at the bottom left, about 70 mm wide with its quiet
// zone. A nil qr draws none.
func RenderQR(bundleJSON []byte, signer *x509.Certificate, qr [][]bool) ([]byte, error) {
	var b bundle
	if err := json.Unmarshal(bundleJSON, &b); err != nil {
		return nil, fmt.Errorf("pades: prescription: %w", err)
	}
	var pr *Prescriber
	if signer != nil {
		p, err := PrescriberFromCertificate(signer)
		if err != nil {
			return nil, err
		}
		pr = &p
	}
	ts, err := newTypesetter()
	if err != nil {
		return nil, err
	}
	const right, left = 545.0, 50.0
	width := right - left
	var pg page
	y := 790.0
	putDir := func(text string, size float64, bold, ltr bool, gap float64) {
		for _, l := range ts.wrap(text, size, bold, ltr, width) {
			y -= size + gap
			x := right - l.width*size/emUnits
			if l.ltr {
				x = left
			}
			pg.items = append(pg.items, placedLine{l: l, x: x, y: y})
			gap = 3
		}
	}
	put := func(text string, size float64, bold bool, gap float64) { putDir(text, size, bold, false, gap) }
	rule := func() {
		y -= 9
		pg.rules = append(pg.rules, [4]float64{left, y, right, y})
	}
	issued := b.Timestamp
	when, terr := time.Parse(time.RFC3339, b.Timestamp)
	if terr == nil {
		issued = dateFa(when.In(tehran))
	}
	put("نسخه الکترونیکی", 20, true, 0)
	put("شناسه نسخه: "+b.ID, 10, false, 6)
	put("تاریخ صدور: "+issued, 11, false, 4)
	rule()

	type med struct{ name, qty, dose string }
	var meds []med
	var practitioner []rx.Identifier
	for _, e := range b.Entry {
		r := e.Resource
		name := ""
		if len(r.Name) > 0 {
			name = strings.TrimSpace(strings.Join(r.Name[0].Given, " ") + " " + r.Name[0].Family)
		}
		switch r.ResourceType {
		case "Patient":
			put("بیمار", 13, true, 6)
			put("نام: "+name, 12, false, 5)
			born := r.BirthDate
			if t, err := time.Parse("2006-01-02", r.BirthDate); err == nil {
				born = dateFa(t)
			}
			put("کد ملی: "+find(r.Identifier, rx.SystemNationalCode)+"      تاریخ تولد: "+born, 11, false, 4)
		case "Practitioner":
			practitioner = r.Identifier
		case "MedicationRequest":
			var doses []string
			for _, d := range r.Dosage {
				doses = append(doses, d.Text)
			}
			meds = append(meds, med{r.Medication.Text, persianDigits(fmt.Sprintf("%g", r.Dispense.Quantity.Value)) + " " + unitFa(r.Dispense.Quantity.Unit), strings.Join(doses, "؛ ")})
		}
	}
	if pr != nil && (find(practitioner, rx.SystemCouncilNumber) != pr.CouncilNumber ||
		pr.NationalCode != "" && find(practitioner, rx.SystemNationalCode) != pr.NationalCode) {
		return nil, ErrPrescriberMismatch
	}
	rule()
	put("داروها", 13, true, 6)
	for i, m := range meds {
		put(persianDigits(fmt.Sprint(i+1))+". "+m.name+"      تعداد: "+m.qty, 12, false, 7)
		if m.dose != "" {
			put("دستور مصرف: "+m.dose, 11, false, 3)
		}
	}
	rule()
	put("پزشک (از گواهی امضا)", 13, true, 6)
	if pr != nil {
		put("نام: "+pr.Name, 12, false, 5)
		put("شماره نظام پزشکی: "+pr.CouncilNumber+"      کد ملی: "+pr.NationalCode, 11, false, 4)
		if pr.Profession != "" {
			put("تخصص: "+pr.Profession, 11, false, 4)
		}
	} else {
		put("نام و شماره نظام پزشکی پزشک را امضای الکترونیکی این سند نشان می‌دهد.", 11, false, 5)
	}
	rule()
	put("این نسخه با امضای الکترونیکی پزشک (PAdES) مهر شده است. پیش از تحویل دارو امضا را بررسی کنید:", 9, false, 6)
	put("این فایل PDF را در صفحه بررسی نسخه سامانه بارگذاری کنید، یا فرمان mohr verify --roots root.pem rx.pdf را اجرا کنید.", 9, false, 3)
	putDir("Signed electronically (PAdES). Verify before dispensing: upload this PDF to the HIX verification page or run mohr verify.", 8, false, true, 5)

	if len(qr) > 0 {
		const size = 200.0 // points (70 mm), quiet zone included
		mod := size / float64(len(qr)+8)
		top := y - 8
		if top-size < 28 {
			return nil, ErrNoRoomForQR
		}
		for r, row := range qr {
			for c, dark := range row {
				if dark {
					pg.marks = append(pg.marks, [4]float64{left + float64(c+4)*mod, top - float64(r+5)*mod, mod, mod})
				}
			}
		}
		y = top - size
		putDir("Offline check: mohr qr verify", 7, false, true, 2)
	}
	created := time.Now().UTC().Format("20060102150405Z")
	if terr == nil {
		created = when.UTC().Format("20060102150405Z")
	}
	return writePDF(ts, pg, "نسخه الکترونیکی "+b.ID, created)
}

// unitFa names the dispensing units Mohr's prescriptions use in Persian; other units are printed as given.
func unitFa(u string) string {
	if fa, ok := map[string]string{"tablet": "قرص", "capsule": "کپسول", "inhaler": "اسپری", "vial": "ویال",
		"ampoule": "آمپول", "bottle": "شیشه", "tube": "تیوب", "sachet": "ساشه"}[strings.ToLower(u)]; ok {
		return fa
	}
	return u
}
