package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// prescription is an HIX prescription (a FHIR R4 Bundle) as a person reads it.
type prescription struct {
	PatientName         string
	PatientNationalCode string
	PatientBirthDate    string
	PatientGender       string
	PrescriberName      string
	PrescriberCouncil   string
	PrescriberSpecialty string
	Written             time.Time
	Medicines           []medicine
}

type medicine struct {
	Name     string
	Dosage   string
	Quantity string // value and unit, e.g. "20 tablet"
	Repeats  int
}

// The FHIR R4 members the page shows (Patient, Practitioner, MedicationRequest), reduced.
type fhirName struct {
	Text   string   `json:"text"`
	Family string   `json:"family"`
	Given  []string `json:"given"`
	Prefix []string `json:"prefix"`
}

type fhirIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type fhirResource struct {
	ResourceType  string           `json:"resourceType"`
	Identifier    []fhirIdentifier `json:"identifier"`
	Name          []fhirName       `json:"name"`
	Gender        string           `json:"gender"`
	BirthDate     string           `json:"birthDate"`
	Qualification []struct {
		Code struct {
			Text string `json:"text"`
		} `json:"code"`
	} `json:"qualification"`
	Medication *struct {
		Text   string `json:"text"`
		Coding []struct {
			Display string `json:"display"`
		} `json:"coding"`
	} `json:"medicationCodeableConcept"`
	AuthoredOn string `json:"authoredOn"`
	Dosage     []struct {
		Text string `json:"text"`
	} `json:"dosageInstruction"`
	Dispense *struct {
		Repeats  int `json:"numberOfRepeatsAllowed"`
		Quantity *struct {
			Value json.Number `json:"value"`
			Unit  string      `json:"unit"`
		} `json:"quantity"`
	} `json:"dispenseRequest"`
}

type fhirBundle struct {
	ResourceType string `json:"resourceType"`
	Timestamp    string `json:"timestamp"`
	Entry        []struct {
		Resource fhirResource `json:"resource"`
	} `json:"entry"`
}

// The identifier systems of the HIX prescription profile (signing/internal/rx).
const (
	systemNationalCode  = "urn:oid:2.999.1742.5.1"
	systemCouncilNumber = "urn:oid:2.999.1742.5.2"
)

// errDuplicateKey: a JSON object repeats a member. Two JSON readers may then see different values; the page
// refuses to show such content rather than show something the verifier did not read.
var errDuplicateKey = errors.New("web: prescription repeats a JSON member")

// parsePrescription reads the Bundle for display. It refuses a document with a repeated member anywhere, so
// what the page shows is what every JSON reader, the verifier's included, reads.
func parsePrescription(b []byte) (*prescription, error) {
	if !json.Valid(b) {
		return nil, errors.New("web: prescription is not one JSON value")
	}
	if err := noDuplicateKeys(b); err != nil {
		return nil, err
	}
	var bd fhirBundle
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&bd); err != nil {
		return nil, fmt.Errorf("web: prescription: %w", err)
	}
	if bd.ResourceType != "Bundle" {
		return nil, errors.New("web: prescription is not a FHIR Bundle")
	}
	p := &prescription{}
	var authored time.Time // the earliest MedicationRequest.authoredOn: the date the physician wrote
	for _, e := range bd.Entry {
		res := e.Resource
		switch res.ResourceType {
		case "Patient":
			p.PatientName = personName(res.Name, false)
			p.PatientNationalCode = find(res.Identifier, systemNationalCode)
			p.PatientBirthDate, p.PatientGender = res.BirthDate, res.Gender
		case "Practitioner":
			p.PrescriberName = personName(res.Name, true)
			p.PrescriberCouncil = find(res.Identifier, systemCouncilNumber)
			if len(res.Qualification) > 0 {
				p.PrescriberSpecialty = res.Qualification[0].Code.Text
			}
		case "MedicationRequest":
			m := medicine{}
			if res.Medication != nil {
				m.Name = res.Medication.Text
				if m.Name == "" && len(res.Medication.Coding) > 0 {
					m.Name = res.Medication.Coding[0].Display
				}
			}
			var dos []string
			for _, d := range res.Dosage {
				if d.Text != "" {
					dos = append(dos, d.Text)
				}
			}
			m.Dosage = strings.Join(dos, "; ")
			if d := res.Dispense; d != nil {
				m.Repeats = d.Repeats
				if q := d.Quantity; q != nil && q.Value != "" {
					m.Quantity = strings.TrimSpace(q.Value.String() + " " + q.Unit)
				}
			}
			if t, err := time.Parse(time.RFC3339, res.AuthoredOn); err == nil && (authored.IsZero() || t.Before(authored)) {
				authored = t
			}
			p.Medicines = append(p.Medicines, m)
		}
	}
	p.Written = authored
	if t, err := time.Parse(time.RFC3339, bd.Timestamp); err == nil && p.Written.IsZero() {
		p.Written = t
	}
	return p, nil
}

func find(ids []fhirIdentifier, system string) string {
	for _, id := range ids {
		if id.System == system {
			return id.Value
		}
	}
	return ""
}

func personName(ns []fhirName, prefix bool) string {
	if len(ns) == 0 {
		return ""
	}
	n := ns[0]
	if n.Text != "" {
		return n.Text
	}
	var parts []string
	if prefix {
		parts = append(parts, n.Prefix...)
	}
	parts = append(parts, n.Given...)
	if n.Family != "" {
		parts = append(parts, n.Family)
	}
	return strings.Join(parts, " ")
}

// noDuplicateKeys walks b's JSON tokens and fails on an object that repeats a member name.
func noDuplicateKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		obj  bool
		keys map[string]bool
		key  bool // the next string token in an object is a key
	}
	var stack []*frame
	for depth := 0; ; {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("web: prescription: %w", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				depth--
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].key = true
				}
				continue
			}
			k := tok.(string)
			if top.keys[k] {
				return errDuplicateKey
			}
			top.keys[k] = true
			top.key = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, keys: map[string]bool{}, key: true})
			depth++
			if depth > 64 {
				return errors.New("web: prescription nested too deeply")
			}
		case json.Delim('['):
			stack = append(stack, &frame{})
			depth++
			if depth > 64 {
				return errors.New("web: prescription nested too deeply")
			}
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			depth--
			if len(stack) > 0 && stack[len(stack)-1].obj {
				stack[len(stack)-1].key = true
			}
		default:
			// A scalar value: in an object, the next token is a key again.
			if top != nil && top.obj {
				top.key = true
			}
		}
	}
}
