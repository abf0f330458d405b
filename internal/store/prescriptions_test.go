package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

type prescriptionStore interface {
	SavePrescription(context.Context, PrescriptionRecord, audit.Event) error
	Prescription(context.Context, string) (PrescriptionRecord, error)
	AuditSize(context.Context) (int64, error)
}

func testPrescriptions(t *testing.T, st prescriptionStore) {
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	rec := PrescriptionRecord{ID: "abc123", ReceivedAt: now, SigningTime: now.Add(-time.Minute), PrescriberCode: "0499370899",
		CouncilNumber: "123456", PatientCode: "0012345679", Indication: "TOTAL_PASSED", Signature: []byte{1, 2, 3}, SealedReport: []byte{4}}
	ev := audit.Event{Time: now, Kind: "rx.ingested", Actor: "test", Subject: rec.ID}
	n0, _ := st.AuditSize(ctx)
	if err := st.SavePrescription(ctx, rec, ev); err != nil {
		t.Fatal(err)
	}
	if err := st.SavePrescription(ctx, rec, ev); !errors.Is(err, ca.ErrConflict) {
		t.Fatalf("duplicate: %v, want ErrConflict", err)
	}
	if n1, _ := st.AuditSize(ctx); n1 != n0+1 {
		t.Fatalf("audit size %d -> %d, want one event", n0, n1)
	}
	got, err := st.Prescription(ctx, rec.ID)
	if err != nil || string(got.Signature) != "\x01\x02\x03" || !got.SigningTime.Equal(rec.SigningTime) || got.CouncilNumber != "123456" {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := st.Prescription(ctx, "nope"); !errors.Is(err, ca.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

func TestPrescriptionsSQLite(t *testing.T)   { testPrescriptions(t, OpenTestSQLite(t)) }
func TestPrescriptionsPostgres(t *testing.T) { testPrescriptions(t, OpenTestPostgres(t)) }
