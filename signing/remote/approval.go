package remote

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// The activation page (api/web/remotepage) is the production activator: the physician's signing application
// starts an activation over the mTLS API (BeginActivation: the hashes in, a handle out) and tells the
// physician to open Mohr's activation page for that handle; the page, on Mohr's own origin (the WebAuthn
// relying party), shows what is being signed and runs navigator.credentials.get over exactly the challenge
// Mohr made from the hashes; the answer is checked and parked (ApproveActivation). The signing application
// then asks for the SAD with the handle alone (ActivateParked), over its mTLS connection as the physician,
// and the parked assertion goes through Activate with every check there (one use, the caller's credential,
// the signature counter). The handle is 256 random bits and only lets its holder see the request's hashes
// and offer an assertion, which only the physician's authenticator can make; the SAD goes only to the
// physician's authenticated client.

// pageCaller is who acts on the activation page: whoever holds the handle (the physician).
func pageCaller(credID string) Caller {
	return Caller{Role: "activation-page", Actor: "page:activation:" + credID}
}

// PendingActivation is what the activation page shows and runs.
type PendingActivation struct {
	CredentialID  string
	Name          string
	CouncilNumber string
	Hashes        [][]byte
	ExpiresAt     time.Time
	// Options are the WebAuthn request options: the challenge over the hashes, this credential's passkeys,
	// user verification required.
	Options *protocol.CredentialAssertion
}

// pendingActivation loads an unused, unexpired activation request and its active credential.
func (s *Service) pendingActivation(ctx context.Context, op, handle string) (challengeRecord, Credential, *user, error) {
	ch, err := s.cfg.Store.peekChallenge(ctx, handle, kindActivate)
	if err != nil {
		return ch, Credential{}, nil, s.refuse(ctx, op, pageCaller(ch.CredentialID), ch.CredentialID, ch.Hashes, err)
	}
	if !s.now().Before(ch.ExpiresAt) {
		return ch, Credential{}, nil, s.refuse(ctx, op, pageCaller(ch.CredentialID), ch.CredentialID, ch.Hashes, fmt.Errorf("%w: activation request", ErrExpired))
	}
	cred, err := s.cfg.Store.Credential(ctx, ch.CredentialID)
	if err != nil {
		return ch, Credential{}, nil, err
	}
	if cred.Status != StatusActive {
		return ch, Credential{}, nil, s.refuse(ctx, op, pageCaller(cred.ID), cred.ID, ch.Hashes, fmt.Errorf("%w: %s", ErrCredentialStatus, cred.Status))
	}
	u, _, err := s.loadUser(ctx, cred)
	if err != nil {
		return ch, Credential{}, nil, err
	}
	return ch, cred, u, nil
}

// ActivationOptions returns the activation request handle opened, for the activation page, without using it.
func (s *Service) ActivationOptions(ctx context.Context, handle string) (PendingActivation, error) {
	if _, err := hex.DecodeString(handle); err != nil || len(handle) != 64 {
		return PendingActivation{}, fmt.Errorf("%w: activation request", ErrNotFound)
	}
	ch, cred, u, err := s.pendingActivation(ctx, "activation-options", handle)
	if err != nil {
		return PendingActivation{}, err
	}
	allowed := make([]protocol.CredentialDescriptor, len(u.creds))
	for i, wc := range u.creds {
		allowed[i] = wc.Descriptor()
	}
	opts, _, err := s.wa.BeginLogin(u, webauthn.WithChallenge(ch.Challenge), webauthn.WithAllowedCredentials(allowed),
		webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return PendingActivation{}, fmt.Errorf("remote: webauthn: %w", err)
	}
	return PendingActivation{CredentialID: cred.ID, Name: cred.Name, CouncilNumber: cred.CouncilNumber, Hashes: ch.Hashes,
		ExpiresAt: ch.ExpiresAt, Options: opts}, nil
}

