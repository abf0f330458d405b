package offline

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/mohr-hix/mohr/internal/ids"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/internal/rx"
)

// PayloadVersion is the version of the payload schema this package writes and reads (docs/offline.md).
const PayloadVersion = 1

// Limits on what a payload may hold; a QR code of version 25 cannot carry more anyway.
const (
	maxMedicines = 10
	maxField     = 200
)

// Medicine is one medicine of the prescription: its ATC code and dosage (FHIR MedicationRequest).
type Medicine struct {
	Code     string `cbor:"1,keyasint" json:"code"`               // ATC code (medicationCodeableConcept.coding.code)
	Dosage   string `cbor:"2,keyasint" json:"dosage"`             // dosageInstruction[0].text
	Quantity uint32 `cbor:"3,keyasint,omitempty" json:"quantity"` // dispenseRequest.quantity.value
	Unit     string `cbor:"4,keyasint,omitempty" json:"unit"`     // dispenseRequest.quantity.unit
	Repeats  uint32 `cbor:"5,keyasint,omitempty" json:"repeats"`  // dispenseRequest.numberOfRepeatsAllowed
}

// Payload is the content of the offline QR code: a compact, canonical CBOR map (RFC 8949 §4.2.1 core
// deterministic encoding) with integer keys, signed as a COSE_Sign1 (RFC 9052 §4.2). docs/offline.md gives the
// schema. ContentSHA256 and SignatureSHA256 bind it to the CAdES signature of the full prescription.
type Payload struct {
	Version         uint       `cbor:"1,keyasint" json:"version"`
	ID              []byte     `cbor:"2,keyasint" json:"id"`     // 16 bytes: the Bundle.id UUID
	Issued          int64      `cbor:"3,keyasint" json:"issued"` // seconds since 1970 UTC (authoredOn)
	Patient         string     `cbor:"4,keyasint" json:"patientNationalCode"`
	Prescriber      string     `cbor:"5,keyasint" json:"prescriberCouncilNumber"`
	Medicines       []Medicine `cbor:"6,keyasint" json:"medicines"`
	ContentSHA256   []byte     `cbor:"7,keyasint" json:"contentSha256"`   // SHA-256 of the FHIR Bundle = CAdES message-digest
	SignatureSHA256 []byte     `cbor:"8,keyasint" json:"signatureSha256"` // SHA-256 of the CAdES SignerInfo signature value
}

// IssuedAt returns Issued as a time.
func (p *Payload) IssuedAt() time.Time { return time.Unix(p.Issued, 0).UTC() }

// IDString returns the ID as a UUID string.
func (p *Payload) IDString() string {
	h := hex.EncodeToString(p.ID)
	if len(h) != 32 {
		return h
	}
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	// decMode reads untrusted CBOR strictly: no duplicate or unknown map keys, no indefinite lengths, no tags,
	// bounded nesting and sizes. Canonical form is checked by re-encoding (see unmarshalCanonical).
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			DupMapKey:         cbor.DupMapKeyEnforcedAPF,
			IndefLength:       cbor.IndefLengthForbidden,
			TagsMd:            cbor.TagsForbidden,
			ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
			MaxNestedLevels:   8,
			MaxArrayElements:  100000,
			MaxMapPairs:       64,
			UTF8:              cbor.UTF8RejectInvalid,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// ErrPayload is returned for a payload that is malformed, not canonical or outside the schema.
var ErrPayload = errors.New("offline: malformed payload")

// Marshal returns the canonical CBOR of p after checking it against the schema.
func (p *Payload) Marshal() ([]byte, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	return encMode.Marshal(p)
}

// ParsePayload reads a payload. It refuses anything but the one canonical encoding of a valid payload, so a
// payload has exactly one byte form (no malleability beyond the signature itself).
func ParsePayload(b []byte) (*Payload, error) {
	var p Payload
	if err := unmarshalCanonical(b, &p); err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return &p, nil
}

func unmarshalCanonical(b []byte, v any) error {
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrPayload, err)
	}
	again, err := encMode.Marshal(v)
	if err != nil || !bytes.Equal(again, b) {
		return fmt.Errorf("%w: not in canonical CBOR", ErrPayload)
	}
	return nil
}

