// Package rxgen generates realistic synthetic HIX prescriptions: FHIR R4 Bundles (application/fhir+json) with a
// Patient, a Practitioner and one to four MedicationRequests, using valid national codes
// (ids.NationalCodeCheckDigit), plausible council numbers, Persian names and common medicines. It is for tests,
// demos and benchmarks; no real person is described.
package rxgen

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/mohr-hix/mohr/internal/ids"
	"github.com/mohr-hix/mohr/signing/internal/rx"
)

// Physician is a prescriber: the data that also goes into the physician-signing certificate.
type Physician struct {
	NationalCode  string
	CouncilNumber string
	Given, Family string
	Specialty     string
}

// Generator makes prescriptions from a seeded pseudo-random source, so runs are reproducible.
type Generator struct {
	r *rand.Rand
	// Now is the clock for authoredOn and Bundle.timestamp; time.Now when nil.
	Now func() time.Time
}

// New returns a Generator seeded with seed.
func New(seed uint64) *Generator {
	return &Generator{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// NationalCode returns a random valid national code.
func (g *Generator) NationalCode() string {
	for {
		b := make([]byte, 9)
		for i := range b {
			b[i] = byte('0' + g.r.IntN(10))
		}
		c, _ := ids.NationalCodeCheckDigit(string(b))
		code := string(b) + string(c)
		if _, err := ids.NationalCode(code); err == nil {
			return code
		}
	}
}

var (
	givenM   = []string{"Ali", "Mohammad", "Reza", "Hossein", "Mehdi", "Amir", "Saeed", "Hamid", "Kaveh", "Dariush"}
	givenF   = []string{"Fatemeh", "Zahra", "Maryam", "Sara", "Leila", "Narges", "Shirin", "Parisa", "Roya", "Mina"}
	families = []string{"Ahmadi", "Hosseini", "Mohammadi", "Rezaei", "Karimi", "Moradi", "Jafari", "Rahimi", "Tehrani", "Shirazi", "Kazemi", "Ebrahimi"}
	special  = []string{"General Practitioner", "Internal Medicine", "Paediatrics", "Cardiology", "Psychiatry", "Infectious Diseases"}
	meds     = []struct{ atc, name, form, dose, unit string }{
		{"J01CA04", "Amoxicillin 500 mg capsule", "capsule", "1 capsule every 8 hours for 7 days", "capsule"},
		{"N02BE01", "Paracetamol 500 mg tablet", "tablet", "1-2 tablets every 6 hours as needed, max 8 a day", "tablet"},
		{"C09AA02", "Enalapril 10 mg tablet", "tablet", "1 tablet once daily", "tablet"},
		{"A10BA02", "Metformin 500 mg tablet", "tablet", "1 tablet twice daily with meals", "tablet"},
		{"C10AA05", "Atorvastatin 20 mg tablet", "tablet", "1 tablet at night", "tablet"},
		{"R06AE07", "Cetirizine 10 mg tablet", "tablet", "1 tablet once daily", "tablet"},
		{"A02BC01", "Omeprazole 20 mg capsule", "capsule", "1 capsule before breakfast", "capsule"},
		{"M01AE01", "Ibuprofen 400 mg tablet", "tablet", "1 tablet every 8 hours after food", "tablet"},
		{"N06AB06", "Sertraline 50 mg tablet", "tablet", "1 tablet every morning", "tablet"},
		{"R03AC02", "Salbutamol 100 microgram inhaler", "inhaler", "2 puffs as needed", "inhaler"},
	}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

// Physician returns a random prescriber.
func (g *Generator) Physician() Physician {
	return Physician{
		NationalCode:  g.NationalCode(),
		CouncilNumber: fmt.Sprintf("%d", 10000+g.r.IntN(190000)),
		Given:         pick(g.r, append(givenM[:len(givenM):len(givenM)], givenF...)),
		Family:        pick(g.r, families),
		Specialty:     pick(g.r, special),
	}
}

func (g *Generator) uuid() string {
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", g.r.Uint32(), g.r.Uint32()&0xffff, g.r.Uint32()&0xfff, 0x8000|g.r.Uint32()&0x3fff, g.r.Uint64()&0xffffffffffff)
}

type obj = map[string]any

// Prescription returns a FHIR R4 Bundle (type "collection") with a new Patient, doc as the Practitioner, and one
// to four MedicationRequests, as JSON.
func (g *Generator) Prescription(doc Physician) ([]byte, error) {
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	t := now().UTC().Truncate(time.Second)
	female := g.r.IntN(2) == 0
	given := pick(g.r, givenM)
	gender := "male"
	if female {
		given, gender = pick(g.r, givenF), "female"
	}
	birth := t.AddDate(-1-g.r.IntN(85), -g.r.IntN(12), -g.r.IntN(28))
	patID, pracID := g.uuid(), g.uuid()
	patient := obj{
		"resourceType": "Patient", "id": patID,
		"identifier": []obj{{"system": rx.SystemNationalCode, "value": g.NationalCode()}},
		"name":       []obj{{"family": pick(g.r, families), "given": []string{given}}},
		"gender":     gender, "birthDate": birth.Format("2006-01-02"),
	}
	practitioner := obj{
		"resourceType": "Practitioner", "id": pracID,
		"identifier": []obj{
			{"system": rx.SystemNationalCode, "value": doc.NationalCode},
			{"system": rx.SystemCouncilNumber, "value": doc.CouncilNumber},
		},
		"name":          []obj{{"family": doc.Family, "given": []string{doc.Given}, "prefix": []string{"Dr."}}},
		"qualification": []obj{{"code": obj{"text": doc.Specialty}}},
	}
	entries := []obj{
		{"fullUrl": "urn:uuid:" + patID, "resource": patient},
		{"fullUrl": "urn:uuid:" + pracID, "resource": practitioner},
	}
	n := 1 + g.r.IntN(4)
	for i := 0; i < n; i++ {
		m := meds[g.r.IntN(len(meds))]
		id := g.uuid()
		entries = append(entries, obj{"fullUrl": "urn:uuid:" + id, "resource": obj{
			"resourceType": "MedicationRequest", "id": id,
			"status": "active", "intent": "order",
			"medicationCodeableConcept": obj{
				"coding": []obj{{"system": "http://www.whocc.no/atc", "code": m.atc, "display": m.name}},
				"text":   m.name,
			},
			"subject":           obj{"reference": "urn:uuid:" + patID},
			"requester":         obj{"reference": "urn:uuid:" + pracID},
			"authoredOn":        t.Format(time.RFC3339),
			"dosageInstruction": []obj{{"text": m.dose}},
			"dispenseRequest": obj{
				"numberOfRepeatsAllowed": g.r.IntN(3),
				"quantity":               obj{"value": 10 + 10*g.r.IntN(6), "unit": m.unit},
			},
		}})
	}
	bundle := obj{
		"resourceType": "Bundle", "id": g.uuid(), "type": "collection",
		"timestamp": t.Format(time.RFC3339), "entry": entries,
	}
	return json.Marshal(bundle)
}