// ApproveActivation checks the assertion the activation page's authenticator made for request handle and
// parks it for the signing application. The checks are Activate's (the challenge recomputed from the stored
// hashes, RP ID, origin, this credential's passkeys, user presence and verification, the counter), without
// using the request up or storing the counter: Activate does both when the signing application asks for
// the SAD. A second approval of the same request is refused.
func (s *Service) ApproveActivation(ctx context.Context, handle string, assertion []byte) error {
	if _, err := hex.DecodeString(handle); err != nil || len(handle) != 64 {
		return fmt.Errorf("%w: activation request", ErrNotFound)
	}
	ch, cred, u, err := s.pendingActivation(ctx, "approve", handle)
	if err != nil {
		return err
	}
	c := pageCaller(cred.ID)
	nonce, _ := hex.DecodeString(ch.ID)
	want := Challenge(cred.ID, nonce, ch.Hashes)
	parsed, err := protocol.ParseCredentialRequestResponseBytes(assertion)
	if err != nil {
		return s.refuse(ctx, "approve", c, cred.ID, ch.Hashes, fmt.Errorf("%w: %v", ErrAssertion, err))
	}
	allowed := make([][]byte, len(u.creds))
	for i, wc := range u.creds {
		allowed[i] = wc.ID
	}
	sd := webauthn.SessionData{Challenge: base64.RawURLEncoding.EncodeToString(want), RelyingPartyID: s.cfg.RPID,
		UserID: u.WebAuthnID(), AllowedCredentialIDs: allowed, UserVerification: protocol.VerificationRequired}
	wc, err := s.wa.ValidateLogin(u, sd, parsed)
	if err != nil {
		return s.refuse(ctx, "approve", c, cred.ID, ch.Hashes, fmt.Errorf("%w: %v", ErrAssertion, webauthnDetail(err)))
	}
	if !parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
		return s.refuse(ctx, "approve", c, cred.ID, ch.Hashes, fmt.Errorf("%w: no user verification", ErrAssertion))
	}
	if wc.Authenticator.CloneWarning {
		return s.refuse(ctx, "approve", c, cred.ID, ch.Hashes, fmt.Errorf("%w: signature counter did not advance (cloned authenticator?)", ErrAssertion))
	}
	err = s.cfg.Store.parkAssertion(ctx, ch.ID, assertion, s.now(), s.event("remote.activation.approved", c, cred.ID, map[string]any{
		"request": ch.ID, "hashes": hexStrings(ch.Hashes), "passkey_id": hex.EncodeToString(wc.ID), "user_verified": true,
	}))
	if err != nil {
		return s.refuse(ctx, "approve", c, cred.ID, ch.Hashes, err)
	}
	return nil
}

// ActivateParked is Activate with the assertion the activation page parked for request requestID: ErrPending
// (nothing used up) while the physician has not approved. Only the credential's own physician gets an
// answer other than a refusal.
func (s *Service) ActivateParked(ctx context.Context, c Caller, credID, requestID string) (Activation, error) {
	if _, err := s.usable(ctx, c, credID); err != nil {
		return Activation{}, s.refuse(ctx, "activate", c, credID, nil, err)
	}
	ch, err := s.cfg.Store.peekChallenge(ctx, requestID, kindActivate)
	if err == nil && ch.CredentialID != credID {
		err = fmt.Errorf("%w: activation request of another credential", ErrNotFound)
	}
	if err == nil && !s.now().Before(ch.ExpiresAt) {
		err = fmt.Errorf("%w: activation request", ErrExpired)
	}
	if err != nil {
		return Activation{}, s.refuse(ctx, "activate", c, credID, ch.Hashes, err)
	}
	assertion, err := s.cfg.Store.parkedAssertion(ctx, requestID)
	if err != nil {
		return Activation{}, err // ErrPending: not audited, the application polls
	}
	return s.Activate(ctx, c, credID, requestID, assertion)
}