func (p *Payload) check() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrPayload}, a...)...) }
	switch {
	case p.Version != PayloadVersion:
		return bad("version %d", p.Version)
	case len(p.ID) != 16:
		return bad("id must be 16 bytes")
	case p.Issued <= 0:
		return bad("issue date missing")
	case len(p.Medicines) == 0 || len(p.Medicines) > maxMedicines:
		return bad("%d medicines (1 to %d allowed)", len(p.Medicines), maxMedicines)
	case len(p.ContentSHA256) != sha256.Size || len(p.SignatureSHA256) != sha256.Size:
		return bad("binding hashes must be SHA-256")
	}
	if c, err := ids.NationalCode(p.Patient); err != nil || c != p.Patient {
		return bad("patient national code")
	}
	if c, err := ids.CouncilNumber(p.Prescriber); err != nil || c != p.Prescriber {
		return bad("prescriber council number")
	}
	for _, m := range p.Medicines {
		if m.Code == "" || len(m.Code) > 32 || len(m.Dosage) > maxField || len(m.Unit) > 32 {
			return bad("medicine code or dosage")
		}
	}
	return nil
}

// FromPrescription builds the payload of a signed prescription: content is the FHIR R4 Bundle (JSON) and
// cades the HIX-Rx-CAdES signature that envelopes it. The patient and prescriber are read with the verifier's
// strict reader (signing/internal/rx); the medicines from each MedicationRequest.
func FromPrescription(content, cades []byte) (*Payload, error) {
	bind, err := signing.Binding(cades)
	if err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}
	if sha256.Sum256(content) != bind.ContentSHA256 {
		return nil, fmt.Errorf("%w: the signature does not envelope this prescription", ErrPayload)
	}
	b, err := rx.Parse(content)
	if err != nil || b.ResourceType != "Bundle" {
		return nil, fmt.Errorf("%w: not a FHIR Bundle", ErrPayload)
	}
	p := &Payload{Version: PayloadVersion, ContentSHA256: bind.ContentSHA256[:], SignatureSHA256: bind.SignatureSHA256[:]}
	for _, e := range b.Entry {
		switch e.Resource.ResourceType {
		case "Patient":
			p.Patient = ids.NormalizeDigits(e.Resource.Find(rx.SystemNationalCode))
		case "Practitioner":
			p.Prescriber = ids.NormalizeDigits(e.Resource.Find(rx.SystemCouncilNumber))
		}
	}
	var doc fhirBundle
	if err := json.Unmarshal(content, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPayload, err)
	}
	p.ID = uuidBytes(doc.ID)
	if p.ID == nil {
		p.ID = bind.ContentSHA256[:16] // no UUID: a stable ID derived from the content
	}
	issued := "" // authoredOn of the first MedicationRequest, else Bundle.timestamp
	for _, e := range doc.Entry {
		r := e.Resource
		if r.ResourceType != "MedicationRequest" {
			continue
		}
		if issued == "" {
			issued = r.AuthoredOn
		}
		var m Medicine
		for _, c := range r.Medication.Coding {
			if c.Code != "" {
				m.Code = c.Code
				break
			}
		}
		if len(r.Dosage) > 0 {
			m.Dosage = r.Dosage[0].Text
		}
		if q := r.Dispense.Quantity; q != nil {
			if q.Value < 0 || q.Value > math.MaxUint32 || q.Value != math.Trunc(q.Value) {
				return nil, fmt.Errorf("%w: quantity must be a whole number", ErrPayload)
			}
			m.Quantity, m.Unit = uint32(q.Value), q.Unit
		}
		if r.Dispense.Repeats > 0 {
			m.Repeats = uint32(r.Dispense.Repeats)
		}
		p.Medicines = append(p.Medicines, m)
	}
	if issued == "" {
		issued = doc.Timestamp
	}
	t, err := parseFHIRTime(issued)
	if err != nil {
		return nil, fmt.Errorf("%w: issue date: %v", ErrPayload, err)
	}
	p.Issued = t.Unix()
	if err := p.check(); err != nil {
		return nil, err
	}
	return p, nil
}

// fhirBundle is the part of a FHIR R4 prescription Bundle the payload needs beyond rx.Bundle.
type fhirBundle struct {
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
	Entry     []struct {
		Resource struct {
			ResourceType string `json:"resourceType"`
			AuthoredOn   string `json:"authoredOn"`
			Medication   struct {
				Coding []struct {
					Code string `json:"code"`
				} `json:"coding"`
			} `json:"medicationCodeableConcept"`
			Dosage []struct {
				Text string `json:"text"`
			} `json:"dosageInstruction"`
			Dispense struct {
				Repeats  uint32 `json:"numberOfRepeatsAllowed"`
				Quantity *struct {
					Value float64 `json:"value"`
					Unit  string  `json:"unit"`
				} `json:"quantity"`
			} `json:"dispenseRequest"`
		} `json:"resource"`
	} `json:"entry"`
}

func parseFHIRTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	return time.Parse("2006-01-02", s)
}

func uuidBytes(s string) []byte {
	s = strings.ReplaceAll(strings.TrimPrefix(s, "urn:uuid:"), "-", "")
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return nil
	}
	return b
}
