package remote

import (
	"context"
	"fmt"
	"strconv"
)

// RFC 5280 §5.3.1 reason codes the lifecycle uses.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
)

func staff(c Caller) bool { return c.Role == RoleRAOfficer || c.Role == RoleOperator }

// Suspend makes an active credential unusable until Resume (an RA officer or operator, or the physician for
// their own credential). Activations and SADs issued before are refused while it is suspended.
func (s *Service) Suspend(ctx context.Context, c Caller, credID, reason string) error {
	cred, err := s.cfg.Store.Credential(ctx, credID)
	if err != nil {
		return err
	}
	if !staff(c) && !(c.Role == RolePhysician && c.CouncilNumber == cred.CouncilNumber) {
		return s.refuse(ctx, "suspend", c, credID, nil, fmt.Errorf("%w: suspend", ErrForbidden))
	}
	cred.Status, cred.Reason, cred.UpdatedAt = StatusSuspended, reason, s.now()
	return s.cfg.Store.UpdateCredential(ctx, cred, []Status{StatusActive},
		s.event("remote.credential.suspended", c, credID, map[string]any{"reason": reason}))
}

// Resume makes a suspended credential active again (an RA officer or operator).
func (s *Service) Resume(ctx context.Context, c Caller, credID string) error {
	if !staff(c) {
		return s.refuse(ctx, "resume", c, credID, nil, fmt.Errorf("%w: resume", ErrForbidden))
	}
	cred, err := s.cfg.Store.Credential(ctx, credID)
	if err != nil {
		return err
	}
	cred.Status, cred.Reason, cred.UpdatedAt = StatusActive, "", s.now()
	return s.cfg.Store.UpdateCredential(ctx, cred, []Status{StatusSuspended}, s.event("remote.credential.resumed", c, credID, nil))
}

// Block is the lost-authenticator (or lost-card) procedure: the credential is blocked and every activation
// factor removed (passkeys and national ID cards), so nothing can activate the key until an RA officer
// registers a new factor in person (BeginPasskeyRegistration and FinishPasskeyRegistration, or
// BeginCardChallenge and RegisterCard), which makes it active again. The physician may
// block their own credential; staff may block any.
func (s *Service) Block(ctx context.Context, c Caller, credID, reason string) error {
	cred, err := s.cfg.Store.Credential(ctx, credID)
	if err != nil {
		return err
	}
	if !staff(c) && !(c.Role == RolePhysician && c.CouncilNumber == cred.CouncilNumber) {
		return s.refuse(ctx, "block", c, credID, nil, fmt.Errorf("%w: block", ErrForbidden))
	}
	cred.Status, cred.Reason, cred.UpdatedAt = StatusBlocked, reason, s.now()
	if err := s.cfg.Store.UpdateCredential(ctx, cred, []Status{StatusActive, StatusSuspended, StatusPending},
		s.event("remote.credential.blocked", c, credID, map[string]any{"reason": reason})); err != nil {
		return err
	}
	return s.cfg.Store.DeletePasskeys(ctx, credID, s.event("remote.passkey.removed", c, credID, map[string]any{"reason": "authenticator lost: " + reason, "factors": "passkeys and national ID cards"}))
}

// Revoke revokes the credential's certificate (Config.Revoke) and ends the credential. The key is destroyed,
// and its destruction audited, when the reason is key compromise, superseded (re-key) or the physician left
// the registry (affiliationChanged, cessationOfOperation). Staff only.
func (s *Service) Revoke(ctx context.Context, c Caller, credID string, reason int) error {
	if !staff(c) {
		return s.refuse(ctx, "revoke", c, credID, nil, fmt.Errorf("%w: revoke", ErrForbidden))
	}
	cred, err := s.cfg.Store.Credential(ctx, credID)
	if err != nil {
		return err
	}
	return s.revoke(ctx, c, cred, reason)
}

func (s *Service) revoke(ctx context.Context, c Caller, cred Credential, reason int) error {
	if s.cfg.Revoke != nil {
		chain, err := cred.Certificates()
		if err != nil || len(chain) == 0 {
			return fmt.Errorf("remote: stored chain: %v", err)
		}
		if err := s.cfg.Revoke(ctx, chain[0], reason, c.Actor); err != nil {
			return fmt.Errorf("%w: revoke: %w", ErrIssue, err)
		}
	}
	destroy := reason == ReasonKeyCompromise || reason == ReasonSuperseded || reason == ReasonAffiliationChanged ||
		reason == ReasonCessationOfOperation
	cred.Status, cred.Reason, cred.UpdatedAt = StatusRevoked, "reason "+strconv.Itoa(reason), s.now()
	if err := s.cfg.Store.UpdateCredential(ctx, cred, []Status{StatusPending, StatusActive, StatusSuspended, StatusBlocked},
		s.event("remote.credential.revoked", c, cred.ID, map[string]any{"reason": reason, "destroy_key": destroy})); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.signers, cred.ID)
	s.mu.Unlock()
	if !destroy {
		return nil
	}
	if err := s.destroyKey(ctx, c, cred, "revoked, reason "+strconv.Itoa(reason)); err != nil {
		return err
	}
	cred.KeyDestroyed, cred.UpdatedAt = true, s.now()
	return s.cfg.Store.UpdateCredential(ctx, cred, []Status{StatusRevoked}, s.event("remote.credential.key-destroyed", c, cred.ID, nil))
}

