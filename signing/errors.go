package signing

import "errors"

// Errors callers may branch on with errors.Is. Verification problems are not errors: they are reported in a
// Report with an ETSI EN 319 102-1 indication; these are for failures to sign, timestamp or upgrade.
var (
	// ErrUnsupportedKey: the key type or hash is not allowed by the HIX-Rx-CAdES policy.
	ErrUnsupportedKey = errors.New("signing: unsupported key or algorithm")
	// ErrKeyMismatch: the signer's public key is not the one in the signing certificate.
	ErrKeyMismatch = errors.New("signing: key does not match the certificate")
	// ErrNoChain: no signing certificate was given.
	ErrNoChain = errors.New("signing: no signing certificate")
	// ErrMalformed: the input is not a CMS SignedData Mohr can read (wraps the detail).
	ErrMalformed = errFormat
	// ErrTimestamp: a time-stamping authority refused or failed (wraps the detail).
	ErrTimestamp = errors.New("signing: time-stamp failed")
	// ErrRejected: the document did not pass validation (Ingestor); the report says why.
	ErrRejected = errors.New("signing: document rejected")
)
