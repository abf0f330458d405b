package agent

import (
	"context"
	"encoding/json"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// PINRequest tells a PIN prompt what the PIN is about to allow, so the physician sees it before typing:
// the documents of a one-off signing call (each summarised as patient initials and medicines), or the limits
// of a comfort session. The agent puts it in the context it passes to Config.PIN; PINRequestFrom reads it.
// A prompt may also wait for the card's answer to the PIN (Outcome).
type PINRequest struct {
	// Documents summarises the documents to be signed now; empty when a comfort session is being opened.
	Documents []DocumentSummary
	// MaxSignatures and Duration bound what the PIN entry allows (for a one-off call: len(Documents)).
	MaxSignatures int
	Duration      time.Duration
	// Signer is the certificate holder's name on the card.
	Signer  string
	outcome chan error
}

// DocumentSummary is what a person needs to recognise a prescription: the EMR's reference, the patient's
// initials (never the full name or national code) and the medicines.
type DocumentSummary struct {
	ID              string
	PatientInitials string
	Medicines       []string
}

type pinRequestKey struct{}

// PINRequestFrom returns the request the agent attached to a PIN prompt's context.
func PINRequestFrom(ctx context.Context) (*PINRequest, bool) {
	r, ok := ctx.Value(pinRequestKey{}).(*PINRequest)
	return r, ok
}

// Outcome waits for the card's answer to the PIN entered: nil when the card accepted it, a *PINError with the
// tries left when not, another error when the card could not be used. It returns ctx's error if ctx ends
// first.
func (r *PINRequest) Outcome(ctx context.Context) error {
	select {
	case err := <-r.outcome:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pinContext returns ctx carrying the request for a PIN entry that allows max signatures within d (the
// documents come from withDocuments), and the function the agent calls with the card's answer.
func pinContext(ctx context.Context, max int, d time.Duration, signer string) (context.Context, func(error)) {
	req := &PINRequest{MaxSignatures: max, Duration: d, Signer: signer, outcome: make(chan error, 1)}
	if docs, ok := ctx.Value(documentsKey{}).([]Document); ok {
		for _, doc := range docs {
			req.Documents = append(req.Documents, summarise(doc))
		}
	}
	return context.WithValue(ctx, pinRequestKey{}, req), func(err error) {
		select {
		case req.outcome <- err:
		default:
		}
	}
}

type documentsKey struct{}

// withDocuments attaches the documents of a one-off signing call, for the PIN prompt's summary.
func withDocuments(ctx context.Context, docs []Document) context.Context {
	return context.WithValue(ctx, documentsKey{}, docs)
}

// DocumentsFrom returns the documents of the one-off signing call a KeyOpener is opened for (nil for a
// comfort session): a remote key activates itself for exactly these documents.
func DocumentsFrom(ctx context.Context) []Document {
	d, _ := ctx.Value(documentsKey{}).([]Document)
	return d
}

// summarise reads the patient's name and the medicines from a FHIR R4 Bundle. A document it cannot read is
// summarised by its reference only: the prompt then shows that nothing could be read, and the physician
// decides.
func summarise(doc Document) DocumentSummary {
	s := DocumentSummary{ID: clip(doc.ID, 80)}
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
				Name         []struct {
					Text   string   `json:"text"`
					Family string   `json:"family"`
					Given  []string `json:"given"`
				} `json:"name"`
				Medication *struct {
					Text   string `json:"text"`
					Coding []struct {
						Display string `json:"display"`
					} `json:"coding"`
				} `json:"medicationCodeableConcept"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if json.Unmarshal(doc.Content, &b) != nil {
		return s
	}
	for _, e := range b.Entry {
		r := e.Resource
		switch r.ResourceType {
		case "Patient":
			if len(r.Name) > 0 && s.PatientInitials == "" {
				n := r.Name[0]
				parts := append(append([]string{}, n.Given...), n.Family)
				if n.Family == "" && len(n.Given) == 0 {
					parts = strings.Fields(n.Text)
				}
				s.PatientInitials = initials(parts)
			}
		case "MedicationRequest":
			if m := r.Medication; m != nil {
				name := m.Text
				if name == "" && len(m.Coding) > 0 {
					name = m.Coding[0].Display
				}
				if name != "" && len(s.Medicines) < 10 {
					s.Medicines = append(s.Medicines, clip(name, 120))
				}
			}
		}
	}
	return s
}

// initials returns the first letter of each name part, each followed by a full stop: "م. ا." or "S. A.".
func initials(parts []string) string {
	var out []string
	for _, p := range parts {
		p = strings.TrimSpace(p)
		r, _ := utf8.DecodeRuneInString(p)
		if r != utf8.RuneError && unicode.IsLetter(r) {
			out = append(out, string(r)+".")
		}
	}
	return strings.Join(out, " ")
}
