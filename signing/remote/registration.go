package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
)

// The registration code: what the RA officer hands the physician in person so that the physician, and only
// the physician, registers the passkey on the registration page (api/web/remotepage) with their own
// authenticator. 20 characters of Crockford's base32 (100 random bits) in four groups of five: typed from a
// printout, and far beyond guessing within its lifetime (Config.RegistrationTTL) even without the page's
// rate limit. The store keeps only its SHA-256 (the ceremony's ID), so a database reader cannot use it.

const codeAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ" // Crockford base32: no I, L, O, U

const registrationLabel = "MOHR-REMOTE-REGISTRATION-CODE-v1\x00"

// newRegistrationCode draws a fresh code, formatted XXXXX-XXXXX-XXXXX-XXXXX.
func (s *Service) newRegistrationCode() (string, error) {
	raw, err := s.random(20)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i, x := range raw {
		if i > 0 && i%5 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(codeAlphabet[x&31]) // 5 bits of each byte: 100 bits
	}
	return b.String(), nil
}

// normalizeCode reads a code as a person may type it: any case, with or without dashes or spaces, O for 0
// and I or L for 1 (Crockford's decoding rules). It returns "" for anything that is not 20 code characters.
func normalizeCode(code string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(code) {
		switch {
		case r == '-' || r == ' ':
			continue
		case r == 'O':
			r = '0'
		case r == 'I' || r == 'L':
			r = '1'
		}
		if r > 127 || !strings.ContainsRune(codeAlphabet, r) {
			return ""
		}
		b.WriteRune(r)
	}
	if b.Len() != 20 {
		return ""
	}
	return b.String()
}

// registrationID is the stored ID of the ceremony a code opens: SHA-256 over a label and the normalised code.
func registrationID(code string) string {
	sum := sha256.Sum256([]byte(registrationLabel + normalizeCode(code)))
	return hex.EncodeToString(sum[:])
}

// codeCaller is who acts with a registration code: the physician the RA officer handed it to.
func codeCaller(credID string) Caller {
	return Caller{Role: "registration-code", Actor: "page:registration-code:" + credID}
}

// PendingRegistration is what the registration page shows and runs: whose credential, until when, and the
// WebAuthn creation options (the challenge stored when the RA started the registration).
type PendingRegistration struct {
	CredentialID  string
	Name          string
	CouncilNumber string
	ExpiresAt     time.Time
	Options       *protocol.CredentialCreation
}

// RegistrationOptions returns the registration ceremony that code opens, without using the code up. An
// unknown, used or expired code, or a credential no longer pending or blocked, is refused (ErrNotFound,
// ErrUsed, ErrExpired, ErrCredentialStatus) and the attempt audited.
func (s *Service) RegistrationOptions(ctx context.Context, code string) (PendingRegistration, error) {
	if normalizeCode(code) == "" {
		return PendingRegistration{}, fmt.Errorf("%w: registration code", ErrNotFound)
	}
	ch, err := s.cfg.Store.peekChallenge(ctx, registrationID(code), kindRegister)
	if err != nil {
		return PendingRegistration{}, s.refuse(ctx, "register-options", codeCaller(ch.CredentialID), ch.CredentialID, nil, err)
	}
	if !s.now().Before(ch.ExpiresAt) {
		return PendingRegistration{}, s.refuse(ctx, "register-options", codeCaller(ch.CredentialID), ch.CredentialID, nil, fmt.Errorf("%w: registration code", ErrExpired))
	}
	cred, err := s.cfg.Store.Credential(ctx, ch.CredentialID)
	if err != nil {
		return PendingRegistration{}, err
	}
	// Active: a credential whose national ID card was registered at enrolment, with the enrolment's code.
	if cred.Status != StatusPending && cred.Status != StatusBlocked && cred.Status != StatusActive {
		return PendingRegistration{}, s.refuse(ctx, "register-options", codeCaller(cred.ID), cred.ID, nil, fmt.Errorf("%w: %s", ErrCredentialStatus, cred.Status))
	}
	u, _, err := s.loadUser(ctx, cred)
	if err != nil {
		return PendingRegistration{}, err
	}
	opts, err := s.registrationOptions(u)
	if err != nil {
		return PendingRegistration{}, err
	}
	opts.Response.Challenge = protocol.URLEncodedBase64(ch.Challenge)
	return PendingRegistration{CredentialID: cred.ID, Name: cred.Name, CouncilNumber: cred.CouncilNumber, ExpiresAt: ch.ExpiresAt, Options: opts}, nil
}

// FinishRegistrationWithCode registers the passkey whose attestation response answers the ceremony that code
// opened (user verification required); the credential becomes active. The code is used up whatever the
// outcome: after a failure the RA officer starts a new registration (BeginPasskeyRegistration) and hands
// over a new code.
func (s *Service) FinishRegistrationWithCode(ctx context.Context, code string, response []byte) (Credential, error) {
	if normalizeCode(code) == "" {
		return Credential{}, fmt.Errorf("%w: registration code", ErrNotFound)
	}
	ch, err := s.cfg.Store.takeChallenge(ctx, registrationID(code), kindRegister, s.now())
	if err != nil {
		return Credential{}, s.refuse(ctx, "register", codeCaller(ch.CredentialID), ch.CredentialID, nil, err)
	}
	if err := s.finishRegistration(ctx, codeCaller(ch.CredentialID), ch, response); err != nil {
		return Credential{}, err
	}
	return s.cfg.Store.Credential(ctx, ch.CredentialID)
}

// Lookup returns any credential, for the RA desk, operators and auditors (never a physician: they use Info).
func (s *Service) Lookup(ctx context.Context, c Caller, credID string) (Credential, error) {
	if !staff(c) && c.Role != RoleAuditor {
		return Credential{}, s.refuse(ctx, "lookup", c, credID, nil, fmt.Errorf("%w: lookup", ErrForbidden))
	}
	return s.cfg.Store.Credential(ctx, credID)
}

// CredentialsOfCouncil returns every credential of a physician, for the RA desk, operators and auditors.
func (s *Service) CredentialsOfCouncil(ctx context.Context, c Caller, councilNumber string) ([]Credential, error) {
	if !staff(c) && c.Role != RoleAuditor {
		return nil, s.refuse(ctx, "lookup", c, councilNumber, nil, fmt.Errorf("%w: lookup", ErrForbidden))
	}
	return s.cfg.Store.CredentialsOf(ctx, councilNumber)
}
