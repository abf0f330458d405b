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
	// Submitter is the API identity that submitted it ("<role>:<subject>"); read access depends on it.
	Submitter string
	// ArchiveDue is when its archive timestamp is next to be renewed; zero: never.
	ArchiveDue time.Time
}

// SavePrescription stores rec and appends ev in the same transaction. Saving the same ID again is
// ca.ErrDuplicateSerial's sibling: an error wrapping ca.ErrConflict, and nothing changes. Concurrent saves
// share one durable transaction (group commit, groupcommit.go): each returns once its own record and event are
// committed, and one that fails (a duplicate, an event that cannot be stored) fails alone.
func (c *core) SavePrescription(ctx context.Context, rec PrescriptionRecord, ev audit.Event) error {
	if rec.ID == "" || len(rec.Signature) == 0 {
		return errors.New("store: save prescription: empty id or signature")
	}
	ctx = context.WithoutCancel(ctx) // once queued, the change is carried out (changeGrouped)
	return c.changeGrouped(ctx, "save prescription", ev, func(q querier) (bool, error) {
		_, err := q.exec(ctx, `INSERT INTO prescriptions (id, received_us, signing_us, prescriber_code, council_number,
	patient_code, indication, signature, sealed_report, submitter, archive_due_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			rec.ID, toUS(rec.ReceivedAt), toUS(rec.SigningTime), rec.PrescriberCode, rec.CouncilNumber,
			rec.PatientCode, rec.Indication, rec.Signature, rec.SealedReport, rec.Submitter, dueUS(rec.ArchiveDue))
		if err != nil && c.b.isUniqueViolation(err) {
			return false, fmt.Errorf("%w: prescription %s already stored", ca.ErrConflict, rec.ID)
		}
		return err == nil, err
	})
}

// Prescription returns one stored prescription, or an error wrapping ca.ErrNotFound.
func (c *core) Prescription(ctx context.Context, id string) (PrescriptionRecord, error) {
	r, err := scanPrescription(c.b.reader().queryRow(ctx, `SELECT `+prescriptionColumns+` FROM prescriptions WHERE id = ?`, id))
	if err != nil {
		if errors.Is(err, errNoRows) {
			return r, fmt.Errorf("store: prescription %s: %w", id, ca.ErrNotFound)
		}
		return r, opError("prescription", err)
	}
	return r, nil
}

const prescriptionColumns = `id, received_us, signing_us, prescriber_code, council_number, patient_code,
	indication, signature, sealed_report, submitter, archive_due_us`

func scanPrescription(row interface{ Scan(...any) error }) (PrescriptionRecord, error) {
	var r PrescriptionRecord
	var recv, sign, due int64
	err := row.Scan(&r.ID, &recv, &sign, &r.PrescriberCode, &r.CouncilNumber, &r.PatientCode, &r.Indication,
		&r.Signature, &r.SealedReport, &r.Submitter, &due)
	r.ReceivedAt, r.SigningTime = fromUS(recv), fromUS(sign)
	if due > 0 {
		r.ArchiveDue = fromUS(due)
	}
	return r, err
}

func dueUS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return toUS(t)
}

// PrescriptionsDue returns up to limit prescriptions whose archive timestamp is due at or before t, the most
// overdue first.
func (c *core) PrescriptionsDue(ctx context.Context, t time.Time, limit int) ([]PrescriptionRecord, error) {
	rs, err := c.b.reader().query(ctx, `SELECT `+prescriptionColumns+` FROM prescriptions
	WHERE archive_due_us > 0 AND archive_due_us <= ? ORDER BY archive_due_us, id LIMIT ?`, toUS(t), limit)
	if err != nil {
		return nil, opError("prescriptions due", err)
	}
	defer rs.Close()
	var out []PrescriptionRecord
	for rs.Next() {
		r, err := scanPrescription(rs)
		if err != nil {
			return nil, opError("prescriptions due", err)
		}
		out = append(out, r)
	}
	return out, opError("prescriptions due", rs.Err())
}

// ErrStaleSignature: UpdatePrescriptionSignature found another signature than the one it was to replace
// (another node renewed it first).
var ErrStaleSignature = errors.New("store: prescription signature changed meanwhile")

// UpdatePrescriptionSignature replaces the stored signature of id (an archive-timestamp renewal) if it is still
// old, sets the next due time, and appends ev in the same transaction.
func (c *core) UpdatePrescriptionSignature(ctx context.Context, id string, old, sig []byte, due time.Time, ev audit.Event) error {
	if len(sig) == 0 {
		return errors.New("store: update prescription: empty signature")
	}
	return c.change(ctx, "update prescription", ev, func(q querier) (bool, error) {
		n, err := q.exec(ctx, `UPDATE prescriptions SET signature = ?, archive_due_us = ? WHERE id = ? AND signature = ?`,
			sig, dueUS(due), id, old)
		if err != nil {
			return false, err
		}
		if n == 0 {
			return false, fmt.Errorf("%w: %s", ErrStaleSignature, id)
		}
		return true, nil
	})
}
