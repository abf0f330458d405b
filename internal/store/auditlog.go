package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// appendAudit appends ev to the audit log inside the caller's transaction: it locks the head, chains the entry,
// stores its Merkle tree hashes and moves the head.
func (c *core) appendAudit(ctx context.Context, q querier, ev audit.Event) error {
	if c.auditQueue { // what the issuance path queued goes first (groupcommit.go)
		if _, err := q.exec(ctx, `SELECT 1 FROM audit_head WHERE id = 1`+c.b.forUpdate()); err != nil {
			return fmt.Errorf("audit head: %w", err)
		}
		if err := c.drainQueued(ctx, q); err != nil {
			return err
		}
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
	e, err := audit.Next(prev, ev)
	if err != nil {
		return err
	}
	canonical, err := audit.CanonicalJSON(ev)
	if err != nil {
		return err
	}
	hashes, err := audit.StoredHashes(e.Seq, ev, audit.HashReader(ctx, txSource{c, q}))
	if err != nil {
		return err
	}
	if _, err := q.exec(ctx, `INSERT INTO audit_log (seq, event, prev, hash) VALUES (?, ?, ?, ?)`,
		e.Seq, string(canonical), e.Prev[:], e.Hash[:]); err != nil {
		return fmt.Errorf("audit entry %d: %w", e.Seq, err)
	}
	args := make([]any, 0, 2*len(hashes))
	first := tlog.StoredHashIndex(0, e.Seq)
	for i, h := range hashes {
		args = append(args, first+int64(i), h[:])
	}
	values := strings.TrimSuffix(strings.Repeat("(?, ?), ", len(hashes)), ", ")
	if _, err := q.exec(ctx, `INSERT INTO audit_hashes (idx, hash) VALUES `+values, args...); err != nil {
		return fmt.Errorf("audit entry %d: tree hashes: %w", e.Seq, err)
	}
	n, err := q.exec(ctx, `UPDATE audit_head SET size = ?, head = ? WHERE id = 1 AND size = ?`, e.Seq+1, e.Hash[:], size)
	if err == nil && n != 1 {
		err = errors.New("audit head moved")
	}
	if err != nil {
		return fmt.Errorf("audit entry %d: head: %w", e.Seq, err)
	}
	return nil
}

// AppendAudit appends an event that changes nothing else. A zero ev.Time is set to the store's clock.
func (c *core) AppendAudit(ctx context.Context, ev audit.Event) error {
	return c.change(ctx, "append audit", ev, func(querier) (bool, error) { return true, nil })
}

// AuditSize returns the number of entries in the audit log, this store's queued events included
// (readBarrier).
func (c *core) AuditSize(ctx context.Context) (int64, error) {
	if err := c.readBarrier(ctx); err != nil {
		return 0, opError("audit size", err)
	}
	var size int64
	err := c.b.reader().queryRow(ctx, `SELECT size FROM audit_head WHERE id = 1`).Scan(&size)
	return size, opError("audit size", err)
}

// AuditEntries returns at most limit entries with Seq >= start, in order. An entry whose stored event does not
// decode, or whose hashes are not 32 bytes, ends the page; when it comes first it is reported as an
// *audit.BadEntryError.
func (c *core) AuditEntries(ctx context.Context, start int64, limit int) ([]audit.Entry, error) {
	if limit <= 0 {
		limit = defaultLimit
	}
	if err := c.readBarrier(ctx); err != nil {
		return nil, opError("audit entries", err)
	}
	rs, err := c.b.reader().query(ctx, `SELECT seq, event, prev, hash FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT ?`, start, limit)
	if err != nil {
		return nil, opError("audit entries", err)
	}
	defer rs.Close()
	var out []audit.Entry
	for rs.Next() {
		var e audit.Entry
		var event string
		var prev, hash []byte
		if err := rs.Scan(&e.Seq, &event, &prev, &hash); err != nil {
			return nil, opError("audit entries", err)
		}
		var bad *audit.BadEntryError
		if len(prev) != 32 || len(hash) != 32 {
			bad = &audit.BadEntryError{Seq: e.Seq, Reason: "stored hashes are not 32 bytes"}
		} else if e.Event, err = audit.ParseEvent([]byte(event)); err != nil {
			bad = &audit.BadEntryError{Seq: e.Seq, Reason: fmt.Sprintf("stored event does not decode: %v", err)}
		}
		if bad != nil {
			if len(out) > 0 {
				return out, nil // the entries before it first, so Verify reports problems in log order
			}
			return nil, bad
		}
		e.Prev, e.Hash = [32]byte(prev), [32]byte(hash)
		out = append(out, e)
	}
	return out, opError("audit entries", rs.Err())
}

// AuditCheckpoints returns the stored signed checkpoints ordered by tree size.
func (c *core) AuditCheckpoints(ctx context.Context) ([][]byte, error) {
	rs, err := c.b.reader().query(ctx, `SELECT note FROM audit_checkpoints ORDER BY size`)
	if err != nil {
		return nil, opError("audit checkpoints", err)
	}
	defer rs.Close()
	var out [][]byte
	for rs.Next() {
		var n string
		if err := rs.Scan(&n); err != nil {
			return nil, opError("audit checkpoints", err)
		}
		out = append(out, []byte(n))
	}
	return out, opError("audit checkpoints", rs.Err())
}

// AuditHashes returns the stored tree hashes at indexes, in order; a missing one is an error wrapping
// audit.ErrMissingHash.
func (c *core) AuditHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	out, err := c.readHashes(ctx, c.b.reader(), indexes)
	return out, opError("audit hashes", err)
}

