package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// This file holds the state several Mohr nodes on one database share: leases for cluster-wide periodic work,
// CRLs, pre-signed OCSP responses and dual-control approvals.

var (
	_ ca.CRLStore  = (*core)(nil)
	_ ca.OCSPStore = (*core)(nil)
)

// ClaimLease takes or renews the lease name for holder until now+ttl. It succeeds when the lease is free,
// expired or already held by holder, and reports whether holder holds it now. A lease only avoids duplicate
// work: it is no fence (a holder paused past its lease may still act), so what it guards must be safe to do
// twice.
func (c *core) ClaimLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return false, errors.New("store: claim lease: name, holder and a positive ttl are required")
	}
	now := c.now()
	var n int64
	err := c.b.inTx(ctx, func(q querier) error {
		var err error
		n, err = q.exec(ctx, `INSERT INTO leases (name, holder, expires_us) VALUES (?, ?, ?)
	ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_us = excluded.expires_us
	WHERE leases.expires_us <= ? OR leases.holder = excluded.holder`, name, holder, toUS(now.Add(ttl)), toUS(now))
		return err
	})
	if err != nil {
		return false, opError("claim lease", err)
	}
	return n == 1, nil
}

// ReleaseLease gives up the lease name if holder holds it.
func (c *core) ReleaseLease(ctx context.Context, name, holder string) error {
	return opError("release lease", c.b.inTx(ctx, func(q querier) error {
		_, err := q.exec(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder)
		return err
	}))
}

// LatestCheckpointTime returns when the newest stored checkpoint was written (zero if there is none).
func (c *core) LatestCheckpointTime(ctx context.Context) (time.Time, error) {
	var us *int64
	err := c.b.reader().queryRow(ctx, `SELECT MAX(created_us) FROM audit_checkpoints`).Scan(&us)
	if err != nil || us == nil {
		return time.Time{}, opError("latest checkpoint", err)
	}
	return fromUS(*us), nil
}

// SignCRL implements ca.CRLStore. The shard's row of crl_numbers is the lock: SELECT ... FOR UPDATE on
// PostgreSQL, the write lock of BEGIN IMMEDIATE on SQLite. The revoked entries are read after it is taken,
// so a CRL with a higher number never lists less than one with a lower number (revocations only add entries;
// releases and expiries remove them in the same order the numbers go).
func (c *core) SignCRL(ctx context.Context, shard int, notAfter time.Time, sign ca.CRLSignFunc) (ca.CRLRecord, error) {
	var out ca.CRLRecord
	err := c.b.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `INSERT INTO crl_numbers (shard, number) VALUES (?, 0) ON CONFLICT (shard) DO NOTHING`, shard); err != nil {
			return err
		}
		var number int64
		if err := q.queryRow(ctx, `SELECT number FROM crl_numbers WHERE shard = ?`+c.b.forUpdate(), shard).Scan(&number); err != nil {
			return err
		}
		var lp *ca.CRLRecord
		latest, err := c.latestCRL(ctx, q, shard)
		switch {
		case err == nil:
			lp = &latest
		case !errors.Is(err, ca.ErrNotFound):
			return err
		}
		entries, err := c.revokedInShard(ctx, q, shard, notAfter)
		if err != nil {
			return err
		}
		rec, ev, err := sign(lp, number+1, entries)
		if err != nil {
			return err
		}
		if rec == nil {
			if lp == nil {
				return fmt.Errorf("shard %d has no CRL to keep", shard)
			}
			out = latest
			return nil
		}
		if rec.Number != number+1 || rec.Shard != shard {
			return fmt.Errorf("shard %d: signed CRL %d/%d, want number %d", shard, rec.Shard, rec.Number, number+1)
		}
		if _, err := q.exec(ctx, `UPDATE crl_numbers SET number = ? WHERE shard = ?`, rec.Number, shard); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `INSERT INTO crls (shard, number, der, this_update_us, next_update_us, entries_hash)
	VALUES (?, ?, ?, ?, ?, ?)`, shard, rec.Number, rec.DER, toUS(rec.ThisUpdate), toUS(rec.NextUpdate), rec.EntriesHash[:]); err != nil {
			return err
		}
		if ev.Time.IsZero() {
			ev.Time = c.now().UTC()
		}
		if err := c.appendAudit(ctx, q, ev); err != nil {
			return err
		}
		out = *rec
		return nil
	})
	return out, opError("sign CRL", err)
}

