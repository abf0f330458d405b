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
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mohr-hix/mohr/internal/audit"
)

// maxGroup bounds the changes of one shared transaction.
const maxGroup = 128

// chainPage bounds the queued events one chaining transaction moves into the log.
const chainPage = 512

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

	ctx = context.WithoutCancel(ctx)
	if !c.auditQueue {
		c.runGroup(ctx, batch)
	} else if last := c.runQueued(ctx, batch); last > 0 {
		c.ch.noteQueued(last)
		c.kickChain() // the events are durable in the queue; the chainer moves them into the log
	}
	c.passLead()
	for _, o := range batch {
		close(o.done)
	}
}

// passLead hands the lead to the oldest waiting caller, or gives it up.
func (c *core) passLead() {
	g := &c.gc
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
		evs, err := applyOps(ctx, q, batch)
		if err != nil {
			return err
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

// applyOps applies a batch's changes in q and returns the audit events of those that changed something. With
// more than one change, the intents go in one INSERT; a duplicate serial fails it, and the caller then retries
// each change alone so each gets its own error.
func applyOps(ctx context.Context, q querier, ops []*groupOp) ([]audit.Event, error) {
	evs := make([]audit.Event, 0, len(ops))
	var intents []any
	n := 0
	for _, o := range ops {
		if o.intent != nil && len(ops) > 1 {
			intents = append(intents, o.intent...)
			n++
			evs = append(evs, o.ev)
			continue
		}
		changed, err := o.fn(q)
		if err != nil {
			return nil, err
		}
		if changed {
			evs = append(evs, o.ev)
		}
	}
	if n > 0 {
		if _, err := q.exec(ctx, `INSERT INTO certificates (`+certColumns+`) VALUES `+
			strings.TrimSuffix(strings.Repeat(intentRow+", ", n), ", "), intents...); err != nil {
			return nil, err
		}
	}
	return evs, nil
}

// The audit queue (PostgreSQL). Every audit append locks the one audit_head row, and holds it until its commit
// returns, that is through the WAL flush and the synchronous standby's acknowledgement. With the change and its
// event chained in one transaction, the nodes of a cluster commit one after the other, each sharing its commit
// only among its own requests: measured with three nodes behind HAProxy, 1.6 audit entries per transaction
// against 4.6 for one node alone, and half the issuance rate (docs/cluster.md, "Issuance through HAProxy").
// So on PostgreSQL the grouped changes (intents, issued certificates, prescriptions) commit with their events
// into audit_queue, which takes no shared lock: the nodes' commits overlap, and PostgreSQL flushes and
// replicates concurrent commits together. Each node's chainer (chainLoop) then moves every queued event, of
// every node, into the chained log, one chaining transaction at a time for the whole cluster (the head's lock).
//
// Durability and order: a change and its event commit together, durably (synchronous_commit with the
// synchronous standby), before the caller is answered; the event is in the chained log a chain later
// (milliseconds). Every other audit append (a revocation, a checkpoint's neighbours, a CLI command) first moves
// the queued events into the chain under the head's lock, so the log never records a later change of a serial
// before an earlier one; a chain moves events in queue order, and a serial's events are queued one after the
// other by one caller (intent, then record), each after the previous one's commit. Events a stopped process
// left queued are chained by any node's next chain, any append, and every store opened (a node starting,
// `mohr audit verify`). Fail closed: while the oldest queued event has waited longer than chainStale (the log
// is broken, or no chain succeeds), grouped changes are refused (ErrUnavailable, 503), and the appends that
// must chain the queue first fail. Putting an event in the queue by hand needs the same database access as
// appending to audit_log by hand, whose chain hash anyone can compute: the queue gives an intruder nothing new
// (checkpoint signatures protect what they cover).

// chainStale is how long the oldest queued event may wait for its chain before grouped changes are refused.
const chainStale = 15 * time.Second

// errChainBehind: the audit queue is not being chained (see chainStale).
var errChainBehind = errors.New("audit log: queued events are not being chained")

// runQueued commits the batch's changes with their events in the queue: one transaction for the batch, or, if
// it fails, one per change so each gets its own outcome. It returns the highest queue id it wrote (0: none).
func (c *core) runQueued(ctx context.Context, batch []*groupOp) int64 {
	run := func(ops []*groupOp) (int64, error) {
		var last int64
		err := c.b.inTx(ctx, func(q querier) error {
			evs, err := applyOps(ctx, q, ops)
			if err != nil {
				return err
			}
			var stale bool
			if err := q.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM (SELECT queued_at FROM audit_queue ORDER BY id LIMIT 1) o
	WHERE o.queued_at < clock_timestamp() - make_interval(secs => ?))`, c.chainStale().Seconds()).Scan(&stale); err != nil {
				return err
			}
			if stale {
				return &unavailableError{errChainBehind}
			}
			last, err = c.enqueueAudits(ctx, q, evs)
			return err
		})
		return last, err
	}
	last, err := run(batch)
	if err == nil || len(batch) == 1 {
		for _, o := range batch {
			o.err = err
		}
		return last
	}
	last = 0
	for _, o := range batch {
		var l int64
		l, o.err = run([]*groupOp{o})
		last = max(last, l)
	}
	return last
}

// enqueueAudits writes evs into audit_queue, in order, inside the caller's transaction, and returns the
// highest id it wrote (0 when evs is empty).
func (c *core) enqueueAudits(ctx context.Context, q querier, evs []audit.Event) (int64, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	args := make([]any, len(evs))
	for i, ev := range evs {
		canonical, err := audit.CanonicalJSON(ev)
		if err != nil {
			return 0, err
		}
		args[i] = string(canonical)
	}
	// One statement; ids follow the VALUES order (a sequence, taken row by row).
	var last int64
	err := q.queryRow(ctx, `WITH ins AS (INSERT INTO audit_queue (event) VALUES `+
		strings.TrimSuffix(strings.Repeat("(?), ", len(evs)), ", ")+` RETURNING id) SELECT MAX(id) FROM ins`, args...).Scan(&last)
	if err != nil {
		return 0, fmt.Errorf("audit queue: %w", err)
	}
	return last, nil
}

// chainer runs a node's chainLoop, started by the first grouped change and stopped by Close.
type chainer struct {
	mu               sync.Mutex
	kick, stop, done chan struct{}
	closed           bool
	// queued is the highest queue id this store wrote, chained the highest up to which everything it wrote
	// is known to be in the log (readBarrier).
	queued, chained atomic.Int64
}

func (ch *chainer) noteQueued(id int64) {
	for {
		cur := ch.queued.Load()
		if id <= cur || ch.queued.CompareAndSwap(cur, id) {
			return
		}
	}
}

// readBarrier makes this store's reads of the log see every event it queued before the read (read your own
// writes: a caller that changed something and then reads the log finds its entry), chaining them now if the
// chainer has not yet.
func (c *core) readBarrier(ctx context.Context) error {
	if !c.auditQueue {
		return nil
	}
	ch := &c.ch
	want := ch.queued.Load()
	if want <= ch.chained.Load() {
		return nil
	}
	var waiting bool
	if err := c.b.reader().queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit_queue WHERE id <= ?)`, want).Scan(&waiting); err != nil {
		return err
	}
	if waiting {
		if err := c.chainAll(ctx, true); err != nil {
			return err
		}
	}
	for {
		cur := ch.chained.Load()
		if want <= cur || ch.chained.CompareAndSwap(cur, want) {
			return nil
		}
	}
}

// kickChain asks this node's chainer to chain what is queued (starting it the first time).
func (c *core) kickChain() {
	ch := &c.ch
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return
	}
	if ch.kick == nil {
		ch.kick, ch.stop, ch.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go c.chainLoop(ch.kick, ch.stop, ch.done)
	}
	kick := ch.kick
	ch.mu.Unlock()
	select {
	case kick <- struct{}{}:
	default: // a chain is already due; it takes everything queued by then
	}
}

// stopChain stops the chainer and waits for it.
func (c *core) stopChain() {
	ch := &c.ch
	ch.mu.Lock()
	ch.closed = true
	stop, done := ch.stop, ch.done
	ch.stop = nil
	ch.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// chainLoop chains the queue whenever kicked, and retries every chainRetry while a chain fails (the database
// is failing over): the events wait in the queue, durable, meanwhile.
func (c *core) chainLoop(kick, stop, done chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-done:
		}
	}()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-stop:
			return
		case <-kick:
		case <-retry.C:
		}
		t0 := time.Now()
		err := c.chainAll(ctx, false)
		switch {
		case errors.Is(err, errHeadBusy):
			// Another chain or append holds the head: it may have read the queue before this node's last
			// commit, so look again in a moment rather than wait on the lock.
			retry.Reset(chainBusyRetry)
		case err != nil && ctx.Err() == nil:
			retry.Reset(chainRetry)
		default:
			// At most one chain per chainEvery per node: requests do not wait for it, so a longer gap only
			// makes the next chain carry more events (fewer durable commits per certificate).
			select {
			case <-stop:
				return
			case <-time.After(chainEvery - time.Since(t0)):
			}
		}
	}
}