// hashQueryChunk bounds the placeholders of one IN query, far below every engine's limit.
const hashQueryChunk = 500

func (c *core) readHashes(ctx context.Context, q querier, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return nil, nil
	}
	found := make(map[int64]tlog.Hash, len(indexes))
	scan := func(query string, args ...any) error {
		rs, err := q.query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var idx int64
			var h []byte
			if err := rs.Scan(&idx, &h); err != nil {
				return err
			}
			if len(h) != tlog.HashSize {
				return fmt.Errorf("stored hash %d is %d bytes: %w", idx, len(h), audit.ErrMissingHash)
			}
			found[idx] = tlog.Hash(h)
		}
		return rs.Err()
	}
	lo, hi := slices.Min(indexes), slices.Max(indexes)
	if hi-lo < 4*int64(len(indexes)) {
		// Dense (Verify reads whole ranges): one range scan.
		if err := scan(`SELECT idx, hash FROM audit_hashes WHERE idx >= ? AND idx <= ?`, lo, hi); err != nil {
			return nil, err
		}
	} else {
		for chunk := range slices.Chunk(indexes, hashQueryChunk) {
			args := make([]any, len(chunk))
			for i, x := range chunk {
				args[i] = x
			}
			if err := scan(`SELECT idx, hash FROM audit_hashes WHERE idx IN (`+placeholders(len(chunk))+`)`, args...); err != nil {
				return nil, err
			}
		}
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := found[x]
		if !ok {
			return nil, fmt.Errorf("index %d: %w", x, audit.ErrMissingHash)
		}
		out[i] = h
	}
	return out, nil
}

// txSource reads tree hashes inside a transaction, for audit.StoredHashes. Only AuditHashes is used.
type txSource struct {
	c *core
	q querier
}

func (s txSource) AuditHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	return s.c.readHashes(ctx, s.q, indexes)
}
func (txSource) AuditSize(context.Context) (int64, error) { return 0, errors.ErrUnsupported }
func (txSource) AuditEntries(context.Context, int64, int) ([]audit.Entry, error) {
	return nil, errors.ErrUnsupported
}
func (txSource) AuditCheckpoints(context.Context) ([][]byte, error) {
	return nil, errors.ErrUnsupported
}

// Checkpoint signs a checkpoint of the current audit tree with cp and stores it. If a checkpoint of the same
// size is already stored, that one is kept. An empty log has no checkpoint.
func (c *core) Checkpoint(ctx context.Context, cp *audit.Checkpointer) error {
	// Hashes below the committed size never change, so reading the size and then the tree needs no transaction.
	size, err := c.AuditSize(ctx)
	if err != nil {
		return err
	}
	if size == 0 {
		return errors.New("store: checkpoint: the audit log is empty")
	}
	root, err := audit.TreeHash(ctx, c, size)
	if err != nil {
		return opError("checkpoint", err)
	}
	msg, err := cp.Sign(tlog.Tree{N: size, Hash: root})
	if err != nil {
		return opError("checkpoint", err)
	}
	return opError("checkpoint", c.b.inTx(ctx, func(q querier) error {
		_, err := q.exec(ctx, `INSERT INTO audit_checkpoints (size, note, created_us) VALUES (?, ?, ?)
	ON CONFLICT (size) DO NOTHING`, size, string(msg), toUS(c.now()))
		return err
	}))
}

// PutBlob stores data under name, replacing what was there, and appends evs in the same transaction.
func (c *core) PutBlob(ctx context.Context, name string, data []byte, evs ...audit.Event) error {
	if name == "" {
		return errors.New("store: put blob: empty name")
	}
	if data == nil {
		data = []byte{}
	}
	for i := range evs {
		if evs[i].Time.IsZero() {
			evs[i].Time = c.now().UTC()
		}
	}
	return opError("put blob", c.b.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `INSERT INTO blobs (name, data, updated_us) VALUES (?, ?, ?)
	ON CONFLICT (name) DO UPDATE SET data = excluded.data, updated_us = excluded.updated_us`,
			name, data, toUS(c.now())); err != nil {
			return err
		}
		for _, ev := range evs {
			if err := c.appendAudit(ctx, q, ev); err != nil {
				return err
			}
		}
		return nil
	}))
}

// GetBlob returns the data stored under name, or an error wrapping ca.ErrNotFound.
func (c *core) GetBlob(ctx context.Context, name string) ([]byte, error) {
	var data []byte
	err := c.b.reader().queryRow(ctx, `SELECT data FROM blobs WHERE name = ?`, name).Scan(&data)
	if errors.Is(err, errNoRows) {
		return nil, fmt.Errorf("store: blob %q: %w", name, ca.ErrNotFound)
	}
	if err != nil {
		return nil, opError("get blob", err)
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}
