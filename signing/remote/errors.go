package remote

import "errors"

// Errors callers branch on with errors.Is. Package api maps them to the CSC API's error codes.
var (
	// ErrNotFound: no such credential, activation request or SAD.
	ErrNotFound = errors.New("remote: not found")
	// ErrForbidden: the caller may not use this credential (another physician's, or not a physician).
	ErrForbidden = errors.New("remote: forbidden")
	// ErrBadRequest: malformed hashes (empty, too many, wrong length, duplicated) or other bad input.
	ErrBadRequest = errors.New("remote: bad request")
	// ErrCredentialStatus: the credential is not active (pending, suspended, blocked, revoked).
	ErrCredentialStatus = errors.New("remote: credential not active")
	// ErrCertificateExpired: the signing certificate is outside its validity (wrapped with ErrCredentialStatus).
	ErrCertificateExpired = errors.New("remote: signing certificate is expired")
	// ErrExpired: the activation request or the SAD is past its lifetime.
	ErrExpired = errors.New("remote: expired")
	// ErrUsed: the activation request was already answered, or a hash of the SAD was already signed.
	ErrUsed = errors.New("remote: already used")
	// ErrAssertion: the WebAuthn assertion (or attestation) does not verify: wrong challenge (other hashes),
	// wrong origin or RP, unknown or foreign passkey, no user verification, bad signature, cloned authenticator.
	ErrAssertion = errors.New("remote: assertion refused")
	// ErrNotAuthorized: a hash the SAD does not cover, or a SAD of another credential.
	ErrNotAuthorized = errors.New("remote: hash not authorized by the SAD")
	// ErrKey: the HSM failed (key generation, signing, destruction).
	ErrKey = errors.New("remote: key")
	// ErrRegistry: the medical council's registry does not have the council number for this national code, in
	// good standing (enrolment).
	ErrRegistry = errors.New("remote: registry check failed")
	// ErrPending: the physician has not yet approved the activation request on the activation page.
	ErrPending = errors.New("remote: activation not yet approved")
	// ErrIssue: the certificate could not be issued.
	ErrIssue = errors.New("remote: issuance")
)
