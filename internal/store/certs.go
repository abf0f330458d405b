package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

const certColumns = `serial, profile, subject, subject2, not_before_us, not_after_us, tbs_hash, der, status, shard,
	revoked_at_us, revocation_reason, created_us, updated_us`

func scanCert(r row) (ca.CertRecord, error) {
	var rec ca.CertRecord
	var status string
	var nb, na, ra, cr, up int64
	err := r.Scan(&rec.Serial, &rec.Profile, &rec.Subject, &rec.Subject2, &nb, &na, &rec.TBSHash, &rec.DER, &status,
		&rec.Shard, &ra, &rec.RevocationReason, &cr, &up)
	if err != nil {
		return ca.CertRecord{}, err
	}
	rec.Status = ca.Status(status)
	rec.NotBefore, rec.NotAfter, rec.RevokedAt = fromUS(nb), fromUS(na), fromUS(ra)
	rec.CreatedAt, rec.UpdatedAt = fromUS(cr), fromUS(up)
	if len(rec.DER) == 0 {
		rec.DER = nil
	}
	return rec, nil
}

// AddPending reserves rec.Serial and records the intent to issue. Status, DER, revocation and the timestamps of
// rec are ignored: the record starts pending, CreatedAt and UpdatedAt are the store's clock. Times are kept to
// the microsecond.
func (c *core) AddPending(ctx context.Context, rec ca.CertRecord, ev audit.Event) error {
	if rec.Serial == "" || len(rec.TBSHash) == 0 {
		return errors.New("store: add pending: record has no serial or no TBS hash")
	}
	return c.changeGroupedOp(ctx, "add pending", c.intentOp(ctx, rec, ev))
}

// intentOp is the group-commit change that inserts the intent rec: alone by its fn, or with the batch's other
// intents in one statement (runGroup).
func (c *core) intentOp(ctx context.Context, rec ca.CertRecord, ev audit.Event) *groupOp {
	now := toUS(c.now())
	row := []any{rec.Serial, rec.Profile, rec.Subject, rec.Subject2, toUS(rec.NotBefore), toUS(rec.NotAfter), rec.TBSHash,
		string(ca.StatusPending), rec.Shard, now, now}
	return &groupOp{ev: ev, intent: row, fn: func(q querier) (bool, error) {
		_, err := q.exec(ctx, `INSERT INTO certificates (`+certColumns+`) VALUES `+intentRow, row...)
		if err != nil && c.b.isUniqueViolation(err) {
			return false, fmt.Errorf("serial %s: %w", rec.Serial, ca.ErrDuplicateSerial)
		}
		return err == nil, err
	}}
}

// intentRow is the VALUES row of a new intent: certColumns with no DER, no revocation.
const intentRow = `(?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, 0, 0, ?, ?)`

// lockCert reads and locks the status and revocation reason of serial for the rest of the transaction.
func (c *core) lockCert(ctx context.Context, q querier, serial string) (ca.Status, int, error) {
	var status string
	var reason int
	err := q.queryRow(ctx, `SELECT status, revocation_reason FROM certificates WHERE serial = ?`+c.b.forUpdate(), serial).
		Scan(&status, &reason)
	if errors.Is(err, errNoRows) {
		return "", 0, fmt.Errorf("serial %s: %w", serial, ca.ErrNotFound)
	}
	return ca.Status(status), reason, err
}

// transition moves serial from status from to status to, setting the given extra columns, or fails with
// ca.ErrConflict if it is in another state. One conditional UPDATE both locks and checks the row (a group
// commit of many records on PostgreSQL makes one round trip per certificate, not two); only when it changes
// nothing is the row read, to say why.
func (c *core) transition(ctx context.Context, q querier, serial string, from, to ca.Status, set string, args ...any) error {
	args = append([]any{string(to), toUS(c.now())}, args...)
	args = append(args, serial, string(from))
	n, err := q.exec(ctx, `UPDATE certificates SET status = ?, updated_us = ?`+set+` WHERE serial = ? AND status = ?`, args...)
	if err != nil || n == 1 {
		return err
	}
	status, _, err := c.lockCert(ctx, q, serial)
	if err != nil {
		return err
	}
	if status != from {
		return fmt.Errorf("serial %s is %s, not %s: %w", serial, status, from, ca.ErrConflict)
	}
	return fmt.Errorf("serial %s: updated %d rows", serial, n)
}

