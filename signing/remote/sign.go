package remote

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/mohr-hix/mohr/keys"
)

// SignHash redeems sad for hashes and signs each with the credential's HSM key (ECDSA with SHA-256; the
// signature is DER, as crypto.Signer returns it). Every hash must be covered by the SAD and not signed
// before; the SAD must be the credential's and unexpired; the credential active and the caller's. The
// hashes are marked used (all or none) and audited before the HSM is asked, so a SAD can never sign twice,
// even across nodes. Nothing is signed if any check fails.
func (s *Service) SignHash(ctx context.Context, c Caller, credID, sad string, hashes [][]byte) ([][]byte, error) {
	if err := s.checkHashes(hashes); err != nil {
		return nil, s.refuse(ctx, "signHash", c, credID, hashes, err)
	}
	cred, err := s.usable(ctx, c, credID)
	if err != nil {
		return nil, s.refuse(ctx, "signHash", c, credID, hashes, err)
	}
	if sad == "" {
		return nil, s.refuse(ctx, "signHash", c, credID, hashes, fmt.Errorf("%w: no SAD", ErrNotAuthorized))
	}
	sh := sadHash(sad)
	a, err := s.cfg.Store.activation(ctx, sh)
	if err != nil {
		return nil, s.refuse(ctx, "signHash", c, credID, hashes, err)
	}
	if a.CredentialID != cred.ID {
		return nil, s.refuse(ctx, "signHash", c, credID, hashes, fmt.Errorf("%w: SAD of another credential", ErrNotAuthorized))
	}
	now := s.now()
	if !now.Before(a.ExpiresAt) {
		return nil, s.refuse(ctx, "signHash", c, credID, hashes, fmt.Errorf("%w: SAD", ErrExpired))
	}
	leaf, err := cred.Certificates()
	if err != nil || len(leaf) == 0 {
		return nil, fmt.Errorf("remote: stored chain: %v", err)
	}
	signer, err := s.signerFor(ctx, cred)
	if err != nil {
		return nil, s.refuse(ctx, "signHash", c, credID, hashes, err)
	}
	if err := s.cfg.Store.spendHashes(ctx, sh, hashes, now, s.event("remote.signature.authorized", c, cred.ID, map[string]any{
		"sad_sha256": sh, "hashes": hexStrings(hashes), "serial": leaf[0].SerialNumber.Text(16),
	})); err != nil {
		return nil, s.refuse(ctx, "signHash", c, credID, hashes, err)
	}
	sigs := make([][]byte, len(hashes))
	sigSums := make([]string, len(hashes))
	for i, h := range hashes {
		sig, err := signWith(ctx, signer, h)
		if err != nil {
			// The hashes stay used: a retry needs a new activation (fail closed).
			return nil, s.refuse(ctx, "signHash", c, credID, hashes, fmt.Errorf("%w: sign: %w", ErrKey, err))
		}
		sigs[i] = sig
		sum := sha256.Sum256(sig)
		sigSums[i] = hex.EncodeToString(sum[:])
	}
	if err := s.cfg.Store.Audit(ctx, s.event("remote.signature", c, cred.ID, map[string]any{
		"hashes": hexStrings(hashes), "signatures_sha256": sigSums, "serial": leaf[0].SerialNumber.Text(16),
	})); err != nil {
		return nil, err // withheld: a signature the audit log does not know about is never released
	}
	return sigs, nil
}

// signWith signs with the context when the key supports it (hsm.Key does, and verifies every signature it
// makes before returning it).
func signWith(ctx context.Context, k crypto.Signer, digest []byte) ([]byte, error) {
	if cs, ok := k.(interface {
		SignContext(context.Context, []byte, crypto.SignerOpts) ([]byte, error)
	}); ok {
		return cs.SignContext(ctx, digest, crypto.SHA256)
	}
	return keys.Verifying(k).Sign(rand.Reader, digest, crypto.SHA256)
}