// LeftRegistry ends every credential of a physician who left the medical council's registry: each is
// revoked (cessationOfOperation) and its key destroyed. Staff only (or the registry sync as an operator).
func (s *Service) LeftRegistry(ctx context.Context, c Caller, councilNumber string) error {
	if !staff(c) {
		return s.refuse(ctx, "left-registry", c, councilNumber, nil, fmt.Errorf("%w: left-registry", ErrForbidden))
	}
	creds, err := s.cfg.Store.CredentialsOf(ctx, councilNumber)
	if err != nil {
		return err
	}
	for _, cred := range creds {
		if cred.Status == StatusRevoked {
			if !cred.KeyDestroyed {
				if err := s.destroyKey(ctx, c, cred, "physician left the registry"); err != nil {
					return err
				}
				cred.KeyDestroyed, cred.UpdatedAt = true, s.now()
				if err := s.cfg.Store.UpdateCredential(ctx, cred, []Status{StatusRevoked}, s.event("remote.credential.key-destroyed", c, cred.ID, nil)); err != nil {
					return err
				}
			}
			continue
		}
		if err := s.revoke(ctx, c, cred, ReasonCessationOfOperation); err != nil {
			return err
		}
	}
	return nil
}

// Rekey replaces a credential's key and certificate: a new key in the HSM and a new certificate under a new
// credential ID, the passkeys and cards carried over (the activation factors are the physician's, not the key's), then
// the old certificate revoked as superseded and the old key destroyed. Staff only.
func (s *Service) Rekey(ctx context.Context, c Caller, credID string) (Credential, error) {
	if !staff(c) {
		return Credential{}, s.refuse(ctx, "rekey", c, credID, nil, fmt.Errorf("%w: rekey", ErrForbidden))
	}
	old, err := s.cfg.Store.Credential(ctx, credID)
	if err != nil {
		return Credential{}, err
	}
	if old.Status != StatusActive && old.Status != StatusSuspended {
		return Credential{}, s.refuse(ctx, "rekey", c, credID, nil, fmt.Errorf("%w: %s", ErrCredentialStatus, old.Status))
	}
	pks, err := s.cfg.Store.Passkeys(ctx, credID)
	if err != nil {
		return Credential{}, err
	}
	cards, err := s.cfg.Store.Cards(ctx, credID)
	if err != nil {
		return Credential{}, err
	}
	cred, err := s.newKeyAndCertificate(ctx, c, old.NationalCode, old.CouncilNumber, old.Name)
	if err != nil {
		return Credential{}, err
	}
	cred.UserHandle = old.UserHandle // the passkeys carry over
	leaf, _ := cred.Certificates()
	if err := s.cfg.Store.CreateCredential(ctx, cred, s.event("remote.credential.rekeyed", c, cred.ID, map[string]any{
		"replaces": old.ID, "key_label": cred.KeyLabel, "serial": leaf[0].SerialNumber.Text(16),
	})); err != nil {
		s.destroyKey(ctx, c, cred, "re-key not recorded")
		return Credential{}, err
	}
	for i, p := range pks {
		p.CredentialID, p.CreatedAt = cred.ID, s.now()
		if err := s.cfg.Store.AddPasskey(ctx, p, i == 0, s.event("remote.passkey.carried-over", c, cred.ID, map[string]any{"from": old.ID})); err != nil {
			return Credential{}, err
		}
	}
	for i, k := range cards {
		k.CredentialID, k.CreatedAt = cred.ID, s.now()
		if err := s.cfg.Store.AddCard(ctx, k, i == 0 && len(pks) == 0, s.event("remote.card.carried-over", c, cred.ID, map[string]any{
			"from": old.ID, "card_cert_sha256": k.Fingerprint,
		})); err != nil {
			return Credential{}, err
		}
	}
	if err := s.revoke(ctx, c, old, ReasonSuperseded); err != nil {
		return Credential{}, err
	}
	return s.cfg.Store.Credential(ctx, cred.ID)
}