// MarkIssued records the signed certificate of a pending serial.
func (c *core) MarkIssued(ctx context.Context, serial string, der []byte, ev audit.Event) error {
	if len(der) == 0 {
		return errors.New("store: mark issued: empty certificate")
	}
	return c.changeGrouped(ctx, "mark issued", ev, func(q querier) (bool, error) {
		err := c.transition(ctx, q, serial, ca.StatusPending, ca.StatusIssued, `, der = ?`, der)
		return err == nil, err
	})
}

// MarkFailed closes a pending serial that will never be issued. It returns ca.ErrConflict unless the record is
// pending.
func (c *core) MarkFailed(ctx context.Context, serial string, ev audit.Event) error {
	return c.changeGrouped(ctx, "mark failed", ev, func(q querier) (bool, error) {
		err := c.transition(ctx, q, serial, ca.StatusPending, ca.StatusFailed, ``)
		return err == nil, err
	})
}

// Certificate returns one record, or an error wrapping ca.ErrNotFound.
func (c *core) Certificate(ctx context.Context, serial string) (ca.CertRecord, error) {
	rec, err := scanCert(c.b.reader().queryRow(ctx, `SELECT `+certColumns+` FROM certificates WHERE serial = ?`, serial))
	if errors.Is(err, errNoRows) {
		return ca.CertRecord{}, fmt.Errorf("store: serial %s: %w", serial, ca.ErrNotFound)
	}
	return rec, opError("certificate", err)
}

// CertificatesBySerial returns the records of serials that exist, by serial, with one query per
// hashQueryChunk serials (the OCSP responder reads a page of the change feed's serials at once).
func (c *core) CertificatesBySerial(ctx context.Context, serials []string) (map[string]ca.CertRecord, error) {
	out := make(map[string]ca.CertRecord, len(serials))
	for chunk := range slices.Chunk(serials, hashQueryChunk) {
		args := make([]any, len(chunk))
		for i, s := range chunk {
			args[i] = s
		}
		rs, err := c.b.reader().query(ctx, `SELECT `+certColumns+` FROM certificates WHERE serial IN (`+placeholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, opError("certificates by serial", err)
		}
		for rs.Next() {
			rec, err := scanCert(rs)
			if err != nil {
				rs.Close()
				return nil, opError("certificates by serial", err)
			}
			out[rec.Serial] = rec
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return nil, opError("certificates by serial", err)
		}
	}
	return out, nil
}