// LatestCRL implements ca.CRLStore.
func (c *core) LatestCRL(ctx context.Context, shard int) (ca.CRLRecord, error) {
	r, err := c.latestCRL(ctx, c.b.reader(), shard)
	if errors.Is(err, ca.ErrNotFound) {
		return r, fmt.Errorf("store: CRL of shard %d: %w", shard, err)
	}
	return r, opError("latest CRL", err)
}

func (c *core) latestCRL(ctx context.Context, q querier, shard int) (ca.CRLRecord, error) {
	r := ca.CRLRecord{Shard: shard}
	var tu, nu int64
	var eh []byte
	err := q.queryRow(ctx, `SELECT number, der, this_update_us, next_update_us, entries_hash FROM crls
	WHERE shard = ? ORDER BY number DESC LIMIT 1`, shard).Scan(&r.Number, &r.DER, &tu, &nu, &eh)
	if errors.Is(err, errNoRows) {
		return r, ca.ErrNotFound
	}
	if err != nil {
		return r, err
	}
	if len(eh) != 32 {
		return r, errors.New("stored CRL entries hash is not 32 bytes")
	}
	r.ThisUpdate, r.NextUpdate, r.EntriesHash = fromUS(tu), fromUS(nu), [32]byte(eh)
	return r, nil
}

// PutOCSPResponses implements ca.OCSPStore.
func (c *core) PutOCSPResponses(ctx context.Context, recs []ca.OCSPRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return opError("put OCSP responses", c.b.inTx(ctx, func(q querier) error {
		for _, r := range recs {
			d1, d2 := r.DER[0], r.DER[1]
			if d1 == nil {
				d1 = []byte{}
			}
			if d2 == nil {
				d2 = []byte{}
			}
			if _, err := q.exec(ctx, `INSERT INTO ocsp_responses (serial, status, cert_version, this_update_us, next_update_us, der_sha1, der_sha256, responder)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (serial) DO UPDATE SET status = excluded.status, cert_version = excluded.cert_version,
		this_update_us = excluded.this_update_us, next_update_us = excluded.next_update_us,
		der_sha1 = excluded.der_sha1, der_sha256 = excluded.der_sha256, responder = excluded.responder
	WHERE ocsp_responses.cert_version < excluded.cert_version
		OR (ocsp_responses.cert_version = excluded.cert_version AND ocsp_responses.this_update_us <= excluded.this_update_us)`,
				r.Serial, string(r.Status), toUS(r.CertVersion), toUS(r.ThisUpdate), toUS(r.NextUpdate), d1, d2, r.Responder[:]); err != nil {
				return err
			}
		}
		return nil
	}))
}

const ocspColumns = `serial, status, cert_version, this_update_us, next_update_us, der_sha1, der_sha256, responder`

func scanOCSP(r row) (ca.OCSPRecord, error) {
	var o ca.OCSPRecord
	var st string
	var cv, tu, nu int64
	var d1, d2, resp []byte
	if err := r.Scan(&o.Serial, &st, &cv, &tu, &nu, &d1, &d2, &resp); err != nil {
		return o, err
	}
	if len(resp) != 32 {
		return o, errors.New("stored OCSP responder hash is not 32 bytes")
	}
	o.Status, o.CertVersion, o.ThisUpdate, o.NextUpdate, o.Responder = ca.Status(st), fromUS(cv), fromUS(tu), fromUS(nu), [32]byte(resp)
	if len(d1) > 0 {
		o.DER[0] = d1
	}
	if len(d2) > 0 {
		o.DER[1] = d2
	}
	return o, nil
}

