package store

import (
	"context"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

// core implements the store once, over a backend.
type core struct {
	b   backend
	now func() time.Time
	gc  groupCommit // the issuance path's shared transactions (groupcommit.go)
	// auditQueue: grouped changes queue their events and one chain at a time moves them into the log
	// (PostgreSQL, where several nodes share the log; groupcommit.go).
	auditQueue bool
	ch         chainer       // moves the queue into the log (auditQueue)
	staleAfter time.Duration // chainStale, unless a test sets it
}

// change runs fn in a transaction and, if fn reports a change, appends ev in the same transaction. Errors are
// prefixed with op.
func (c *core) change(ctx context.Context, op string, ev audit.Event, fn func(q querier) (changed bool, err error)) error {
	if ev.Time.IsZero() {
		ev.Time = c.now().UTC()
	}
	return opError(op, c.b.inTx(ctx, func(q querier) error {
		changed, err := fn(q)
		if err != nil || !changed {
			return err
		}
		return c.appendAudit(ctx, q, ev)
	}))
}

// chainStale returns how long the oldest queued audit event may wait (groupcommit.go).
func (c *core) chainStale() time.Duration {
	if c.staleAfter > 0 {
		return c.staleAfter
	}
	return chainStale
}

// Close stops the audit chainer, chains what is still queued (a clean stop leaves nothing behind) and releases
// the database.
func (c *core) Close() error {
	if c.auditQueue {
		c.stopChain()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.chainAll(ctx, true) // what fails stays queued for the next chain of any node
		cancel()
	}
	return c.b.close()
}
