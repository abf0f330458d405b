package adapter

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// RevocationChange is one entry of the exchange's revocation change feed (GET /v1/revocations): a certificate
// was revoked, put on hold, or released from hold (Status "issued").
type RevocationChange struct {
	Seq       int64     `json:"seq"`
	Serial    string    `json:"serial"` // lower-case hex, as fmt's %x prints the serial number
	Status    string    `json:"status"` // "revoked", "hold" or "issued"
	Reason    int       `json:"reason,omitempty"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	NotAfter  time.Time `json:"notAfter"`
}

// RevocationSource reads the change feed: the changes from position from on, and the position after them.
// from < 0 asks for the head only (no changes): where a new follower starts.
type RevocationSource interface {
	Changes(ctx context.Context, from int64) (next int64, changes []RevocationChange, err error)
}

// HTTPRevocationSource reads the feed over HTTP: GET URL?from=N answering {"next": N, "changes": [...]}.
// The feed is as public as a CRL (serials and states of revoked certificates), so plain HTTP is enough.
type HTTPRevocationSource struct {
	URL    string
	Client *http.Client // nil: one with a 3 s timeout
}

var defaultFeedClient = &http.Client{Timeout: 3 * time.Second}

// Changes implements RevocationSource.
func (h *HTTPRevocationSource) Changes(ctx context.Context, from int64) (int64, []RevocationChange, error) {
	u, err := url.Parse(h.URL)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: feed URL: %w", ErrRevocationUnknown, err)
	}
	if from >= 0 {
		q := u.Query()
		q.Set("from", strconv.FormatInt(from, 10))
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrRevocationUnknown, err)
	}
	c := h.Client
	if c == nil {
		c = defaultFeedClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrRevocationUnknown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("%w: revocation feed answered HTTP %d", ErrRevocationUnknown, resp.StatusCode)
	}
	var page struct {
		Next    *int64             `json:"next"`
		Changes []RevocationChange `json:"changes"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&page); err != nil || page.Next == nil {
		return 0, nil, fmt.Errorf("%w: revocation feed answer is not a feed page", ErrRevocationUnknown)
	}
	return *page.Next, page.Changes, nil
}

// serialForgetter is implemented by checkers that cache per certificate (RevocationCache): a change the feed
// reports makes the cached answer for that serial stale.
type serialForgetter interface {
	ForgetSerial(serial string)
}

// RevocationFollower is a RevocationChecker that follows the exchange's change feed as it happens and asks
// Checker (OCSP behind its cache) only about certificates the feed has said nothing about since the follower
// started; for the others the feed's newest state is the answer. The feed is not signed, so Source must be an
// authenticated channel (HTTPS verified against the exchange's root, or loopback): whoever can write the feed
// decides which certificates pass. A revocation or hold reaches the gateway within one Interval (plus the feed's round trip),
// whatever the OCSP cache time. It fails closed: while the last successful read of the feed is older than
// MaxLag (or there has been none yet), Check answers ErrRevocationUnknown for every certificate, so a revoked
// token passes for at most MaxLag after its revocation even if the feed is cut exactly then.
type RevocationFollower struct {
	Source  RevocationSource
	Checker RevocationChecker
	// Interval between reads of the feed; zero means 1 s.
	Interval time.Duration
	// MaxLag is how old the last successful read may be before every check fails closed; zero means 4 s. It
	// must exceed Interval plus the feed's round trip.
	MaxLag time.Duration
	Clock  func() time.Time
	// OnError hears of failed reads (the gateway logs them); nil ignores them.
	OnError func(error)

	mu      sync.Mutex
	started bool
	next    int64
	lastOK  time.Time
	failing bool
	changes map[string]RevocationChange // by serial, the newest change
}

func (f *RevocationFollower) now() time.Time {
	if f.Clock != nil {
		return f.Clock()
	}
	return time.Now()
}

