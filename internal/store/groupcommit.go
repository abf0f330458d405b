package store

// Group commit for the issuance path. Every certificate costs two durable transactions (the intent before the CA
// key signs, the record after), each with its audit event; with many concurrent requests those transactions
// queue on the one writer (SQLite) or on the audit head's row lock (PostgreSQL), and each pays its own fsync.
// Here concurrent changes share one transaction: while one batch commits, the next requests queue, and the
// first of them then commits all queued changes and their audit events together. Every caller still returns
// only after its own change is durable, so the crash-safe order intent -> sign -> record is kept.

import (
	"context"
	"errors"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mohr-hix/mohr/internal/audit"
)

// maxGroup bounds the changes of one shared transaction.
const maxGroup = 128

type groupOp struct {
	ev audit.Event
	fn func(q querier) (bool, error)
	// intent, when set, holds the values of one new certificates row (an intent, AddPending): in a shared
	// transaction the intents of the batch are inserted by one multi-row INSERT instead of fn each; fn alone
	// inserts it when the change runs by itself.
	intent []any
	err    error
	done   chan struct{} // closed once err is final
	lead   chan struct{} // closed when this op's caller is to commit the next batch
}

// groupCommit is the queue of changes waiting for a shared transaction. At most one caller leads (runs a batch)
// at a time; when it is done it hands the lead to the oldest waiting caller, so no caller commits for others
// indefinitely.
type groupCommit struct {
	mu      sync.Mutex
	queue   []*groupOp
	leading bool
}

// changeGrouped is change, with the transaction shared with concurrent callers. fn must touch only its own rows:
// when the shared transaction fails, every change of the batch is retried alone, so one failing change (a
// duplicate serial, a conflict) gets its own error and the others commit. A change that was queued is carried
// out even if ctx ends meanwhile (as a single transaction would be once begun).
func (c *core) changeGrouped(ctx context.Context, op string, ev audit.Event, fn func(q querier) (bool, error)) error {
	return c.changeGroupedOp(ctx, op, &groupOp{ev: ev, fn: fn})
}

// changeGroupedOp is changeGrouped for a prepared op (fn, and intent when the change is an intent row).
func (c *core) changeGroupedOp(ctx context.Context, op string, o *groupOp) error {
	if err := ctx.Err(); err != nil {
		return opError(op, err)
	}
	if o.ev.Time.IsZero() {
		o.ev.Time = c.now().UTC()
	}
	o.done, o.lead = make(chan struct{}), make(chan struct{})
	g := &c.gc
	g.mu.Lock()
	g.queue = append(g.queue, o)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if lead {
		c.leadGroup(ctx)
	}
	select {
	case <-o.done:
	case <-o.lead:
		c.leadGroup(ctx)
		<-o.done
	}
	return opError(op, o.err)
}

// leadGroup commits the oldest queued changes (the leader's own among them) and passes the lead on.
func (c *core) leadGroup(ctx context.Context) {
	g := &c.gc
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	batch := g.queue[:n:n]
	g.queue = append([]*groupOp(nil), g.queue[n:]...)
	g.mu.Unlock()

	c.runGroup(context.WithoutCancel(ctx), batch)
	for _, o := range batch {
		close(o.done)
	}
	g.mu.Lock()
	if len(g.queue) > 0 {
		close(g.queue[0].lead)
	} else {
		g.leading = false
	}
	g.mu.Unlock()
}

func (c *core) runGroup(ctx context.Context, batch []*groupOp) {
	single := func(o *groupOp) error {
		return c.b.inTx(ctx, func(q querier) error {
			changed, err := o.fn(q)
			if err != nil || !changed {
				return err
			}
			return c.appendAudit(ctx, q, o.ev)
		})
	}
	if len(batch) == 1 {
		batch[0].err = single(batch[0])
		return
	}
	err := c.b.inTx(ctx, func(q querier) error {
		evs := make([]audit.Event, 0, len(batch))
		var intents []any
		n := 0
		for _, o := range batch {
			if o.intent != nil {
				intents = append(intents, o.intent...)
				n++
				evs = append(evs, o.ev)
				continue
			}
			changed, err := o.fn(q)
			if err != nil {
				return err
			}
			if changed {
				evs = append(evs, o.ev)
			}
		}
		if n > 0 {
			// One statement for the batch's intents; a duplicate serial fails it, and then each change is
			// retried alone below and gets its own error.
			if _, err := q.exec(ctx, `INSERT INTO certificates (`+certColumns+`) VALUES `+
				strings.TrimSuffix(strings.Repeat(intentRow+", ", n), ", "), intents...); err != nil {
				return err
			}
		}
		return c.appendAudits(ctx, q, evs)
	})
	if err == nil {
		return
	}
	// One change failed (or the transaction did): each alone, so each gets its own outcome.
	for _, o := range batch {
		o.err = single(o)
	}
}