// chainRetry is the chainer's pause after a failed chain, chainBusyRetry after finding the head locked.
const (
	chainRetry     = 250 * time.Millisecond
	chainBusyRetry = 20 * time.Millisecond
	chainEvery     = 20 * time.Millisecond
)

// errHeadBusy: another transaction holds the audit head's lock (chainAll without waiting).
var errHeadBusy = errors.New("audit head is locked")

// chainAll moves every queued event into the log, chainPage at a time. With wait false it does not queue for
// the head's lock: while another transaction holds it, it returns errHeadBusy at once, so a node's chainer
// never parks a pooled connection on the lock while another node chains (measured: with three nodes two of
// them did, most of the time, and each node has only max(4, CPUs) connections by default).
func (c *core) chainAll(ctx context.Context, wait bool) error {
	lock := `SELECT 1 FROM audit_head WHERE id = 1` + c.b.forUpdate()
	if !wait {
		lock += " SKIP LOCKED"
	}
	for {
		var n int
		err := c.b.inTx(ctx, func(q querier) error {
			// The head's lock first: the queue is read after it, so this sees what the previous chain left.
			locked, err := q.exec(ctx, lock)
			if err != nil {
				return fmt.Errorf("audit head: %w", err)
			}
			if locked != 1 {
				return errHeadBusy
			}
			if n, err = c.chainLocked(ctx, q); err == nil && n == 0 {
				return errNothingQueued // another chain took them: nothing to commit
			}
			return err
		})
		if errors.Is(err, errNothingQueued) {
			return nil
		}
		if errors.Is(err, errHeadBusy) {
			return err
		}
		if err != nil {
			return opError("chain audit queue", err)
		}
		if n < chainPage {
			return nil
		}
	}
}

