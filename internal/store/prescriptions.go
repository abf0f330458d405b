package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// PrescriptionRecord is a signed prescription the exchange accepted: its B-LT signature (which envelopes the
// FHIR Bundle) and the sealed validation report. The content is not stored twice: it is inside Signature.
type PrescriptionRecord struct {
	ID             string // hex SHA-256 of the FHIR Bundle
	ReceivedAt     time.Time
	SigningTime    time.Time
	PrescriberCode string
	CouncilNumber  string
	PatientCode    string
	Indication     string
	Signature      []byte
	SealedReport   []byte
}

// SavePrescription stores rec and appends ev in the same transaction. Saving the same ID again is
// ca.ErrDuplicateSerial's sibling: an error wrapping ca.ErrConflict, and nothing changes.
func (c *core) SavePrescription(ctx context.Context, rec PrescriptionRecord, ev audit.Event) error {
	if rec.ID == "" || len(rec.Signature) == 0 {
		return errors.New("store: save prescription: empty id or signature")
	}
	return c.change(ctx, "save prescription", ev, func(q querier) (bool, error) {
		_, err := q.exec(ctx, `INSERT INTO prescriptions (id, received_us, signing_us, prescriber_code, council_number,
	patient_code, indication, signature, sealed_report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			rec.ID, toUS(rec.ReceivedAt), toUS(rec.SigningTime), rec.PrescriberCode, rec.CouncilNumber,
			rec.PatientCode, rec.Indication, rec.Signature, rec.SealedReport)
		if err != nil && c.b.isUniqueViolation(err) {
			return false, fmt.Errorf("%w: prescription %s already stored", ca.ErrConflict, rec.ID)
		}
		return err == nil, err
	})
}

// Prescription returns one stored prescription, or an error wrapping ca.ErrNotFound.
func (c *core) Prescription(ctx context.Context, id string) (PrescriptionRecord, error) {
	var r PrescriptionRecord
	var recv, sign int64
	err := c.b.reader().queryRow(ctx, `SELECT id, received_us, signing_us, prescriber_code, council_number, patient_code,
	indication, signature, sealed_report FROM prescriptions WHERE id = ?`, id).Scan(&r.ID, &recv, &sign,
		&r.PrescriberCode, &r.CouncilNumber, &r.PatientCode, &r.Indication, &r.Signature, &r.SealedReport)
	if err != nil {
		if errors.Is(err, errNoRows) {
			return r, fmt.Errorf("store: prescription %s: %w", id, ca.ErrNotFound)
		}
		return r, opError("prescription", err)
	}
	r.ReceivedAt, r.SigningTime = fromUS(recv), fromUS(sign)
	return r, nil
}
