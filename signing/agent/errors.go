package agent

import (
	"errors"
	"fmt"

	"github.com/mohr-hix/mohr/keys"
)

// Errors callers branch on with errors.Is.
var (
	// ErrNoSession: no signing session is open and the call needs one.
	ErrNoSession = errors.New("agent: no signing session")
	// ErrSessionActive: a session is already open; end it first.
	ErrSessionActive = errors.New("agent: a signing session is already open")
	// ErrSessionEnded: the session ended (card removed, limit reached, time up, ended by the physician, PIN
	// failure) before or during the call. SessionEndedError says why.
	ErrSessionEnded = errors.New("agent: signing session ended")
	// ErrLimitReached: the session's signature limit is used up.
	ErrLimitReached = errors.New("agent: session signature limit reached")
	// ErrSessionExpired: the session's time is up.
	ErrSessionExpired = errors.New("agent: session time is up")
	// ErrCardRemoved: the card left the reader.
	ErrCardRemoved = errors.New("agent: card removed")
	// ErrPINCancelled: the physician did not enter a PIN (the prompt was cancelled or failed).
	ErrPINCancelled = errors.New("agent: PIN entry cancelled")
	// ErrPINTimeout: nobody entered the PIN in time. It matches ErrPINCancelled.
	ErrPINTimeout error = &kindError{"agent: no PIN entered in time", ErrPINCancelled}
	// ErrPINUnavailable: the PIN cannot be asked at all (the agent has no terminal, for example). A PIN function
	// returns it (wrapped) so that the EMR learns this rather than a cancelled entry.
	ErrPINUnavailable = errors.New("agent: the PIN cannot be asked")
	// ErrBadLimits: requested or configured session limits outside what the agent allows.
	ErrBadLimits = errors.New("agent: session limits out of range")
	// ErrBadRequest: the request is malformed (empty document, too many documents, ...).
	ErrBadRequest = errors.New("agent: bad request")
	// ErrSubmit: the exchange could not be reached or refused the submission; the signature itself is valid.
	ErrSubmit = errors.New("agent: submission to the exchange failed")
	// ErrRefused: the exchange answered and refused the prescription (4xx, for example 422 with a validation
	// report saying why); nothing was stored, and sending the same document again cannot help. It matches
	// ErrSubmit too.
	ErrRefused = errors.New("agent: the exchange refused the prescription")
	// ErrAudit: the audit record could not be written; the signature is withheld.
	ErrAudit = errors.New("agent: audit log write failed")
	// ErrPINRequired: the card refused a signature for want of a PIN verification (status word 6982: its
	// comfort-signature counter ran out, it was reset, or another card was inserted). The agent keeps no PIN
	// and never presents one again on its own, so the session ends; the physician starts a new one.
	ErrPINRequired = errors.New("agent: the card asks for the PIN again")
	// ErrNoComfort: the key cannot sign more than once after one PIN entry (a "PIN always" card without a
	// comfort-signature mode, or PIV 9C), and the agent does not keep PINs to replay them. It matches ErrCard.
	ErrNoComfort error = &kindError{"agent: the card has no comfort-signature mode", ErrCard}
	// ErrCard: the card or key failed for another reason.
	ErrCard = errors.New("agent: card or key failure")
)

// PINError is a wrong PIN: Retries is what the card still allows (0: blocked). It matches keys.ErrPINIncorrect,
// and keys.ErrPINBlocked when Retries is 0. The agent never retries a PIN on its own.
type PINError struct {
	Retries int // -1 when the key did not say
	err     error
}

func (e *PINError) Error() string {
	switch {
	case e.Retries == 0:
		return "agent: PIN blocked"
	case e.Retries > 0:
		return fmt.Sprintf("agent: PIN incorrect, %d tries left", e.Retries)
	}
	return "agent: PIN incorrect"
}

// Is matches keys.ErrPINIncorrect, and keys.ErrPINBlocked when no try is left.
func (e *PINError) Is(target error) bool {
	switch target {
	case keys.ErrPINIncorrect:
		return e.Retries != 0
	case keys.ErrPINBlocked:
		return e.Retries == 0
	}
	return false
}

// SessionEndedError says why a session ended; it matches ErrSessionEnded and the cause (ErrCardRemoved,
// ErrLimitReached, ErrSessionExpired, a *PINError, ...).
type SessionEndedError struct {
	Reason string
	Cause  error
}

func (e *SessionEndedError) Error() string { return "agent: signing session ended: " + e.Reason }

// Is matches ErrSessionEnded.
func (e *SessionEndedError) Is(target error) bool { return target == ErrSessionEnded }

// Unwrap returns the cause.
func (e *SessionEndedError) Unwrap() error { return e.Cause }

// NewPINError returns a *PINError for a key backend that knows the tries left (retries, or -1), wrapping cause
// (which must not hold the PIN).
func NewPINError(retries int, cause error) *PINError { return &PINError{Retries: retries, err: cause} }

// Unwrap returns the backend's error.
func (e *PINError) Unwrap() error { return e.err }

// pinError turns a key error about the PIN into a *PINError, or returns nil if err is not about the PIN.
func pinError(err error) *PINError {
	var pe *PINError
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, keys.ErrPINBlocked):
		return &PINError{Retries: 0, err: err}
	case errors.Is(err, keys.ErrPINIncorrect):
		return &PINError{Retries: -1, err: err}
	}
	return nil
}

// kindError is a sentinel that also matches a broader kind.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }

// Is matches the broader kind.
func (e *kindError) Is(target error) bool { return target == e.kind }
