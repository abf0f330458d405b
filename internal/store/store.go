// Package store persists Mohr's certificates, CRL numbers, blobs and tamper-evident audit log in SQLite
// (modernc.org/sqlite, the embedded default) or PostgreSQL (pgx). Both implement ca.Store and audit.Source and
// pass the conformance suite in internal/store/storetest.
//
// Every state change and the audit event that records it are written in one transaction. Appends to the audit
// log are serialised on a one-row head (audit_head), locked with SELECT ... FOR UPDATE on PostgreSQL and by
// SQLite's single writer, so entry numbers have no gaps and the hash chain never forks. The issuance path's
// intents and records of concurrent requests share one transaction with their audit events (group commit,
// groupcommit.go); each caller still returns only once its own change is durable. On PostgreSQL those grouped
// changes write their events into the audit queue instead, in the same transaction, and each node's chainer
// moves every node's queued events into the log (so several nodes do not commit one after the other on the
// head's lock; groupcommit.go). SQLite statements are prepared once per connection (stmtCache).
//
// The SQL is kept to what both dialects and PostgreSQL-compatible distributed engines accept: no triggers or
// stored procedures, and one sequence (the audit queue's order, which must increase with commit order for one
// session, as PostgreSQL's do); upserts with INSERT ... ON CONFLICT; times as integer microseconds.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// Store is everything the SQLite and PostgreSQL stores provide.
type Store interface {
	ca.Store
	audit.Source
	// PutBlob stores data under name, replacing what was there, and appends evs in the same transaction.
	PutBlob(ctx context.Context, name string, data []byte, evs ...audit.Event) error
	// GetBlob returns the data stored under name, or an error wrapping ca.ErrNotFound.
	GetBlob(ctx context.Context, name string) ([]byte, error)
	// Checkpoint signs a checkpoint of the current audit tree with cp and stores it; AuditCheckpoints returns it
	// last.
	Checkpoint(ctx context.Context, cp *audit.Checkpointer) error
	// Close releases the database.
	Close() error
}

var (
	_ Store = (*SQLite)(nil)
	_ Store = (*Postgres)(nil)
)

// Option configures a store.
type Option func(*options)

type options struct {
	now func() time.Time
}

// WithClock sets the clock the store reads for CreatedAt, UpdatedAt, checkpoint times and events whose Time is
// zero. The default is time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

func buildOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// defaultLimit is the number of certificates Certificates returns when the filter sets no limit.
const defaultLimit = 1000

// errNoRows is what row.Scan returns for an empty result, in both dialects.
var errNoRows = errors.New("store: no rows")

// toUS and fromUS convert times to and from the stored form: microseconds since the Unix epoch, 0 for the zero
// time. Microseconds cover years far beyond 9999, the largest time X.509 can express.
func toUS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromUS(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

func opError(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s: %w", op, markUnavailable(err))
}