// appendAudits appends evs in order inside the caller's transaction: the head is read and locked once, the
// entries are chained and their Merkle tree hashes computed in memory (reading earlier hashes from the database
// and the batch's own from memory), and everything is written with one statement per table.
func (c *core) appendAudits(ctx context.Context, q querier, evs []audit.Event) error {
	switch len(evs) {
	case 0:
		return nil
	case 1:
		return c.appendAudit(ctx, q, evs[0])
	}
	var size int64
	var head []byte
	if err := q.queryRow(ctx, `SELECT size, head FROM audit_head WHERE id = 1`+c.b.forUpdate()).Scan(&size, &head); err != nil {
		return errors.New("audit head: " + err.Error())
	}
	var prev *audit.Entry
	if size > 0 {
		if len(head) != 32 {
			return errors.New("audit head is corrupt")
		}
		prev = &audit.Entry{Seq: size - 1, Hash: [32]byte(head)}
	}
	r := &overlayHashes{ctx: ctx, c: c, q: q, mem: map[int64]tlog.Hash{}}
	logArgs := make([]any, 0, 4*len(evs))
	var hashArgs []any
	for _, ev := range evs {
		e, err := audit.Next(prev, ev)
		if err != nil {
			return err
		}
		canonical, err := audit.CanonicalJSON(ev)
		if err != nil {
			return err
		}
		hashes, err := audit.StoredHashes(e.Seq, ev, r)
		if err != nil {
			return err
		}
		first := tlog.StoredHashIndex(0, e.Seq)
		for i, h := range hashes {
			r.mem[first+int64(i)] = h
			hashArgs = append(hashArgs, first+int64(i), h[:])
		}
		logArgs = append(logArgs, e.Seq, string(canonical), e.Prev[:], e.Hash[:])
		prev = &audit.Entry{Seq: e.Seq, Hash: e.Hash}
	}
	if _, err := q.exec(ctx, `INSERT INTO audit_log (seq, event, prev, hash) VALUES `+
		strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?), ", len(evs)), ", "), logArgs...); err != nil {
		return errors.New("audit entries: " + err.Error())
	}
	if _, err := q.exec(ctx, `INSERT INTO audit_hashes (idx, hash) VALUES `+
		strings.TrimSuffix(strings.Repeat("(?, ?), ", len(hashArgs)/2), ", "), hashArgs...); err != nil {
		return errors.New("audit tree hashes: " + err.Error())
	}
	n, err := q.exec(ctx, `UPDATE audit_head SET size = ?, head = ? WHERE id = 1 AND size = ?`, prev.Seq+1, prev.Hash[:], size)
	if err == nil && n != 1 {
		err = errors.New("audit head moved")
	}
	return err
}

// overlayHashes reads tree hashes from mem (written earlier in the batch, not yet in the database), else from
// the database inside the transaction.
type overlayHashes struct {
	ctx context.Context
	c   *core
	q   querier
	mem map[int64]tlog.Hash
}

func (o *overlayHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var missing []int64
	for _, x := range indexes {
		if _, ok := o.mem[x]; !ok {
			missing = append(missing, x)
		}
	}
	var got []tlog.Hash
	if len(missing) > 0 {
		var err error
		if got, err = o.c.readHashes(o.ctx, o.q, missing); err != nil {
			return nil, err
		}
	}
	k := 0
	for i, x := range indexes {
		if h, ok := o.mem[x]; ok {
			out[i] = h
		} else {
			out[i] = got[k]
			k++
		}
	}
	return out, nil
}
