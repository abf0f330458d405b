// Package rx holds what the prescription generator (signing/rxgen) and the verifier (signing) must agree on
// about an HIX prescription: the FHIR R4 identifier systems and the few Bundle fields the verifier reads.
package rx

// Identifier systems (FHIR R4 Identifier.system) of the HIX prescription profile. They are URNs under Mohr's
// placeholder arc (see internal/hixext) until the Ministry publishes its own naming systems.
const (
	SystemNationalCode  = "urn:oid:2.999.1742.5.1" // Iranian national code (کد ملی)
	SystemCouncilNumber = "urn:oid:2.999.1742.5.2" // medical-council number (شماره نظام پزشکی)
)

// Identifier is a FHIR R4 Identifier, reduced.
type Identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// Resource is the part of any FHIR resource the verifier reads.
type Resource struct {
	ResourceType string       `json:"resourceType"`
	ID           string       `json:"id,omitempty"`
	Identifier   []Identifier `json:"identifier,omitempty"`
}

// Entry is a Bundle.entry, reduced.
type Entry struct {
	FullURL  string   `json:"fullUrl"`
	Resource Resource `json:"resource"`
}

// Bundle is a FHIR R4 Bundle, reduced to what verification reads.
type Bundle struct {
	ResourceType string  `json:"resourceType"`
	ID           string  `json:"id,omitempty"` // the prescription's ID (Bundle.id), what a claim names
	Type         string  `json:"type"`
	Entry        []Entry `json:"entry"`
}

// Find returns the value of the first identifier of r with system, or "".
func (r *Resource) Find(system string) string {
	for _, id := range r.Identifier {
		if id.System == system {
			return id.Value
		}
	}
	return ""
}
