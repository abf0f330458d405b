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
	// StatusSince, when set, is when Status took effect as the registry says (import column status_since). A
	// store records every change of status or validity in the physician's history (StandingChange) with this
	// effective time; without it a change takes effect when it is imported, and a physician's first record from
	// ValidFrom (the conservative choice for a non-active status: it then counts for the whole registration).
	StatusSince time.Time
}

// StandingChange is one entry of a physician's registry history: from EffectiveAt until the next entry's
// EffectiveAt the registration had this status and validity. RecordedAt and Actor say when and by whom it was
// recorded (an effective time may precede the recording: a retroactive suspension). Seq orders entries with
// the same EffectiveAt: the later recorded one wins.
type StandingChange struct {
	Seq         int64
	CouncilNo   string
	Status      Status
	ValidFrom   time.Time
	ValidUntil  time.Time
	EffectiveAt time.Time
	RecordedAt  time.Time
	Actor       string
}

// PhysicianHistory is a registry that keeps every standing change of a physician (tokens/sqlstore).
type PhysicianHistory interface {
	// PhysicianHistory returns the changes of nationalCode's registration ordered by EffectiveAt, then Seq; an
	// error wrapping ErrNotFound for an unknown national code.
	PhysicianHistory(ctx context.Context, nationalCode string) ([]StandingChange, error)
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
