package remote

import (
	"crypto/x509"
	"time"
)

// Status is a remote credential's lifecycle state.
type Status string

// The states of a remote credential. Only StatusActive can be activated or sign.
const (
	// StatusPending: key and certificate exist, no passkey is registered yet.
	StatusPending Status = "pending"
	// StatusActive: the physician can activate and sign.
	StatusActive Status = "active"
	// StatusSuspended: temporarily unusable (an RA officer or the physician); Resume makes it active again.
	StatusSuspended Status = "suspended"
	// StatusBlocked: the activation factor is lost; its passkeys are removed and only an in-person
	// re-enrolment of a new passkey (BeginPasskeyRegistration by an RA officer) makes it active again.
	StatusBlocked Status = "blocked"
	// StatusRevoked: the certificate is revoked; final. The key is destroyed when the revocation was for key
	// compromise, on re-key, or when the physician left the registry.
	StatusRevoked Status = "revoked"
)

// Credential is one remote signing credential (a CSC "credential"): a key in the HSM, its certificate chain,
// and whose it is.
type Credential struct {
	ID            string
	CouncilNumber string
	NationalCode  string
	Name          string
	// UserHandle is the WebAuthn user handle the passkeys are registered under: random at enrolment and
	// kept across re-keys, so a passkey carries over to the physician's new key.
	UserHandle string
	// KeyURI names the key in the HSM (an RFC 7512 pkcs11: URI; never a PIN value).
	KeyURI   string
	KeyLabel string
	// Chain is the certificate chain, DER, signing certificate first, without the root.
	Chain  [][]byte
	Status Status
	// Reason says why the credential is not active (free text, never a secret).
	Reason       string
	KeyDestroyed bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Certificates parses c.Chain.
func (c *Credential) Certificates() ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(c.Chain))
	for _, der := range c.Chain {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

// Passkey is a WebAuthn credential registered as a remote credential's activation factor.
type Passkey struct {
	CredentialID string
	// ID is the WebAuthn credential ID.
	ID []byte
	// Data is the go-webauthn Credential record (public key, flags, counter) as JSON.
	Data      []byte
	CreatedAt time.Time
}

// challengeKind tells a registration ceremony's nonce from an activation's.
type challengeKind string

const (
	kindRegister challengeKind = "register"
	kindActivate challengeKind = "activate"
)

// challengeRecord is a stored, one-use WebAuthn ceremony: the nonce, what it is for and until when.
type challengeRecord struct {
	ID           string // the nonce, hex
	Kind         challengeKind
	CredentialID string
	Hashes       [][]byte
	Challenge    []byte
	ExpiresAt    time.Time
}

// activationRecord is signature activation data: bound to a credential and hashes, valid until ExpiresAt.
// Only the SHA-256 of the SAD is stored.
type activationRecord struct {
	SADHash      string
	CredentialID string
	Hashes       [][]byte
	ExpiresAt    time.Time
}
