package tokens

import (
	"errors"
	"fmt"
)

// Errors callers branch on with errors.Is.
var (
	ErrNotFound     = errors.New("tokens: not found")
	ErrCodeUnknown  = errors.New("tokens: enrolment code not recognised")
	ErrCodeUsed     = errors.New("tokens: enrolment code already used")
	ErrCodeExpired  = errors.New("tokens: enrolment code expired")
	ErrNotEligible  = errors.New("tokens: not eligible")
	ErrWrongSIAM    = errors.New("tokens: request is for another SIAM ID")
	ErrBadPassword  = errors.New("tokens: wrong keystore password or corrupt keystore")
	ErrBadCSR       = errors.New("tokens: invalid certificate signing request")
	ErrInvalidInput = errors.New("tokens: invalid input")
	ErrConflict     = errors.New("tokens: state conflict")
)

// NotEligibleError says why a facility or a physician may not hold a certificate. It matches ErrNotEligible
// with errors.Is.
type NotEligibleError struct {
	Subject string // SIAM ID or national code
	Reason  Reason
}

// Reason is a machine-readable cause of ineligibility.
type Reason string

// Reasons of ineligibility, also written into audit events.
const (
	ReasonUnknownFacility     Reason = "facility-unknown"      // SIAM ID not in the registry
	ReasonLicenceNotActive    Reason = "licence-not-active"    // licence suspended, revoked
	ReasonLicenceRevoked      Reason = "licence-revoked"       // licence withdrawn for good
	ReasonLicenceExpired      Reason = "licence-expired"       // outside the licence validity
	ReasonNoSystem            Reason = "system-missing"        // no certified information system
	ReasonSystemNotActive     Reason = "system-cert-not-valid" // system certificate suspended or revoked
	ReasonSystemExpired       Reason = "system-cert-expired"   // outside the system certificate validity
	ReasonUnknownPhysician    Reason = "physician-unknown"     // national code not in the registry
	ReasonCouncilMismatch     Reason = "council-number-mismatch"
	ReasonRegistrationInvalid Reason = "registration-not-active" // council registration suspended, expired
	ReasonRegistrationExpired Reason = "registration-expired"
)

func (e *NotEligibleError) Error() string {
	return fmt.Sprintf("tokens: %s not eligible: %s", e.Subject, e.Reason)
}

// Is makes errors.Is(err, ErrNotEligible) true.
func (e *NotEligibleError) Is(target error) bool { return target == ErrNotEligible }

// ImportError names the line (CSV, 1-based, counting the header) or the record (JSON, 1-based) of an import
// that failed. Err wraps the cause.
type ImportError struct {
	Line int
	Err  error
}

func (e *ImportError) Error() string { return fmt.Sprintf("tokens: import line %d: %v", e.Line, e.Err) }
func (e *ImportError) Unwrap() error { return e.Err }
