package tokens

import (
	"context"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

// EnrolmentCode is the stored half of a one-time enrolment code: its public ID and the SHA-256 of its secret,
// never the secret itself.
type EnrolmentCode struct {
	ID        string // public part of the code, unique
	Hash      []byte // SHA-256 of the secret part
	SIAMID    string // the facility the code is bound to
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // zero while unused
}

// TokenKind says where a token's private key lives.
type TokenKind string

// Token kinds.
const (
	KindPhysical TokenKind = "pkcs11"   // generated on the facility's PKCS#11 device, never exported
	KindSoftware TokenKind = "software" // an encrypted PKCS#8 / PKCS#12 keystore
)

// TokenStatus is the state of a token's certificate as tokens tracks it.
type TokenStatus string

// Token statuses; they follow the CA's (hold is RFC 5280 certificateHold).
const (
	TokenActive     TokenStatus = "active"
	TokenHeld       TokenStatus = "hold"
	TokenRevoked    TokenStatus = "revoked"
	TokenSuperseded TokenStatus = "superseded" // renewed: the older certificate is left to expire
)

// Token is one adapter certificate issued to a facility.
type Token struct {
	Serial    string // lower-case hex, as ca.SerialHex
	SIAMID    string
	Kind      TokenKind
	Status    TokenStatus
	NotBefore time.Time
	NotAfter  time.Time
	Reason    int // RFC 5280 CRLReason when held or revoked
	// The registry facts the certificate binds (facility extension); a change of either revokes it.
	LicenceNumber string
	SystemID      string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Store keeps the registries, the enrolment codes and the tokens. Every method that changes state takes the
// audit event that records the change and writes it in the same transaction. Implementations: MemStore (tests),
// tokens/sqlstore (SQLite, PostgreSQL); both pass tokens/storetest.
type Store interface {
	// PutFacilities inserts or replaces the given facilities, all or none.
	PutFacilities(ctx context.Context, fs []Facility, ev audit.Event) error
	// Facility returns one facility or an error wrapping ErrNotFound.
	Facility(ctx context.Context, siamID string) (Facility, error)
	// Facilities lists every facility ordered by SIAM ID.
	Facilities(ctx context.Context) ([]Facility, error)
	// PutPhysicians inserts or replaces the given physicians, all or none.
	PutPhysicians(ctx context.Context, ps []Physician, ev audit.Event) error
	// Physician returns one registration by national code or an error wrapping ErrNotFound.
	Physician(ctx context.Context, nationalCode string) (Physician, error)

	// AddEnrolmentCode stores a new code; ErrConflict if its ID exists.
	AddEnrolmentCode(ctx context.Context, c EnrolmentCode, ev audit.Event) error
	// EnrolmentCode returns a code by ID or an error wrapping ErrNotFound.
	EnrolmentCode(ctx context.Context, id string) (EnrolmentCode, error)
	// CompleteEnrolment atomically marks code id used at time at and records tok. It returns ErrCodeUsed (and
	// changes nothing) if the code was used already, so two racing enrolments cannot both succeed.
	CompleteEnrolment(ctx context.Context, id string, at time.Time, tok Token, ev audit.Event) error

	// AddToken records a token (renewal); ErrConflict if the serial exists.
	AddToken(ctx context.Context, tok Token, ev audit.Event) error
	// Token returns one token by serial or an error wrapping ErrNotFound.
	Token(ctx context.Context, serial string) (Token, error)
	// Tokens lists the tokens of siamID ("" for all), ordered by SIAM ID then NotBefore.
	Tokens(ctx context.Context, siamID string) ([]Token, error)
	// SetTokenStatus changes a token's status and reason at time at.
	SetTokenStatus(ctx context.Context, serial string, st TokenStatus, reason int, at time.Time, ev audit.Event) error
	// AppendAudit records an event that changes nothing else.
	AppendAudit(ctx context.Context, ev audit.Event) error
}