// Certificates lists records ordered by serial (as text: lower-case hex strings compare byte by byte).
func (c *core) Certificates(ctx context.Context, f ca.CertFilter) ([]ca.CertRecord, error) {
	var where []string
	var args []any
	for _, cond := range []struct {
		col, val string
		op       string
	}{
		{"profile", f.Profile, "="}, {"status", string(f.Status), "="}, {"subject2", f.Subject2, "="}, {"serial", f.After, ">"},
	} {
		if cond.val != "" {
			where = append(where, cond.col+" "+cond.op+" ?")
			args = append(args, cond.val)
		}
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	query := `SELECT ` + certColumns + ` FROM certificates`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY serial LIMIT ?`
	args = append(args, limit)
	rs, err := c.b.reader().query(ctx, query, args...)
	if err != nil {
		return nil, opError("certificates", err)
	}
	defer rs.Close()
	var out []ca.CertRecord
	for rs.Next() {
		rec, err := scanCert(rs)
		if err != nil {
			return nil, opError("certificates", err)
		}
		out = append(out, rec)
	}
	return out, opError("certificates", rs.Err())
}

// Revocation reasons of RFC 5280 §5.3.1 that Revoke treats specially.
const (
	reasonCertificateHold = 6
	reasonRemoveFromCRL   = 8
)

// Revoke revokes an issued or held certificate, as ca.Store documents. A zero at means now. A certificate already
// revoked for good with another reason is a conflict: its CRL entry is not rewritten. Reasons outside RFC 5280
// (and removeFromCRL, which Release stands for) are refused.
func (c *core) Revoke(ctx context.Context, serial string, reason int, at time.Time, ev audit.Event) (bool, error) {
	if reason < 0 || reason > 10 || reason == 7 || reason == reasonRemoveFromCRL {
		return false, fmt.Errorf("store: revoke: invalid revocation reason %d", reason)
	}
	if at.IsZero() {
		at = c.now()
	}
	to := ca.StatusRevoked
	if reason == reasonCertificateHold {
		to = ca.StatusHeld
	}
	var changed bool
	err := c.change(ctx, "revoke", ev, func(q querier) (bool, error) {
		changed = false
		status, cur, err := c.lockCert(ctx, q, serial)
		if err != nil {
			return false, err
		}
		switch {
		case status == ca.StatusHeld && reason == reasonCertificateHold,
			status == ca.StatusRevoked && reason == cur:
			return false, nil
		case status == ca.StatusIssued, status == ca.StatusHeld:
		case status == ca.StatusRevoked:
			return false, fmt.Errorf("serial %s is already revoked with reason %d: %w", serial, cur, ca.ErrConflict)
		default:
			return false, fmt.Errorf("serial %s is %s: %w", serial, status, ca.ErrConflict)
		}
		n, err := q.exec(ctx, `UPDATE certificates SET status = ?, revoked_at_us = ?, revocation_reason = ?, updated_us = ?
	WHERE serial = ?`, string(to), toUS(at), reason, toUS(c.now()), serial)
		if err == nil && n != 1 {
			err = fmt.Errorf("serial %s: updated %d rows", serial, n)
		}
		changed = err == nil
		return changed, err
	})
	if err != nil {
		return false, err
	}
	return changed, nil
}

// Release takes a certificate off hold, back to issued, and clears its revocation time and reason.
func (c *core) Release(ctx context.Context, serial string, ev audit.Event) error {
	return c.change(ctx, "release", ev, func(q querier) (bool, error) {
		err := c.transition(ctx, q, serial, ca.StatusHeld, ca.StatusIssued, `, revoked_at_us = 0, revocation_reason = 0`)
		return err == nil, err
	})
}

// RevokedInShard lists revoked and held certificates of shard whose NotAfter is after notAfter, ordered by
// serial.
func (c *core) RevokedInShard(ctx context.Context, shard int, notAfter time.Time) ([]ca.RevokedEntry, error) {
	out, err := c.revokedInShard(ctx, c.b.reader(), shard, notAfter)
	return out, opError("revoked in shard", err)
}

func (c *core) revokedInShard(ctx context.Context, q querier, shard int, notAfter time.Time) ([]ca.RevokedEntry, error) {
	rs, err := q.query(ctx, `SELECT serial, revoked_at_us, revocation_reason FROM certificates
	WHERE shard = ? AND status IN (?, ?) AND not_after_us > ? ORDER BY serial`,
		shard, string(ca.StatusRevoked), string(ca.StatusHeld), toUS(notAfter))
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []ca.RevokedEntry
	for rs.Next() {
		var e ca.RevokedEntry
		var at int64
		if err := rs.Scan(&e.Serial, &at, &e.Reason); err != nil {
			return nil, err
		}
		e.RevokedAt = fromUS(at)
		out = append(out, e)
	}
	return out, rs.Err()
}

// NextCRLNumber returns the next CRL number of shard: 1, 2, 3, ... Concurrent callers get distinct numbers.
func (c *core) NextCRLNumber(ctx context.Context, shard int) (int64, error) {
	var n int64
	err := c.b.inTx(ctx, func(q querier) error {
		return q.queryRow(ctx, `INSERT INTO crl_numbers (shard, number) VALUES (?, 1)
	ON CONFLICT (shard) DO UPDATE SET number = crl_numbers.number + 1 RETURNING number`, shard).Scan(&n)
	})
	return n, opError("next CRL number", err)
}