// errNothingQueued rolls back a chaining transaction that found the queue empty.
var errNothingQueued = errors.New("audit queue is empty")

// chainLocked moves up to chainPage queued events, oldest first, into the chained log, inside the caller's
// transaction, which holds the audit head's lock. It returns how many it moved.
func (c *core) chainLocked(ctx context.Context, q querier) (int, error) {
	rs, err := q.query(ctx, `SELECT id, event FROM audit_queue ORDER BY id LIMIT ?`, chainPage)
	if err != nil {
		return 0, fmt.Errorf("audit queue: %w", err)
	}
	var ids []int64
	var evs []audit.Event
	for rs.Next() {
		var id int64
		var event string
		if err := rs.Scan(&id, &event); err != nil {
			rs.Close()
			return 0, fmt.Errorf("audit queue: %w", err)
		}
		ev, err := audit.ParseEvent([]byte(event))
		if err != nil {
			rs.Close()
			return 0, fmt.Errorf("audit queue: entry %d does not decode: %w", id, err)
		}
		ids, evs = append(ids, id), append(evs, ev)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return 0, fmt.Errorf("audit queue: %w", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	if err := c.appendAuditsLocked(ctx, q, evs); err != nil {
		return 0, err
	}
	// Exactly the ids chained (not a range: an event committed since the SELECT may have an id among them).
	// The array goes as text, so the token store's database/sql transactions (AppendAuditTx) pass it too.
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = strconv.FormatInt(id, 10)
	}
	n, err := q.exec(ctx, `DELETE FROM audit_queue WHERE id = ANY(CAST(? AS BIGINT[]))`, "{"+strings.Join(list, ",")+"}")
	if err == nil && n != int64(len(ids)) {
		err = errors.New("queued entries moved twice") // the head's lock makes one chain at a time: never
	}
	if err != nil {
		return 0, fmt.Errorf("audit queue: %w", err)
	}
	return len(ids), nil
}

// drainQueued moves every queued event into the chain before an append of the caller's transaction (which holds
// the head's lock), so that the log's order follows the order of the commits.
func (c *core) drainQueued(ctx context.Context, q querier) error {
	if !c.auditQueue {
		return nil
	}
	for {
		n, err := c.chainLocked(ctx, q)
		if err != nil || n < chainPage {
			return err
		}
	}
}

// ChainAuditQueue moves the events left in the audit queue into the log (opening a PostgreSQL store does it, so
// a process that stopped between a commit and its chain leaves nothing behind for long). A no-op on SQLite.
func (c *core) ChainAuditQueue(ctx context.Context) error {
	if !c.auditQueue {
		return nil
	}
	return c.chainAll(ctx, true)
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
	if c.auditQueue {
		if _, err := q.exec(ctx, `SELECT 1 FROM audit_head WHERE id = 1`+c.b.forUpdate()); err != nil {
			return fmt.Errorf("audit head: %w", err)
		}
		if err := c.drainQueued(ctx, q); err != nil {
			return err
		}
	}
	return c.appendAuditsLocked(ctx, q, evs)
}

// appendAuditsLocked is appendAudits without draining the queue first.
func (c *core) appendAuditsLocked(ctx context.Context, q querier, evs []audit.Event) error {
	if len(evs) == 0 {
		return nil
	}
	var size int64
	var head []byte
	if err := q.queryRow(ctx, `SELECT size, head FROM audit_head WHERE id = 1`+c.b.forUpdate()).Scan(&size, &head); err != nil {
		return fmt.Errorf("audit head: %w", err)
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
		return fmt.Errorf("audit entries: %w", err)
	}
	if _, err := q.exec(ctx, `INSERT INTO audit_hashes (idx, hash) VALUES `+
		strings.TrimSuffix(strings.Repeat("(?, ?), ", len(hashArgs)/2), ", "), hashArgs...); err != nil {
		return fmt.Errorf("audit tree hashes: %w", err)
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
