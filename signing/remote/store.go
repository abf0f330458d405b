package remote

import (
	"context"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

// Store persists credentials, passkeys, ceremonies and SADs, and writes each change's audit event in the same
// transaction. SQLStore implements it on SQLite and PostgreSQL. All state shared between nodes lives here: a
// nonce or a SAD used on one node is used on all.
type Store interface {
	CreateCredential(ctx context.Context, c Credential, ev audit.Event) error
	Credential(ctx context.Context, id string) (Credential, error)
	CredentialsOf(ctx context.Context, councilNumber string) ([]Credential, error)
	// UpdateCredential writes c's status, reason and KeyDestroyed if its stored status is one of from.
	UpdateCredential(ctx context.Context, c Credential, from []Status, ev audit.Event) error
	AddPasskey(ctx context.Context, p Passkey, activate bool, ev audit.Event) error
	Passkeys(ctx context.Context, credentialID string) ([]Passkey, error)
	UpdatePasskey(ctx context.Context, p Passkey) error
	// DeletePasskeys removes every activation factor of the credential, passkeys and national ID cards (lost
	// authenticator or card).
	DeletePasskeys(ctx context.Context, credentialID string, ev audit.Event) error
	// AddCard registers a national ID card as an activation factor (ErrUsed if that card is registered for
	// the credential already); with activate, a pending or blocked credential becomes active in the same
	// transaction.
	AddCard(ctx context.Context, k Card, activate bool, ev audit.Event) error
	// Cards returns the credential's registered cards.
	Cards(ctx context.Context, credentialID string) ([]Card, error)

	putChallenge(ctx context.Context, ch challengeRecord, ev audit.Event) error
	// peekChallenge returns the ceremony without using it: ErrUsed if it was used, ErrNotFound if unknown.
	peekChallenge(ctx context.Context, id string, kind challengeKind) (challengeRecord, error)
	// takeChallenge marks the ceremony used and returns it; ErrUsed if it was used, ErrNotFound if unknown.
	// Expiry is the caller's check (the record comes back so the refusal can be audited with its hashes).
	takeChallenge(ctx context.Context, id string, kind challengeKind, now time.Time) (challengeRecord, error)
	// parkAssertion keeps the assertion the activation page received for request requestID until the
	// physician's signing application fetches it (ActivateParked); ErrUsed if one is parked already.
	parkAssertion(ctx context.Context, requestID string, assertion []byte, now time.Time, ev audit.Event) error
	// parkedAssertion returns it, or ErrPending.
	parkedAssertion(ctx context.Context, requestID string) ([]byte, error)
	putCardChallenge(ctx context.Context, ch cardChallengeRecord, ev audit.Event) error
	// takeCardChallenge marks the card challenge used and returns it; ErrUsed if it was used, ErrNotFound if
	// unknown. Expiry and binding are the caller's checks.
	takeCardChallenge(ctx context.Context, id string, now time.Time) (cardChallengeRecord, error)
	putActivation(ctx context.Context, a activationRecord, ev audit.Event) error
	activation(ctx context.Context, sadHash string) (activationRecord, error)
	// spendHashes marks each hash of the SAD used, all or none: ErrUsed if one was used, ErrNotAuthorized if
	// one is not covered.
	spendHashes(ctx context.Context, sadHash string, hashes [][]byte, now time.Time, ev audit.Event) error

	// Audit appends ev on its own (refusals).
	Audit(ctx context.Context, ev audit.Event) error
}
