package offline

import (
	"context"
	"crypto"
	"errors"
	"sync"
	"time"
)

// Publisher makes the signed trust bundle the exchange serves, and re-signs it when it is older than Refresh,
// so a verifier that fetches it gets a revocation snapshot at most Refresh old. Every node of a cluster makes
// its own from the shared database; they differ only in their issue times. It is safe for concurrent use.
type Publisher struct {
	// Seal is the Ministry's trust-bundle seal key (verifiers pin its public key).
	Seal crypto.Signer
	// Content returns the certificates and the revocation snapshot; the Publisher sets the dates.
	Content func(ctx context.Context) (BundleInput, error)
	// Validity is how long a bundle is accepted after its issue (next update - issue); 7 days when zero.
	Validity time.Duration
	// Refresh is how old the served bundle may get before it is rebuilt; 1 hour when zero.
	Refresh time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu     sync.Mutex
	signed []byte
	issued time.Time
	next   time.Time
}

// Bundle returns the current signed bundle and its dates, rebuilding it when it is older than Refresh.
func (p *Publisher) Bundle(ctx context.Context) (signed []byte, issued, nextUpdate time.Time, err error) {
	if p.Seal == nil || p.Content == nil {
		return nil, time.Time{}, time.Time{}, errors.New("offline: publisher needs a seal key and content")
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	validity, refresh := p.Validity, p.Refresh
	if validity <= 0 {
		validity = 7 * 24 * time.Hour
	}
	if refresh <= 0 {
		refresh = time.Hour
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := now().UTC().Truncate(time.Second)
	if p.signed != nil && !t.Before(p.issued) && t.Sub(p.issued) < refresh {
		return p.signed, p.issued, p.next, nil
	}
	in, err := p.Content(ctx)
	if err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	in.Issued, in.NextUpdate = t, t.Add(validity)
	b, err := MakeBundle(ctx, in, p.Seal)
	if err != nil {
		return nil, time.Time{}, time.Time{}, err
	}
	p.signed, p.issued, p.next = b, in.Issued, in.NextUpdate
	return b, p.issued, p.next, nil
}

// Signed returns the current signed bundle (Bundle without the dates).
func (p *Publisher) Signed(ctx context.Context) ([]byte, error) {
	b, _, _, err := p.Bundle(ctx)
	return b, err
}