// OCSPResponse implements ca.OCSPStore.
func (c *core) OCSPResponse(ctx context.Context, serial string) (ca.OCSPRecord, error) {
	o, err := scanOCSP(c.b.reader().queryRow(ctx, `SELECT `+ocspColumns+` FROM ocsp_responses WHERE serial = ?`, serial))
	if errors.Is(err, errNoRows) {
		return o, fmt.Errorf("store: OCSP responses of %s: %w", serial, ca.ErrNotFound)
	}
	return o, opError("OCSP response", err)
}

// OCSPResponses implements ca.OCSPStore.
func (c *core) OCSPResponses(ctx context.Context, after string, limit int) ([]ca.OCSPRecord, error) {
	if limit <= 0 {
		limit = defaultLimit
	}
	rs, err := c.b.reader().query(ctx, `SELECT `+ocspColumns+` FROM ocsp_responses WHERE serial > ? ORDER BY serial LIMIT ?`, after, limit)
	if err != nil {
		return nil, opError("OCSP responses", err)
	}
	defer rs.Close()
	var out []ca.OCSPRecord
	for rs.Next() {
		o, err := scanOCSP(rs)
		if err != nil {
			return nil, opError("OCSP responses", err)
		}
		out = append(out, o)
	}
	return out, opError("OCSP responses", rs.Err())
}

// DeleteOCSPResponse implements ca.OCSPStore.
func (c *core) DeleteOCSPResponse(ctx context.Context, serial string) error {
	return opError("delete OCSP response", c.b.inTx(ctx, func(q querier) error {
		_, err := q.exec(ctx, `DELETE FROM ocsp_responses WHERE serial = ?`, serial)
		return err
	}))
}

// Approval is a dual-control request as the store keeps it.
type Approval struct {
	ID          string
	Operation   string
	Params      []byte // JSON
	RequestedBy string // the requester's actor string
	Requester   string // the requester's subject, to refuse the same operator approving
	RequesterDN []byte // the requester's certificate subject (DER), empty without a certificate
	CreatedAt   time.Time
	ExpiresAt   time.Time
	Status      string // pending, granted, executed, failed
	ApprovedBy  string
}

// Approval statuses.
const (
	ApprovalPending = "pending"
	ApprovalGranted = "granted"
)

// AddApproval stores a pending approval and appends ev in the same transaction. It refuses (ca.ErrConflict)
// when max approvals are already pending and unexpired.
func (c *core) AddApproval(ctx context.Context, a Approval, max int, ev audit.Event) error {
	if ev.Time.IsZero() {
		ev.Time = c.now().UTC()
	}
	if a.Params == nil {
		a.Params = []byte{}
	}
	if a.RequesterDN == nil {
		a.RequesterDN = []byte{}
	}
	return opError("add approval", c.b.inTx(ctx, func(q querier) error {
		var n int
		if err := q.queryRow(ctx, `SELECT COUNT(*) FROM approvals WHERE status = ? AND expires_us > ?`,
			ApprovalPending, toUS(c.now())).Scan(&n); err != nil {
			return err
		}
		if max > 0 && n >= max {
			return fmt.Errorf("%d approvals pending: %w", n, ca.ErrConflict)
		}
		if _, err := q.exec(ctx, `INSERT INTO approvals (id, operation, params, requested_by, requester, requester_dn, created_us, expires_us, status, approved_by)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '')`, a.ID, a.Operation, string(a.Params), a.RequestedBy, a.Requester, a.RequesterDN,
			toUS(a.CreatedAt), toUS(a.ExpiresAt), ApprovalPending); err != nil {
			return err
		}
		return c.appendAudit(ctx, q, ev)
	}))
}

const approvalColumns = `id, operation, params, requested_by, requester, requester_dn, created_us, expires_us, status, approved_by`

func scanApproval(r row) (Approval, error) {
	var a Approval
	var params string
	var cu, eu int64
	err := r.Scan(&a.ID, &a.Operation, &params, &a.RequestedBy, &a.Requester, &a.RequesterDN, &cu, &eu, &a.Status, &a.ApprovedBy)
	a.Params, a.CreatedAt, a.ExpiresAt = []byte(params), fromUS(cu), fromUS(eu)
	return a, err
}

