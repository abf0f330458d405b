package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// HashSize is the length of the hashes a credential signs: SHA-256, for ECDSA P-256 keys.
const HashSize = sha256.Size

// challengeLabel separates Mohr's SCAL2 challenges from every other use of SHA-256.
const challengeLabel = "MOHR-SCAL2-ACTIVATION-v1\x00"

// Challenge computes the WebAuthn challenge of an activation: SHA-256 over a domain label, the credential ID,
// the nonce and exactly the hashes, in order, each length-prefixed. The authenticator signs over it (through
// clientDataJSON), so an assertion is good for this credential, this nonce and these hashes only (EN 419
// 241-1 SCAL2: the signature activation data is linked to the data to be signed).
func Challenge(credID string, nonce []byte, hashes [][]byte) []byte {
	h := sha256.New()
	h.Write([]byte(challengeLabel))
	var n [4]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	put([]byte(credID))
	put(nonce)
	binary.BigEndian.PutUint32(n[:], uint32(len(hashes)))
	h.Write(n[:])
	for _, x := range hashes {
		put(x)
	}
	return h.Sum(nil)
}

// checkHashes refuses an empty list, more than the comfort limit, a wrong length or a duplicate.
func (s *Service) checkHashes(hashes [][]byte) error {
	if len(hashes) == 0 || len(hashes) > s.cfg.MaxHashes {
		return fmt.Errorf("%w: 1 to %d hashes", ErrBadRequest, s.cfg.MaxHashes)
	}
	seen := make(map[string]bool, len(hashes))
	for i, h := range hashes {
		if len(h) != HashSize {
			return fmt.Errorf("%w: hash %d is %d bytes, want %d", ErrBadRequest, i, len(h), HashSize)
		}
		if seen[string(h)] {
			return fmt.Errorf("%w: hash %d appears twice", ErrBadRequest, i)
		}
		seen[string(h)] = true
	}
	return nil
}

// usable loads the credential and checks that c may use it now: a physician, the credential's own, active.
func (s *Service) usable(ctx context.Context, c Caller, credID string) (Credential, error) {
	if c.Role != RolePhysician || c.CouncilNumber == "" {
		return Credential{}, fmt.Errorf("%w: only the physician signs with a remote credential", ErrForbidden)
	}
	cred, err := s.cfg.Store.Credential(ctx, credID)
	if err != nil {
		return Credential{}, err
	}
	if cred.CouncilNumber != c.CouncilNumber {
		// Not distinguishable from an unknown credential to the caller.
		return Credential{}, fmt.Errorf("%w: credential", ErrNotFound)
	}
	if cred.Status != StatusActive {
		return cred, fmt.Errorf("%w: %s", ErrCredentialStatus, cred.Status)
	}
	chain, err := cred.Certificates()
	if err != nil || len(chain) == 0 {
		return cred, fmt.Errorf("remote: stored chain: %v", err)
	}
	if now := s.now(); now.Before(chain[0].NotBefore) || now.After(chain[0].NotAfter) {
		return cred, fmt.Errorf("%w: %w", ErrCredentialStatus, ErrCertificateExpired)
	}
	return cred, nil
}

// ActivationRequest is the WebAuthn ceremony the physician's authenticator must answer to activate the key
// for the hashes.
type ActivationRequest struct {
	// ID identifies the request (the nonce, hex); send it back with the assertion.
	ID string
	// Options are the WebAuthn request options (nil when the credential has no passkey, only a card).
	Options *protocol.CredentialAssertion
	// Challenge is Challenge(credID, nonce, hashes): what the passkey signs (as Options' challenge) or the
	// national ID card signs (INTERNAL AUTHENTICATE, ActivateWithCard).
	Challenge []byte
	ExpiresAt time.Time
}

