package cardreader

import (
	"errors"
	"fmt"

	"github.com/mohr-hix/mohr/keys"
)

// cardError is a sentinel that also matches a shared keys error with errors.Is, so callers that only know
// package keys can branch on card conditions too.
type cardError struct {
	msg  string
	also error
}

func (e *cardError) Error() string { return e.msg }

func (e *cardError) Is(target error) bool { return e.also != nil && target == e.also }

// Errors callers branch on with errors.Is.
var (
	// ErrNotFound: the card answered 6A82 or 6A88 (file, application or referenced data not found,
	// ISO/IEC 7816-4 §5.6) or does not carry the profile asked for. It matches keys.ErrNotFound.
	ErrNotFound error = &cardError{"cardreader: not found on card", keys.ErrNotFound}
	// ErrSecurityStatus: the card answered 6982 (security status not satisfied), e.g. a signature
	// without a preceding VERIFY.
	ErrSecurityStatus = errors.New("cardreader: security status not satisfied")
	// ErrPINBlocked: the card answered 6983 (authentication method blocked). It matches keys.ErrPINBlocked.
	ErrPINBlocked error = &cardError{"cardreader: PIN blocked", keys.ErrPINBlocked}
	// ErrConditions: 6985, conditions of use not satisfied.
	ErrConditions = errors.New("cardreader: conditions of use not satisfied")
	// ErrNotSupported: 6D00 or 6E00 (instruction or class not supported), or 6A81 (function not supported).
	ErrNotSupported = errors.New("cardreader: command not supported by the card")
	// ErrCardRemoved: the card left the reader (or stopped answering) before or during an operation.
	ErrCardRemoved = errors.New("cardreader: card removed")
	// ErrCardReset: another application reset the card; its security state (a verified PIN) is gone.
	// Reconnect to go on.
	ErrCardReset = errors.New("cardreader: card was reset")
	// ErrNoCard: the reader holds no card.
	ErrNoCard = errors.New("cardreader: no card in reader")
	// ErrNoReader: the named reader is not connected to PC/SC.
	ErrNoReader = errors.New("cardreader: no such reader")
	// ErrNoService: the PC/SC daemon is not running.
	ErrNoService = errors.New("cardreader: PC/SC service not available")
	// ErrMalformed: the card's answer breaks ISO/IEC 7816-4 framing, or a data object on the card cannot be parsed.
	ErrMalformed = errors.New("cardreader: malformed card response")
	// ErrPINFormat: a PIN outside the card's length rules; the card is not asked, so no try is spent.
	ErrPINFormat = errors.New("cardreader: PIN must be 4 to 8 bytes")
	// ErrNotGenuine: the card failed INTERNAL AUTHENTICATE or its certificate does not chain to a trusted issuer.
	ErrNotGenuine = errors.New("cardreader: card authentication failed")
	// ErrUnsupportedKey is keys.ErrUnsupportedKey, returned for key types or hashes the card cannot use.
	ErrUnsupportedKey = keys.ErrUnsupportedKey
)

// AuthError is a wrong PIN: the card answered 63Cx (ISO/IEC 7816-4 §5.6, verification failed, x further
// tries allowed). It matches keys.ErrPINIncorrect, and ErrPINBlocked as well when no try is left.
type AuthError struct {
	// Retries is the number of tries the card still allows.
	Retries int
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("cardreader: PIN incorrect, %d tries left", e.Retries)
}

// Is reports whether target is keys.ErrPINIncorrect, or a PIN-blocked sentinel when Retries is 0.
func (e *AuthError) Is(target error) bool {
	switch target {
	case keys.ErrPINIncorrect:
		return true
	case ErrPINBlocked, keys.ErrPINBlocked:
		return e.Retries == 0
	}
	return false
}

// StatusError is a status word other than 9000 (ISO/IEC 7816-4 §5.6). It unwraps to the sentinel for its
// status word, if there is one (ErrNotFound, ErrSecurityStatus, ErrPINBlocked, ...).
type StatusError struct {
	SW  uint16
	INS byte
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("cardreader: card answered %04X to INS %02X", e.SW, e.INS)
	if m := swText(e.SW); m != "" {
		s += " (" + m + ")"
	}
	return s
}

// Unwrap returns the sentinel error for the status word, or nil.
func (e *StatusError) Unwrap() error {
	switch e.SW {
	case 0x6A82, 0x6A88:
		return ErrNotFound
	case 0x6982:
		return ErrSecurityStatus
	case 0x6983:
		return ErrPINBlocked
	case 0x6985:
		return ErrConditions
	case 0x6D00, 0x6E00, 0x6A81:
		return ErrNotSupported
	}
	return nil
}

func swText(sw uint16) string {
	switch {
	case sw == 0x6282:
		return "end of file reached before reading Ne bytes"
	case sw&0xFFF0 == 0x63C0:
		return "verification failed"
	case sw == 0x6581:
		return "memory failure"
	case sw == 0x6700:
		return "wrong length"
	case sw == 0x6882:
		return "secure messaging not supported"
	case sw == 0x6883:
		return "last command of the chain expected"
	case sw == 0x6884:
		return "command chaining not supported"
	case sw == 0x6982:
		return "security status not satisfied"
	case sw == 0x6983:
		return "authentication method blocked"
	case sw == 0x6984:
		return "reference data not usable"
	case sw == 0x6985:
		return "conditions of use not satisfied"
	case sw == 0x6986:
		return "command not allowed, no current EF"
	case sw == 0x6A80:
		return "incorrect parameters in the command data field"
	case sw == 0x6A81:
		return "function not supported"
	case sw == 0x6A82:
		return "file or application not found"
	case sw == 0x6A84:
		return "not enough memory space in the file"
	case sw == 0x6A86:
		return "incorrect parameters P1-P2"
	case sw == 0x6A88:
		return "referenced data not found"
	case sw == 0x6B00:
		return "wrong parameters P1-P2"
	case sw == 0x6D00:
		return "instruction not supported"
	case sw == 0x6E00:
		return "class not supported"
	case sw == 0x6F00:
		return "no precise diagnosis"
	}
	return ""
}

// statusError maps a status word to the error callers see: nil for 9000, *AuthError for 63Cx, otherwise
// *StatusError.
func statusError(sw uint16, ins byte) error {
	switch {
	case sw == 0x9000:
		return nil
	case sw&0xFFF0 == 0x63C0:
		return &AuthError{Retries: int(sw & 0x0F)}
	}
	return &StatusError{SW: sw, INS: ins}
}
