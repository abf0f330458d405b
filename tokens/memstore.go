package tokens

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

// MemStore is an in-memory Store for tests and demos. It keeps the audit events it was given in Events.
type MemStore struct {
	mu         sync.Mutex
	facilities map[string]Facility
	physicians map[string]Physician
	codes      map[string]EnrolmentCode
	tokens     map[string]Token
	events     []audit.Event
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{facilities: map[string]Facility{}, physicians: map[string]Physician{},
		codes: map[string]EnrolmentCode{}, tokens: map[string]Token{}}
}

// Events returns a copy of the audit events recorded so far.
func (m *MemStore) Events() []audit.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

func (m *MemStore) PutFacilities(ctx context.Context, fs []Facility, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range fs {
		m.facilities[f.SIAMID] = f
	}
	m.events = append(m.events, ev)
	return nil
}

func (m *MemStore) Facility(ctx context.Context, siamID string) (Facility, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.facilities[siamID]
	if !ok {
		return Facility{}, fmt.Errorf("tokens: facility %s: %w", siamID, ErrNotFound)
	}
	return f, nil
}

func (m *MemStore) Facilities(ctx context.Context) ([]Facility, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Facility, 0, len(m.facilities))
	for _, f := range m.facilities {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SIAMID < out[j].SIAMID })
	return out, nil
}

func (m *MemStore) PutPhysicians(ctx context.Context, ps []Physician, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range ps {
		m.physicians[p.NationalCode] = p
	}
	m.events = append(m.events, ev)
	return nil
}

func (m *MemStore) Physician(ctx context.Context, nationalCode string) (Physician, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.physicians[nationalCode]
	if !ok {
		return Physician{}, fmt.Errorf("tokens: physician: %w", ErrNotFound)
	}
	return p, nil
}

func (m *MemStore) AddEnrolmentCode(ctx context.Context, c EnrolmentCode, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.codes[c.ID]; ok {
		return fmt.Errorf("tokens: enrolment code id: %w", ErrConflict)
	}
	c.Hash = slices.Clone(c.Hash)
	m.codes[c.ID] = c
	m.events = append(m.events, ev)
	return nil
}

func (m *MemStore) EnrolmentCode(ctx context.Context, id string) (EnrolmentCode, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.codes[id]
	if !ok {
		return EnrolmentCode{}, fmt.Errorf("tokens: enrolment code: %w", ErrNotFound)
	}
	c.Hash = slices.Clone(c.Hash)
	return c, nil
}

func (m *MemStore) CompleteEnrolment(ctx context.Context, id string, at time.Time, tok Token, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.codes[id]
	if !ok {
		return fmt.Errorf("tokens: enrolment code: %w", ErrNotFound)
	}
	if !c.UsedAt.IsZero() {
		return ErrCodeUsed
	}
	if _, ok := m.tokens[tok.Serial]; ok {
		return fmt.Errorf("tokens: token %s: %w", tok.Serial, ErrConflict)
	}
	c.UsedAt = at
	m.codes[id] = c
	m.tokens[tok.Serial] = tok
	m.events = append(m.events, ev)
	return nil
}

func (m *MemStore) AddToken(ctx context.Context, tok Token, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tokens[tok.Serial]; ok {
		return fmt.Errorf("tokens: token %s: %w", tok.Serial, ErrConflict)
	}
	m.tokens[tok.Serial] = tok
	m.events = append(m.events, ev)
	return nil
}

func (m *MemStore) Token(ctx context.Context, serial string) (Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[strings.ToLower(serial)]
	if !ok {
		return Token{}, fmt.Errorf("tokens: token %s: %w", serial, ErrNotFound)
	}
	return t, nil
}

func (m *MemStore) Tokens(ctx context.Context, siamID string) ([]Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Token
	for _, t := range m.tokens {
		if siamID == "" || t.SIAMID == siamID {
			out = append(out, t)
		}
	}
	sortTokens(out)
	return out, nil
}

func sortTokens(ts []Token) {
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].SIAMID != ts[j].SIAMID {
			return ts[i].SIAMID < ts[j].SIAMID
		}
		if !ts[i].NotBefore.Equal(ts[j].NotBefore) {
			return ts[i].NotBefore.Before(ts[j].NotBefore)
		}
		return ts[i].Serial < ts[j].Serial
	})
}

func (m *MemStore) SetTokenStatus(ctx context.Context, serial string, st TokenStatus, reason int, at time.Time, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[serial]
	if !ok {
		return fmt.Errorf("tokens: token %s: %w", serial, ErrNotFound)
	}
	t.Status, t.Reason, t.UpdatedAt = st, reason, at
	m.tokens[serial] = t
	m.events = append(m.events, ev)
	return nil
}

func (m *MemStore) AppendAudit(ctx context.Context, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, ev)
	return nil
}