// BeginActivation starts an activation for hashes: it stores a one-use nonce with the hashes and returns
// the assertion options whose challenge is Challenge(credID, nonce, hashes), restricted to the credential's
// passkeys, user verification required.
func (s *Service) BeginActivation(ctx context.Context, c Caller, credID string, hashes [][]byte) (ActivationRequest, error) {
	if err := s.checkHashes(hashes); err != nil {
		return ActivationRequest{}, s.refuse(ctx, "authorize", c, credID, hashes, err)
	}
	cred, err := s.usable(ctx, c, credID)
	if err != nil {
		return ActivationRequest{}, s.refuse(ctx, "authorize", c, credID, hashes, err)
	}
	u, _, err := s.loadUser(ctx, cred)
	if err != nil {
		return ActivationRequest{}, err
	}
	cards, err := s.cfg.Store.Cards(ctx, cred.ID)
	if err != nil {
		return ActivationRequest{}, err
	}
	if len(u.creds) == 0 && len(cards) == 0 {
		return ActivationRequest{}, s.refuse(ctx, "authorize", c, credID, hashes, fmt.Errorf("%w: no activation factor", ErrCredentialStatus))
	}
	nonce, err := s.random(32)
	if err != nil {
		return ActivationRequest{}, err
	}
	chal := Challenge(cred.ID, nonce, hashes)
	var opts *protocol.CredentialAssertion
	if len(u.creds) > 0 {
		allowed := make([]protocol.CredentialDescriptor, len(u.creds))
		for i, wc := range u.creds {
			allowed[i] = wc.Descriptor()
		}
		opts, _, err = s.wa.BeginLogin(u, webauthn.WithChallenge(chal), webauthn.WithAllowedCredentials(allowed),
			webauthn.WithUserVerification(protocol.VerificationRequired))
		if err != nil {
			return ActivationRequest{}, fmt.Errorf("remote: webauthn: %w", err)
		}
	}
	ch := challengeRecord{ID: hex.EncodeToString(nonce), Kind: kindActivate, CredentialID: cred.ID, Hashes: hashes,
		Challenge: chal, ExpiresAt: s.now().Add(s.cfg.ChallengeTTL)}
	if err := s.cfg.Store.putChallenge(ctx, ch, s.event("remote.activation.requested", c, cred.ID, map[string]any{
		"request": ch.ID, "hashes": hexStrings(hashes), "expires": ch.ExpiresAt,
	})); err != nil {
		return ActivationRequest{}, err
	}
	return ActivationRequest{ID: ch.ID, Options: opts, Challenge: chal, ExpiresAt: ch.ExpiresAt}, nil
}

// Activation is signature activation data: the SAD to present with signHash, and what it covers.
type Activation struct {
	SAD       string
	Hashes    [][]byte
	ExpiresAt time.Time
}

// Activate checks the assertion that answers request requestID and, if it holds, issues SAD for the
// request's hashes. The request is used up whatever the outcome (a failed assertion cannot be retried with
// the same nonce). Checks: the request is unexpired and the credential's; the credential is active and the
// caller's; the assertion verifies under one of the credential's passkeys, for the RP ID and an allowed
// origin, over the challenge recomputed from the stored hashes, with user presence and user verification;
// the signature counter advances (a cloned authenticator is refused).
func (s *Service) Activate(ctx context.Context, c Caller, credID, requestID string, assertion []byte) (Activation, error) {
	now := s.now()
	ch, err := s.cfg.Store.takeChallenge(ctx, requestID, kindActivate, now)
	if err != nil {
		return Activation{}, s.refuse(ctx, "activate", c, credID, ch.Hashes, err)
	}
	if ch.CredentialID != credID {
		return Activation{}, s.refuse(ctx, "activate", c, credID, ch.Hashes, fmt.Errorf("%w: activation request of another credential", ErrNotFound))
	}
	if !now.Before(ch.ExpiresAt) {
		return Activation{}, s.refuse(ctx, "activate", c, credID, ch.Hashes, fmt.Errorf("%w: activation request", ErrExpired))
	}
	cred, err := s.usable(ctx, c, credID)
	if err != nil {
		return Activation{}, s.refuse(ctx, "activate", c, credID, ch.Hashes, err)
	}
	// The stored challenge must be the one the stored hashes give (a tampered row is refused).
	nonce, _ := hex.DecodeString(ch.ID)
	want := Challenge(cred.ID, nonce, ch.Hashes)
	if !bytes.Equal(want, ch.Challenge) {
		return Activation{}, s.refuse(ctx, "activate", c, credID, ch.Hashes, fmt.Errorf("%w: stored challenge does not match its hashes", ErrAssertion))
	}
	u, pks, err := s.loadUser(ctx, cred)
	if err != nil {
		return Activation{}, err
	}
	wc, err := s.checkAssertion(u, want, assertion)
	if err != nil {
		return Activation{}, s.refuse(ctx, "activate", c, credID, ch.Hashes, err)
	}
	for _, p := range pks {
		if bytes.Equal(p.ID, wc.ID) {
			p.Data, _ = json.Marshal(wc)
			if err := s.cfg.Store.UpdatePasskey(ctx, p); err != nil {
				return Activation{}, err
			}
		}
	}
	return s.grant(ctx, c, cred, ch, map[string]any{"factor": FactorPasskey, "passkey_id": hex.EncodeToString(wc.ID), "user_verified": true})
}

