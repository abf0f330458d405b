package api

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"
)

// ownByRecord is a route's ownParam when ownership is a property of the object read, not of the path: the
// enforce middleware lets role "own" through and the handler checks the object (ownsRecord) before answering.
const ownByRecord = "(record)"

// rxReadersAll may read every stored prescription; facilities and physicians read their own (ownsRecord).
var rxReadersAll = []Role{RolePharmacy, RoleInsurer}

// StoredPrescription is a prescription the exchange keeps: its signature as stored (B-LT at ingestion, B-LTA
// after archive-timestamp renewal) and the sealed validation report of its ingestion.
type StoredPrescription struct {
	ID                      string    `json:"id"`
	ReceivedAt              time.Time `json:"receivedAt"`
	SigningTime             time.Time `json:"signingTime"`
	Indication              string    `json:"indication"`
	PrescriberCouncilNumber string    `json:"prescriberCouncilNumber"`
	// Signature is the CMS SignedData (DER, base64 in JSON), enveloping the FHIR Bundle.
	Signature []byte `json:"signature"`
	// SealedReport is the ingestion's validation report, CMS-sealed by the exchange (DER, base64 in JSON).
	SealedReport []byte `json:"sealedReport"`
	// Submitter is who submitted it, as SubmitterOf names callers; not sent.
	Submitter string `json:"-"`
}

// PrescriptionReader reads stored prescriptions; an unknown id is an error wrapping ca.ErrNotFound.
type PrescriptionReader interface {
	Prescription(ctx context.Context, id string) (StoredPrescription, error)
}

// SubmitterOf names a caller as the submitter of a prescription: "facility:<SIAM ID>" for a facility's adapter,
// "physician:<council number>" for a physician, else the audit actor. The ingestor records it; read access
// compares it.
func SubmitterOf(id Identity) string {
	switch {
	case id.Role == RoleFacility && id.SIAMID != "":
		return "facility:" + id.SIAMID
	case id.Role == RolePhysician && id.CouncilNumber != "":
		return "physician:" + id.CouncilNumber
	}
	return id.Actor()
}

// ownsRecord says whether a caller with access "own" may read p: the facility that submitted it, the
// prescriber (by council number) or the physician who submitted it.
func ownsRecord(id Identity, p StoredPrescription) bool {
	switch id.Role {
	case RoleFacility:
		return id.SIAMID != "" && p.Submitter == SubmitterOf(id)
	case RolePhysician:
		return id.CouncilNumber != "" && (p.PrescriberCouncilNumber == id.CouncilNumber || p.Submitter == SubmitterOf(id))
	}
	return false
}

func (s *Server) handleGetPrescription(w http.ResponseWriter, r *http.Request) {
	id, ok := IdentityFrom(r.Context())
	if !ok {
		s.problem(w, probForbidden, "")
		return
	}
	p, err := s.svc.Prescriptions.Prescription(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !slices.Contains(rxReadersAll, id.Role) && !ownsRecord(id, p) {
		s.problem(w, probForbidden, "")
		return
	}
	writeJSON(w, http.StatusOK, p)
}
