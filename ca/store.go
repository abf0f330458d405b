package ca

import (
	"context"
	"errors"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

// Store errors, for callers to branch on with errors.Is. Implementations wrap them with %w.
var (
	ErrNotFound        = errors.New("ca: not found")
	ErrDuplicateSerial = errors.New("ca: serial already reserved")
	ErrConflict        = errors.New("ca: state conflict")
)

// Status is the lifecycle state of a certificate record.
type Status string

const (
	StatusPending Status = "pending" // intent persisted, not signed (or signed but not yet recorded)
	StatusIssued  Status = "issued"  // signed and recorded
	StatusFailed  Status = "failed"  // the pipeline stopped after the intent; never handed out
	StatusRevoked Status = "revoked"
	StatusHeld    Status = "hold" // revoked with reason certificateHold; may be released
)

// CertRecord is one certificate as the store keeps it. Serial is lower-case hex without leading zeros
// stripped (the form x509 prints with %x of the big.Int).
type CertRecord struct {
	Serial    string
	Profile   string
	Subject   string // RFC 4514 string of the subject, for listing
	Subject2  string // the identifier the certificate is bound to: SIAM ID, national code, host name
	NotBefore time.Time
	NotAfter  time.Time
	TBSHash   []byte // SHA-256 of the linted TBSCertificate (the intent)
	DER       []byte // the signed certificate; nil while pending or failed
	Status    Status
	Shard     int // CRL shard this certificate names in its CRL distribution point
	// Revocation, when Status is revoked or hold.
	RevokedAt        time.Time
	RevocationReason int // RFC 5280 CRLReason
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// CertFilter selects certificates for listing. Zero fields match everything.
type CertFilter struct {
	Profile  string
	Status   Status
	Subject2 string
	Limit    int    // 0 means the store's default (1000)
	After    string // serial to continue after, for paging
}

// RevokedEntry is one line of a CRL shard.
type RevokedEntry struct {
	Serial    string
	RevokedAt time.Time
	Reason    int
}

// Store is what the CA needs from persistence. Every method that changes state takes the audit event that
// records the change and appends it in the same transaction, so the database and the audit log never disagree.
// Implementations: internal/store (SQLite, PostgreSQL); both pass storetest's conformance suite.
type Store interface {
	// AddPending reserves rec.Serial and records the intent to issue (Status pending, TBSHash set).
	// It returns ErrDuplicateSerial if the serial exists (in any state).
	AddPending(ctx context.Context, rec CertRecord, ev audit.Event) error
	// MarkIssued records the signed certificate of a pending serial. It returns ErrConflict unless the record
	// is pending.
	MarkIssued(ctx context.Context, serial string, der []byte, ev audit.Event) error
	// MarkFailed closes a pending serial that will never be issued.
	MarkFailed(ctx context.Context, serial string, ev audit.Event) error
	// Certificate returns one record, or ErrNotFound.
	Certificate(ctx context.Context, serial string) (CertRecord, error)
	// Certificates lists records ordered by serial.
	Certificates(ctx context.Context, f CertFilter) ([]CertRecord, error)
	// Revoke sets an issued (or held) certificate revoked with reason at time at. Revoking a certificate that is
	// already revoked with the same reason is a no-op returning changed=false and appends no event; a held
	// certificate can be revoked for good with another reason. reason 6 (certificateHold) sets Status hold.
	Revoke(ctx context.Context, serial string, reason int, at time.Time, ev audit.Event) (changed bool, err error)
	// Release takes a certificate off hold (back to issued). ErrConflict unless it is on hold.
	Release(ctx context.Context, serial string, ev audit.Event) error
	// RevokedInShard lists revoked and held certificates of shard whose NotAfter is after notAfter.
	RevokedInShard(ctx context.Context, shard int, notAfter time.Time) ([]RevokedEntry, error)
	// NextCRLNumber returns a CRL number for shard greater than every one it returned before.
	NextCRLNumber(ctx context.Context, shard int) (int64, error)
	// AppendAudit appends an event that changes nothing else (CA start, CRL published, ...).
	AppendAudit(ctx context.Context, ev audit.Event) error
}
