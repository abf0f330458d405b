package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// Germany's comfort signature allows at most 250 signatures within 24 hours after one PIN entry; Mohr's
// agent takes the same ceiling (Config may only lower it).
const (
	MaxSessionSignatures = 250
	MaxSessionDuration   = 24 * time.Hour
)

// SessionOptions ask for a session's limits; zero means the configured maximum.
type SessionOptions struct {
	MaxSignatures int
	Duration      time.Duration
}

// SessionInfo describes a session.
type SessionInfo struct {
	ID            string    `json:"id"`
	Comfort       bool      `json:"comfort"`
	Signer        string    `json:"signer"`
	SignerSHA256  string    `json:"signerSha256"`
	Started       time.Time `json:"started"`
	Expires       time.Time `json:"expires"`
	MaxSignatures int       `json:"maxSignatures"`
	Used          int       `json:"used"`
	Remaining     int       `json:"remaining"`
	Ended         bool      `json:"ended,omitempty"`
	EndReason     string    `json:"endReason,omitempty"`
}

// Reasons a session ends (SessionEndedError.Reason, the audit file and the sessions-ended metric).
const (
	EndByPhysician = "ended by physician"
	EndCardRemoved = "card removed"
	EndLimit       = "signature limit reached"
	EndExpired     = "time limit reached"
	EndPIN         = "PIN rejected by the card"
	EndBatchDone   = "batch finished"
	EndCardError   = "card error"
	EndCardStatus  = "card asks for the PIN again" // 6982: comfort counter used up, card reset or swapped
	EndShutdown    = "agent shut down"
)

// session is one PIN entry's worth of signing. signMu serialises card use; mu guards the rest.
type session struct {
	id       string
	comfort  bool
	key      *Key
	signerFP [32]byte
	started  time.Time
	expires  time.Time
	max      int

	signMu sync.Mutex

	mu           sync.Mutex
	used         int
	ended        *SessionEndedError
	closePending bool
	stopWatch    context.CancelFunc
	timer        *time.Timer
}

func newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newSession(key *Key, comfort bool, now time.Time, max int, d time.Duration) *session {
	return &session{id: newSessionID(), comfort: comfort, key: key, signerFP: sha256.Sum256(key.Chain[0].Raw),
		started: now, expires: now.Add(d), max: max}
}

func (s *session) info(now time.Time) SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	inf := SessionInfo{ID: s.id, Comfort: s.comfort, Signer: s.key.Chain[0].Subject.String(), SignerSHA256: hex.EncodeToString(s.signerFP[:]),
		Started: s.started, Expires: s.expires, MaxSignatures: s.max, Used: s.used, Remaining: s.max - s.used}
	if s.ended != nil {
		inf.Ended, inf.EndReason, inf.Remaining = true, s.ended.Reason, 0
	}
	return inf
}

// markEnded records the end; it reports false if the session had already ended.
// The key is closed by whoever holds signMu (closeIfIdle or the signer finishing).
func (s *session) markEnded(reason string, cause error) bool {
	s.mu.Lock()
	if s.ended != nil {
		s.mu.Unlock()
		return false
	}
	s.ended = &SessionEndedError{Reason: reason, Cause: cause}
	stop, t := s.stopWatch, s.timer
	s.closePending = true
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	if t != nil {
		t.Stop()
	}
	return true
}

// closeIfIdle closes the key now unless a signature is running (the signer then closes it).
func (s *session) closeIfIdle() {
	if s.signMu.TryLock() {
		s.closeLocked()
		s.signMu.Unlock()
	}
}

// closeLocked closes the key if the session has ended; signMu must be held.
func (s *session) closeLocked() {
	s.mu.Lock()
	pending := s.closePending
	s.closePending = false
	s.mu.Unlock()
	if pending {
		closeKey(s.key)
	}
}