// grant issues the SAD for the used-up activation request ch once its factor (passkey or card) held: a
// random 256-bit value bound to the credential and exactly ch's hashes, valid SADTTL; only its SHA-256 is
// stored, with the audit event that names the factor (factor's fields are merged into it).
func (s *Service) grant(ctx context.Context, c Caller, cred Credential, ch challengeRecord, factor map[string]any) (Activation, error) {
	raw, err := s.random(32)
	if err != nil {
		return Activation{}, err
	}
	sad := base64.RawURLEncoding.EncodeToString(raw)
	a := activationRecord{SADHash: sadHash(sad), CredentialID: cred.ID, Hashes: ch.Hashes, ExpiresAt: s.now().Add(s.cfg.SADTTL)}
	data := map[string]any{"request": ch.ID, "hashes": hexStrings(ch.Hashes), "sad_sha256": a.SADHash, "expires": a.ExpiresAt}
	for k, v := range factor {
		data[k] = v
	}
	if err := s.cfg.Store.putActivation(ctx, a, s.event("remote.activation.granted", c, cred.ID, data)); err != nil {
		return Activation{}, err
	}
	return Activation{SAD: sad, Hashes: ch.Hashes, ExpiresAt: a.ExpiresAt}, nil
}

// checkAssertion checks a WebAuthn assertion (the JSON of navigator.credentials.get) for challenge want
// against u's passkeys: it verifies under one of them, for the RP ID and an allowed origin, with user presence
// and user verification, and the signature counter advances (a cloned authenticator is refused). Errors wrap
// ErrAssertion. Activate and ApproveActivation both use it, so the two ways to activate check the same.
func (s *Service) checkAssertion(u *user, want, assertion []byte) (*webauthn.Credential, error) {
	parsed, err := protocol.ParseCredentialRequestResponseBytes(assertion)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAssertion, err)
	}
	allowed := make([][]byte, len(u.creds))
	for i, wc := range u.creds {
		allowed[i] = wc.ID
	}
	sd := webauthn.SessionData{Challenge: base64.RawURLEncoding.EncodeToString(want), RelyingPartyID: s.cfg.RPID,
		UserID: u.WebAuthnID(), AllowedCredentialIDs: allowed, UserVerification: protocol.VerificationRequired}
	wc, err := s.wa.ValidateLogin(u, sd, parsed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAssertion, webauthnDetail(err))
	}
	if !parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
		return nil, fmt.Errorf("%w: no user verification", ErrAssertion)
	}
	if wc.Authenticator.CloneWarning {
		return nil, fmt.Errorf("%w: signature counter did not advance (cloned authenticator?)", ErrAssertion)
	}
	return wc, nil
}

// List returns the caller's own credentials (a physician's; nobody else has remote credentials to list).
func (s *Service) List(ctx context.Context, c Caller) ([]Credential, error) {
	if c.Role != RolePhysician || c.CouncilNumber == "" {
		return nil, fmt.Errorf("%w: only a physician lists remote credentials", ErrForbidden)
	}
	return s.cfg.Store.CredentialsOf(ctx, c.CouncilNumber)
}

// Info returns one of the caller's own credentials, whatever its status.
func (s *Service) Info(ctx context.Context, c Caller, credID string) (Credential, error) {
	if c.Role != RolePhysician || c.CouncilNumber == "" {
		return Credential{}, fmt.Errorf("%w: only a physician reads remote credentials", ErrForbidden)
	}
	cred, err := s.cfg.Store.Credential(ctx, credID)
	if err != nil {
		return Credential{}, err
	}
	if cred.CouncilNumber != c.CouncilNumber {
		return Credential{}, fmt.Errorf("%w: credential", ErrNotFound)
	}
	return cred, nil
}