// PendingApproval returns the approval id if it is pending and unexpired, or an error wrapping ca.ErrNotFound.
func (c *core) PendingApproval(ctx context.Context, id string) (Approval, error) {
	a, err := scanApproval(c.b.reader().queryRow(ctx, `SELECT `+approvalColumns+` FROM approvals
	WHERE id = ? AND status = ? AND expires_us > ?`, id, ApprovalPending, toUS(c.now())))
	if errors.Is(err, errNoRows) {
		return a, fmt.Errorf("store: approval %s: %w", id, ca.ErrNotFound)
	}
	return a, opError("approval", err)
}

// PendingApprovals lists the pending, unexpired approvals, oldest first.
func (c *core) PendingApprovals(ctx context.Context) ([]Approval, error) {
	rs, err := c.b.reader().query(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE status = ? AND expires_us > ?
	ORDER BY created_us, id LIMIT 1000`, ApprovalPending, toUS(c.now()))
	if err != nil {
		return nil, opError("approvals", err)
	}
	defer rs.Close()
	var out []Approval
	for rs.Next() {
		a, err := scanApproval(rs)
		if err != nil {
			return nil, opError("approvals", err)
		}
		out = append(out, a)
	}
	return out, opError("approvals", rs.Err())
}

// GrantApproval moves approval id from pending (and unexpired) to granted by approvedBy and appends ev in the
// same transaction. Only one caller, on any node, succeeds: the others get an error wrapping ca.ErrNotFound.
func (c *core) GrantApproval(ctx context.Context, id, approvedBy string, ev audit.Event) error {
	if ev.Time.IsZero() {
		ev.Time = c.now().UTC()
	}
	return opError("grant approval", c.b.inTx(ctx, func(q querier) error {
		n, err := q.exec(ctx, `UPDATE approvals SET status = ?, approved_by = ? WHERE id = ? AND status = ? AND expires_us > ?`,
			ApprovalGranted, approvedBy, id, ApprovalPending, toUS(c.now()))
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("approval %s is not pending: %w", id, ca.ErrNotFound)
		}
		return c.appendAudit(ctx, q, ev)
	}))
}

// FinishApproval records the outcome (executed or failed) of a granted approval and appends ev.
func (c *core) FinishApproval(ctx context.Context, id, status string, ev audit.Event) error {
	if ev.Time.IsZero() {
		ev.Time = c.now().UTC()
	}
	return opError("finish approval", c.b.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `UPDATE approvals SET status = ? WHERE id = ? AND status = ?`, status, id, ApprovalGranted); err != nil {
			return err
		}
		return c.appendAudit(ctx, q, ev)
	}))
}

// AppendAuditTx appends ev to the audit log inside tx, a transaction on the same database opened through
// database/sql (driver "pgx" for PostgreSQL, "sqlite" for SQLite; on SQLite it must have begun IMMEDIATE):
// how the token store writes its events in the same transaction as its changes, with no outbox to drain. A
// zero ev.Time is set to the store's clock.
func (c *core) AppendAuditTx(ctx context.Context, tx *sql.Tx, ev audit.Event) error {
	if ev.Time.IsZero() {
		ev.Time = c.now().UTC()
	}
	var q querier = sqlQuerier{q: tx}
	if _, ok := c.b.(*pgBackend); ok {
		q = sqlDollarQuerier{sqlQuerier{q: tx}}
	}
	return opError("append audit", c.appendAudit(ctx, q, ev))
}

// sqlDollarQuerier is sqlQuerier with ? placeholders rewritten for PostgreSQL.
type sqlDollarQuerier struct{ s sqlQuerier }

func (d sqlDollarQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	return d.s.exec(ctx, rebindDollar(query), args...)
}
func (d sqlDollarQuerier) queryRow(ctx context.Context, query string, args ...any) row {
	return d.s.queryRow(ctx, rebindDollar(query), args...)
}
func (d sqlDollarQuerier) query(ctx context.Context, query string, args ...any) (rows, error) {
	return d.s.query(ctx, rebindDollar(query), args...)
}
