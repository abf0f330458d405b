package ca

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

// memStore is a fake Store for unit tests of the pipeline's logic. The real stores (internal/store) run the
// same pipeline in their own tests.
type memStore struct {
	mu     sync.Mutex
	recs   map[string]CertRecord
	events []audit.Event
	crlNo  map[int]int64
	failOn string // method name that fails once
}

func newMemStore() *memStore {
	return &memStore{recs: map[string]CertRecord{}, crlNo: map[int]int64{}}
}

type errString string

func (e errString) Error() string { return string(e) }

func (m *memStore) fail(name string) error {
	if m.failOn == name {
		m.failOn = ""
		return errString("memstore: injected failure in " + name)
	}
	return nil
}

func (m *memStore) AddPending(_ context.Context, rec CertRecord, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail("AddPending"); err != nil {
		return err
	}
	if _, ok := m.recs[rec.Serial]; ok {
		return ErrDuplicateSerial
	}
	m.recs[rec.Serial] = rec
	m.events = append(m.events, ev)
	return nil
}

func (m *memStore) MarkIssued(_ context.Context, serial string, der []byte, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail("MarkIssued"); err != nil {
		return err
	}
	r, ok := m.recs[serial]
	if !ok || r.Status != StatusPending {
		return ErrConflict
	}
	r.Status, r.DER = StatusIssued, der
	m.recs[serial] = r
	m.events = append(m.events, ev)
	return nil
}

func (m *memStore) MarkFailed(_ context.Context, serial string, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[serial]
	if !ok || r.Status != StatusPending {
		return ErrConflict
	}
	r.Status = StatusFailed
	m.recs[serial] = r
	m.events = append(m.events, ev)
	return nil
}

func (m *memStore) Certificate(_ context.Context, serial string) (CertRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[serial]
	if !ok {
		return CertRecord{}, ErrNotFound
	}
	return r, nil
}

func (m *memStore) Certificates(_ context.Context, f CertFilter) ([]CertRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []CertRecord
	for _, r := range m.recs {
		if (f.Profile == "" || f.Profile == r.Profile) && (f.Status == "" || f.Status == r.Status) &&
			(f.Subject2 == "" || f.Subject2 == r.Subject2) && r.Serial > f.After {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Serial < out[j].Serial })
	limit := f.Limit
	if limit == 0 {
		limit = 1000
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (m *memStore) Revoke(_ context.Context, serial string, reason int, at time.Time, ev audit.Event) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[serial]
	if !ok {
		return false, ErrNotFound
	}
	r.Status, r.RevocationReason, r.RevokedAt = StatusRevoked, reason, at
	m.recs[serial] = r
	m.events = append(m.events, ev)
	return true, nil
}

func (m *memStore) Release(context.Context, string, audit.Event) error { return ErrConflict }
func (m *memStore) RevokedInShard(context.Context, int, time.Time) ([]RevokedEntry, error) {
	return nil, nil
}
func (m *memStore) NextCRLNumber(_ context.Context, shard int) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crlNo[shard]++
	return m.crlNo[shard], nil
}
func (m *memStore) AppendAudit(_ context.Context, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, ev)
	return nil
}

func (m *memStore) snapshot() (map[string]CertRecord, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := make(map[string]CertRecord, len(m.recs))
	for k, v := range m.recs {
		c[k] = v
	}
	return c, len(m.events)
}
