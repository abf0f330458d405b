// Package hsm gives Mohr signing keys held in a PKCS#11 device (an HSM, or SoftHSM2 in tests) as
// crypto.Signer values, through github.com/miekg/pkcs11.
//
// Keys are named by RFC 7512 "pkcs11:" URIs, for example
//
//	pkcs11:token=MohrCA;object=intermediate?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/mohr/pin
//
// The token is always found by its label (CKA_LABEL of the token, PKCS#11 v2.40 section 3.2
// CK_TOKEN_INFO), never by slot number: slot IDs are not stable across restarts and, with SoftHSM2, not
// even across token initialisation. The user PIN comes from a file or an environment variable named by
// the RFC 7512 section 2.3 "pin-source" attribute; "pin-value" is accepted for compatibility but never
// printed, and pin-source is preferred because a URI is easily logged.
//
// An Opener loads each PKCS#11 module once per process (C_Initialize may be called only once per
// process, PKCS#11 v2.40 section 5.4) and keeps one pool of sessions per token. Every signature is
// verified against the key's public half before it is returned. Sessions that the module invalidates
// (CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_CRYPTOKI_NOT_INITIALIZED
// after another user of the module called C_Finalize) are reopened, the module re-initialised and the
// user logged in again, and the request is retried, without restarting Mohr. A wrong PIN is never
// retried: a real token locks its PIN after a few failures.
//
// The package never logs. Errors start with "hsm:", wrap the keys package's sentinels (keys.ErrNotFound,
// keys.ErrPINIncorrect, keys.ErrPINBlocked, ...) and never carry a PIN, a session or an object handle.
package hsm