func (f *RevocationFollower) maxLag() time.Duration {
	if f.MaxLag > 0 {
		return f.MaxLag
	}
	return 4 * time.Second
}

// Poll reads the feed up to its head once. The follower counts as current from the time Poll started, and
// only if it reached the head.
func (f *RevocationFollower) Poll(ctx context.Context) error {
	start := f.now()
	f.mu.Lock()
	from := f.next
	if !f.started {
		from = -1
	}
	f.mu.Unlock()
	for range 1000 { // bounded: 1000 pages is far more than any backlog between two polls
		next, changes, err := f.Source.Changes(ctx, from)
		if err != nil {
			return err
		}
		if from >= 0 && next < from {
			return fmt.Errorf("%w: revocation feed went backwards (%d after %d)", ErrRevocationUnknown, next, from)
		}
		f.apply(changes)
		if next == from || from < 0 && len(changes) == 0 {
			f.mu.Lock()
			f.started, f.next, f.lastOK = true, next, start
			f.mu.Unlock()
			return nil
		}
		from = next
		f.mu.Lock()
		f.next = next
		f.mu.Unlock()
	}
	return fmt.Errorf("%w: revocation feed did not reach its head", ErrRevocationUnknown)
}

func (f *RevocationFollower) apply(changes []RevocationChange) {
	if len(changes) == 0 {
		return
	}
	fg, _ := f.Checker.(serialForgetter)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.changes == nil {
		f.changes = map[string]RevocationChange{}
	}
	for _, c := range changes {
		f.changes[c.Serial] = c
		if fg != nil {
			fg.ForgetSerial(c.Serial)
		}
	}
}

// prune drops changes of certificates that have expired: no path validation admits them any more.
func (f *RevocationFollower) prune() {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for s, c := range f.changes {
		if !c.NotAfter.IsZero() && now.After(c.NotAfter) {
			delete(f.changes, s)
		}
	}
}

// Run polls every Interval until ctx ends, and returns ctx's error. Failures go to OnError once per outage
// (and once more when the feed answers again, as a nil error).
func (f *RevocationFollower) Run(ctx context.Context) error {
	iv := f.Interval
	if iv <= 0 {
		iv = time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for n := 0; ; n++ {
		err := f.Poll(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f.mu.Lock()
		report := err != nil && !f.failing || err == nil && f.failing
		f.failing = err != nil
		f.mu.Unlock()
		if report && f.OnError != nil {
			f.OnError(err)
		}
		if n%600 == 0 {
			f.prune()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Check implements RevocationChecker.
func (f *RevocationFollower) Check(ctx context.Context, cert, issuer *x509.Certificate) (RevocationStatus, error) {
	serial := fmt.Sprintf("%x", cert.SerialNumber)
	now := f.now()
	f.mu.Lock()
	started, lastOK := f.started, f.lastOK
	c, known := f.changes[serial]
	f.mu.Unlock()
	switch {
	case !started:
		return RevocationStatus{}, fmt.Errorf("%w: the revocation feed has not been read yet", ErrRevocationUnknown)
	case now.Sub(lastOK) > f.maxLag():
		return RevocationStatus{}, fmt.Errorf("%w: the revocation feed was last read %s ago (limit %s)",
			ErrRevocationUnknown, now.Sub(lastOK).Round(time.Millisecond), f.maxLag())
	}
	if known {
		switch c.Status {
		case "revoked", "hold":
			reason := c.Reason
			if c.Status == "hold" {
				reason = 6 // certificateHold
			}
			return RevocationStatus{Revoked: true, Reason: reason, RevokedAt: c.RevokedAt}, nil
		case "issued":
			// The exchange's own record, read within MaxLag: newer than any OCSP answer, and the only answer
			// for a certificate issued a moment ago that a responder on another node has not pre-signed yet.
			return RevocationStatus{}, nil
		}
	}
	return f.Checker.Check(ctx, cert, issuer)
}
