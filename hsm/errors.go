package hsm

import (
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/mohr-hix/mohr/keys"
)

// Errors callers branch on with errors.Is. Those that mean "not there" or "malformed" also match the
// keys package's sentinels (keys.ErrNotFound, keys.ErrBadURI).
var (
	// ErrBadURI reports a malformed or unusable RFC 7512 URI. It matches keys.ErrBadURI.
	ErrBadURI error = &kindError{"hsm: malformed pkcs11 URI", keys.ErrBadURI}
	// ErrModule reports a PKCS#11 module that cannot be loaded (no such file, not a PKCS#11 library)
	// or initialised.
	ErrModule = errors.New("hsm: cannot load PKCS#11 module")
	// ErrTokenNotFound reports that no slot holds a token with the label the URI names. It matches
	// keys.ErrNotFound.
	ErrTokenNotFound error = &kindError{"hsm: token not found", keys.ErrNotFound}
	// ErrObjectNotFound reports that the token holds no key or certificate the URI names. It matches
	// keys.ErrNotFound.
	ErrObjectNotFound error = &kindError{"hsm: object not found", keys.ErrNotFound}
	// ErrAmbiguous reports that a URI names more than one object of the kind asked for.
	ErrAmbiguous = errors.New("hsm: URI matches more than one object")
	// ErrExists reports that GenerateKey or StoreCertificate found an object with the same label or ID.
	ErrExists = errors.New("hsm: an object with this label or ID already exists")
	// ErrPINSource reports that the PIN named by pin-source cannot be read.
	ErrPINSource = errors.New("hsm: cannot read PIN")
	// ErrClosed reports use of an Opener after Close.
	ErrClosed = errors.New("hsm: opener closed")
	// ErrUnsupportedAlgorithm reports a key algorithm or signature option the package does not offer.
	ErrUnsupportedAlgorithm error = &kindError{"hsm: unsupported key type or algorithm", keys.ErrUnsupportedKey}
	// ErrNotSensitive reports a generated key the token did not mark sensitive and non-extractable.
	ErrNotSensitive = errors.New("hsm: token did not make the key sensitive and non-extractable")
)

// kindError is a sentinel with its own message that also matches a keys sentinel.
type kindError struct {
	msg  string
	base error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.base }

// LoginError reports a C_Login that the token refused. Err matches keys.ErrPINIncorrect for
// CKR_PIN_INCORRECT (PKCS#11 v2.40 section 5.6 C_Login), keys.ErrPINBlocked for CKR_PIN_LOCKED, and
// otherwise wraps the module's return value. Mohr never retries a refused login by itself: the pool
// refuses further logins with the same PIN until the PIN source changes, because every attempt counts
// towards locking a real token.
type LoginError struct {
	Token string // label of the token
	Err   error
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("hsm: login to token %q: %v", e.Token, e.Err)
}

func (e *LoginError) Unwrap() error { return e.Err }

// rvError wraps a PKCS#11 return value with the operation that returned it. The message names the
// CKR_ constant only: no handles and no data.
func rvError(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("hsm: %s: %w", op, err)
}

// rv extracts the PKCS#11 return value from err, or 0 (CKR_OK) if err carries none.
func rv(err error) uint {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return uint(e)
	}
	return 0
}

// recovery says what a failed call requires before the operation may be retried.
type recovery int

const (
	recoverNone    recovery = iota // the error is final
	recoverHandle                  // the object handle is stale: look the object up again
	recoverLogin                   // the session lost its login state: log in again
	recoverSession                 // the sessions are gone: reopen them and log in again
	recoverSlot                    // the token went away: find the slot again by label
	recoverModule                  // the module was finalised: C_Initialize again
)

// classify maps a PKCS#11 return value to the recovery it needs. The return values come from
// PKCS#11 v2.40 section 5.1 (common and session errors).
func classify(err error) recovery {
	var nr noRetryError
	if errors.As(err, &nr) {
		return recoverNone
	}
	return classifyRV(rv(err))
}

// classifyRV is classify on a bare return value, for deciding whether a session is still usable.
func classifyRV(r uint) recovery {
	switch r {
	case pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID:
		return recoverHandle
	case pkcs11.CKR_USER_NOT_LOGGED_IN:
		return recoverLogin
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_SESSION_COUNT,
		pkcs11.CKR_OPERATION_ACTIVE:
		return recoverSession
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_SLOT_ID_INVALID:
		return recoverSlot
	case pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:
		return recoverModule
	}
	return recoverNone
}

// noRetryError marks an error from an operation that must not be repeated (creating objects), even
// if its return value would allow recovery.
type noRetryError struct{ error }

func (e noRetryError) Unwrap() error { return e.error }
