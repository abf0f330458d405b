package tokens

import (
	"context"
	"time"
)

// Status is the state of a licence, a system certificate or a council registration as its registry reports it.
type Status string

// Registry statuses. Only StatusActive makes a facility or physician eligible.
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended" // temporary: tokens are put on hold
	StatusRevoked   Status = "revoked"   // permanent: tokens are revoked
	StatusExpired   Status = "expired"
)

func validStatus(s Status) bool {
	switch s {
	case StatusActive, StatusSuspended, StatusRevoked, StatusExpired:
		return true
	}
	return false
}

// Facility is one entry of the integrated facility registry, with its activity licence and the
// technical-competence certificate of its information system (DOMAIN.md "Identifiers"). Times are UTC.
type Facility struct {
	SIAMID        string
	Name          string
	LicenceNumber string
	LicenceStatus Status
	LicenceFrom   time.Time
	LicenceUntil  time.Time
	SystemID      string // the certified information system's certificate ID; empty: none
	SystemStatus  Status
	SystemFrom    time.Time
	SystemUntil   time.Time
}

// Physician is one medical-council registration.
type Physician struct {
	NationalCode string
	CouncilNo    string
	Name         string
	Specialty    string
	Status       Status
	ValidFrom    time.Time
	ValidUntil   time.Time
}

// FacilityRegistry answers for one facility's standing. It returns an error wrapping ErrNotFound for an
// unknown SIAM ID.
type FacilityRegistry interface {
	Facility(ctx context.Context, siamID string) (Facility, error)
}

// PhysicianRegistry answers for one physician's council registration, by national code. It returns an error
// wrapping ErrNotFound for an unknown national code.
type PhysicianRegistry interface {
	Physician(ctx context.Context, nationalCode string) (Physician, error)
}

// RegistrySource is an authoritative registry Mohr copies from: the national facility registry and the medical
// council's registry, through HTTPRegistry or a test double. The sync job reads it.
type RegistrySource interface {
	FacilityRegistry
	PhysicianRegistry
}
