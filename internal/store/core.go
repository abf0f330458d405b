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

// Close releases the database.
func (c *core) Close() error { return c.b.close() }
