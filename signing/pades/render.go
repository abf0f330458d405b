// Package pades makes and checks the printable form of a prescription: a one-page PDF rendered from the FHIR
// Bundle, signed with github.com/digitorus/pdfsign (PAdES-style, ETSI EN 319 142-1, with an RFC 3161
// signature timestamp and embedded OCSP), and verified by Mohr's own verifier.
package pades

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"time"

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
				Prefix []string `json:"prefix"`
			} `json:"name"`
			BirthDate  string `json:"birthDate"`
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

// Render returns a one-page A4 PDF (PDF 1.7, standard Helvetica fonts) showing the prescription in
// bundleJSON. Text outside ASCII is replaced by '?': the standard fonts have no Persian glyphs.
func Render(bundleJSON []byte, signer *x509.Certificate) ([]byte, error) {
	var b bundle
	if err := json.Unmarshal(bundleJSON, &b); err != nil {
		return nil, fmt.Errorf("pades: prescription: %w", err)
	}
	type line struct {
		bold bool
		size int
		text string
	}
	lines := []line{{true, 18, "Electronic prescription"}, {false, 10, "Prescription " + b.ID}, {false, 10, "Issued " + b.Timestamp}, {false, 10, ""}}
	var meds []line
	n := 0
	for _, e := range b.Entry {
		r := e.Resource
		name := ""
		if len(r.Name) > 0 {
			name = strings.TrimSpace(strings.Join(r.Name[0].Prefix, " ") + " " + strings.Join(r.Name[0].Given, " ") + " " + r.Name[0].Family)
		}
		switch r.ResourceType {
		case "Practitioner":
			lines = append(lines, line{true, 12, "Prescriber: " + name},
				line{false, 10, "Medical council no. " + find(r.Identifier, rx.SystemCouncilNumber) + "   National code " + find(r.Identifier, rx.SystemNationalCode)})
		case "Patient":
			lines = append(lines, line{true, 12, "Patient: " + name},
				line{false, 10, "National code " + find(r.Identifier, rx.SystemNationalCode) + "   Born " + r.BirthDate})
		case "MedicationRequest":
			n++
			meds = append(meds, line{true, 11, fmt.Sprintf("%d. %s   (%g %s)", n, r.Medication.Text, r.Dispense.Quantity.Value, r.Dispense.Quantity.Unit)})
			for _, d := range r.Dosage {
				meds = append(meds, line{false, 10, "     " + d.Text})
			}
		}
	}
	lines = append(lines, line{false, 10, ""}, line{true, 12, "Medicines"})
	lines = append(lines, meds...)
	lines = append(lines, line{false, 10, ""}, line{false, 8, "Signed electronically (HIX-Rx). The signature of this document is its seal; verify it before dispensing."})

	var content bytes.Buffer
	content.WriteString("BT\n")
	y := 800
	for _, l := range lines {
		font := "F1"
		if l.bold {
			font = "F2"
		}
		y -= l.size + 8
		fmt.Fprintf(&content, "/%s %d Tf 1 0 0 1 50 %d Tm (%s) Tj\n", font, l.size, y, pdfString(l.text))
	}
	content.WriteString("ET\n")

	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R /F2 5 0 R >> >> /Contents 6 0 R >>",
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
		fmt.Sprintf("<< /Length %d >>\nstream\n%sendstream", content.Len(), content.String()),
		fmt.Sprintf("<< /Title (Prescription %s) /Producer (Mohr) /CreationDate (D:%s) >>", pdfString(b.ID), time.Now().UTC().Format("20060102150405Z")),
	}
	var out bytes.Buffer
	out.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = out.Len()
		fmt.Fprintf(&out, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := out.Len()
	fmt.Fprintf(&out, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&out, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&out, "trailer\n<< /Size %d /Root 1 0 R /Info 7 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return out.Bytes(), nil
}

// pdfString escapes s for a PDF literal string, replacing non-ASCII with '?'.
func pdfString(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '(' || r == ')' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 32 || r > 126:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
