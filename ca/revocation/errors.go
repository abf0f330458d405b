package revocation

import "errors"

// Errors callers branch on with errors.Is. Functions wrap them with %w and add the detail.
var (
	// ErrBadReason is a revocation reason that RFC 5280 §5.3.1 does not allow here: an unknown code,
	// unused(7), removeFromCRL(8) (delta CRLs only), or certificateHold(6) given to Revoke instead of Hold.
	ErrBadReason = errors.New("revocation: reason not allowed")
	// ErrBadSerial is a serial number that is not hexadecimal or not positive.
	ErrBadSerial = errors.New("revocation: malformed serial number")
	// ErrUnknownSerial is a serial the CA never reserved.
	ErrUnknownSerial = errors.New("revocation: unknown serial")
	// ErrNotIssued is a serial whose record is pending or failed: no certificate was handed out, so
	// there is nothing to revoke.
	ErrNotIssued = errors.New("revocation: certificate was never issued")
	// ErrAlreadyRevoked is a certificate revoked for good (not on hold) with another reason than the one
	// asked for, or asked to be put on hold.
	ErrAlreadyRevoked = errors.New("revocation: certificate already revoked")
	// ErrNotOnHold is a release of a certificate that is revoked for good.
	ErrNotOnHold = errors.New("revocation: certificate is not on hold")
	// ErrNoActor is a change requested without an actor for the audit event.
	ErrNoActor = errors.New("revocation: no actor for the audit event")
	// ErrRefresh says the store recorded the change but refreshing the OCSP cache failed. The change
	// stands; the responder has dropped the stale response and signs on demand until its next refresh.
	ErrRefresh = errors.New("revocation: status recorded but OCSP refresh failed")
	// ErrConfig is a configuration a constructor refuses.
	ErrConfig = errors.New("revocation: bad configuration")
	// ErrNoCRL is a shard out of range.
	ErrNoCRL = errors.New("revocation: no such CRL shard")

	// ErrMalformedRequest, ErrUnauthorized and ErrInternal accompany the OCSP error responses of the same
	// name (RFC 6960 §4.2.1, RFC 5019 §2.2.3); Respond returns the response to send alongside them.
	ErrMalformedRequest = errors.New("revocation: malformed OCSP request")
	ErrUnauthorized     = errors.New("revocation: OCSP request for another issuer")
	ErrInternal         = errors.New("revocation: OCSP responder internal error")
	// ErrNotReady accompanies the tryLater response a Responder gives before Start has obtained its
	// responder certificate.
	ErrNotReady = errors.New("revocation: OCSP responder not started")
)
