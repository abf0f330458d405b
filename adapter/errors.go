package adapter

import "errors"

// Errors callers branch on with errors.Is.
var (
	ErrNoClientCert       = errors.New("adapter: no client certificate")
	ErrUntrusted          = errors.New("adapter: certificate does not chain to the health intermediate CA")
	ErrWrongProfile       = errors.New("adapter: certificate is not a facility-adapter certificate")
	ErrRevoked            = errors.New("adapter: certificate revoked")
	ErrRevocationUnknown  = errors.New("adapter: revocation status unavailable")
	ErrNotInGoodStanding  = errors.New("adapter: facility not in good standing")
	ErrStandingUnknown    = errors.New("adapter: facility standing unavailable")
	ErrNotLoopback        = errors.New("adapter: the local endpoint must listen on a loopback address")
	ErrCertificateExpired = errors.New("adapter: token certificate expired")
)
