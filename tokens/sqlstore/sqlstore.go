// Package sqlstore implements tokens.Store on database/sql, for SQLite (modernc.org/sqlite, driver "sqlite")
// and PostgreSQL (pgx stdlib, driver "pgx"). It owns its tables (prefix tokens_) and creates them with
// CREATE TABLE IF NOT EXISTS; the SQL is kept to what both engines (and PostgreSQL-compatible distributed
// engines) accept: no engine-specific types, INSERT ... ON CONFLICT, times as BIGINT microseconds since the
// Unix epoch (UTC), hashes as hex text.
//
// Audit events are written in the same transaction as the change they record: by default into the table
// tokens_audit_outbox, from which the composition root moves them into the tamper-evident audit log; or, with
// Options.AppendAudit, wherever that function writes within the transaction.
package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mohr-hix/mohr/internal/sqlq"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/tokens"
)

// Options configures a Store.
type Options struct {
	// Dialect is "sqlite" or "postgres"; empty means "sqlite".
	Dialect string
	// AppendAudit, when set, replaces the outbox table: it must write ev using tx.
	AppendAudit func(ctx context.Context, tx *sql.Tx, ev audit.Event) error
	// Now is the clock of the schema migration's records; time.Now when nil.
	Now func() time.Time
	// Unavailable, when set, recognises more errors of the driver as "database unavailable" (ErrUnavailable)
	// than the store does by itself (broken connections and the SQLSTATEs of an unreachable or read-only
	// database), for example SQLite's busy and read-only codes.
	Unavailable func(error) bool
}

// Store is a tokens.Store on a *sql.DB.
type Store struct {
	db       *sql.DB
	postgres bool
	audit    func(ctx context.Context, tx *sql.Tx, ev audit.Event) error
	// unavailable is Options.Unavailable.
	unavailable func(error) bool
	// registration is PhysicianByCouncilWithHistory's query, prepared once: every validation asks it (each
	// ingestion once), and on SQLite parsing and planning the join cost more than running it.
	registration preparedQuery
}

// preparedQuery is one query prepared on first use and kept (database/sql prepares it again on each connection
// that runs it). When preparing fails (the database is away), the query runs unprepared and the next call
// tries again.
type preparedQuery struct {
	st atomic.Pointer[sql.Stmt]
}

func (p *preparedQuery) query(ctx context.Context, db *sql.DB, query string, args ...any) (*sql.Rows, error) {
	st := p.st.Load()
	if st == nil {
		prepared, err := db.PrepareContext(ctx, query)
		if err != nil {
			return db.QueryContext(ctx, query, args...)
		}
		if !p.st.CompareAndSwap(nil, prepared) {
			prepared.Close()
		}
		st = p.st.Load()
	}
	return st.QueryContext(ctx, args...)
}

var (
	_ tokens.Store            = (*Store)(nil)
	_ tokens.PhysicianHistory = (*Store)(nil)
)

var schema = []string{
	`CREATE TABLE IF NOT EXISTS tokens_facilities (
		siam_id        VARCHAR(20) PRIMARY KEY,
		name           TEXT NOT NULL,
		licence_number VARCHAR(40) NOT NULL,
		licence_status VARCHAR(16) NOT NULL,
		licence_from   BIGINT NOT NULL,
		licence_until  BIGINT NOT NULL,
		system_id      VARCHAR(40) NOT NULL,
		system_status  VARCHAR(16) NOT NULL,
		system_from    BIGINT,
		system_until   BIGINT
	)`,
	`CREATE TABLE IF NOT EXISTS tokens_physicians (
		national_code VARCHAR(10) PRIMARY KEY,
		council_no    VARCHAR(10) NOT NULL,
		name          TEXT NOT NULL,
		specialty     TEXT NOT NULL,
		status        VARCHAR(16) NOT NULL,
		valid_from    BIGINT NOT NULL,
		valid_until   BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS tokens_enrolment_codes (
		id         VARCHAR(16) PRIMARY KEY,
		hash       VARCHAR(64) NOT NULL,
		siam_id    VARCHAR(20) NOT NULL,
		created_by TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		used_at    BIGINT
	)`,
	`CREATE TABLE IF NOT EXISTS tokens_tokens (
		serial         VARCHAR(64) PRIMARY KEY,
		siam_id        VARCHAR(20) NOT NULL,
		kind           VARCHAR(16) NOT NULL,
		status         VARCHAR(16) NOT NULL,
		not_before     BIGINT NOT NULL,
		not_after      BIGINT NOT NULL,
		reason         INTEGER NOT NULL,
		created_at     BIGINT NOT NULL,
		updated_at     BIGINT NOT NULL,
		licence_number VARCHAR(40) NOT NULL,
		system_id      VARCHAR(40) NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS tokens_tokens_siam ON tokens_tokens (siam_id, not_before)`,
	`CREATE TABLE IF NOT EXISTS tokens_audit_outbox (
		id      VARCHAR(32) PRIMARY KEY,
		at      BIGINT NOT NULL,
		kind    TEXT NOT NULL,
		actor   TEXT NOT NULL,
		subject TEXT NOT NULL,
		data    TEXT NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS tokens_physicians_council ON tokens_physicians (council_no)`,
	// Every standing change of a physician's council registration with the time it took effect (issue 20):
	// the verifier judges a signature against the standing at its best signature time, not today's.
	`CREATE TABLE IF NOT EXISTS tokens_physician_history (
		national_code VARCHAR(10) NOT NULL,
		seq           BIGINT NOT NULL,
		council_no    VARCHAR(10) NOT NULL,
		status        VARCHAR(16) NOT NULL,
		valid_from    BIGINT NOT NULL,
		valid_until   BIGINT NOT NULL,
		effective_at  BIGINT NOT NULL,
		recorded_at   BIGINT NOT NULL,
		actor         TEXT NOT NULL,
		PRIMARY KEY (national_code, seq)
	)`,
}

// New creates the tables if needed and returns a Store.
func New(ctx context.Context, db *sql.DB, opt Options) (*Store, error) {
	s := &Store{db: db, audit: opt.AppendAudit, unavailable: opt.Unavailable}
	switch opt.Dialect {
	case "", "sqlite":
	case "postgres", "pgx":
		s.postgres = true
	default:
		return nil, fmt.Errorf("tokens/sqlstore: unknown dialect %q", opt.Dialect)
	}
	if s.audit == nil {
		s.audit = s.outbox
	}
	for _, q := range schema {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("tokens/sqlstore: create schema: %w", err)
		}
	}
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	if err := s.seedHistory(ctx, now().UTC()); err != nil {
		return nil, err
	}
	return s, nil
}

// seedHistory is the migration to the physician history: a physician recorded before the history existed gets
// one entry, its current standing, effective from its registration's start (for a non-active status the
// conservative choice: nobody knows since when it holds). It runs at every start, changes nothing once every
// physician has a history (ON CONFLICT for nodes starting together), and records what it did in the audit log
// in the same transaction.
func (s *Store) seedHistory(ctx context.Context, at time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("tokens/sqlstore: begin: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO tokens_physician_history
		(national_code, seq, council_no, status, valid_from, valid_until, effective_at, recorded_at, actor)
		SELECT p.national_code, 1, p.council_no, p.status, p.valid_from, p.valid_until, p.valid_from, ?, 'system:migration'
		FROM tokens_physicians p
		WHERE NOT EXISTS (SELECT 1 FROM tokens_physician_history h WHERE h.national_code = p.national_code)
		ON CONFLICT (national_code, seq) DO NOTHING`), micros(at))
	if err != nil {
		return fmt.Errorf("tokens/sqlstore: seed physician history: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil || n == 0 {
		return err
	}
	data, _ := json.Marshal(map[string]int64{"physicians": n})
	if err := s.audit(ctx, tx, audit.Event{Time: at, Kind: "registry.physicians.history-seeded", Actor: "system:migration", Data: data}); err != nil {
		return fmt.Errorf("tokens/sqlstore: audit: %w", err)
	}
	return tx.Commit()
}

// q rewrites ? placeholders to $n for PostgreSQL.
func (s *Store) q(query string) string { return sqlq.Rebind(s.postgres, query) }

func micros(t time.Time) int64 { return t.UTC().UnixMicro() }

func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: micros(t), Valid: true}
}

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNull(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

func (s *Store) outbox(ctx context.Context, tx *sql.Tx, ev audit.Event) error {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO tokens_audit_outbox (id, at, kind, actor, subject, data) VALUES (?, ?, ?, ?, ?, ?)`),
		hex.EncodeToString(id[:]), micros(ev.Time), ev.Kind, ev.Actor, ev.Subject, string(ev.Data))
	return err
}

// AuditOutbox returns the events in the outbox, oldest first (for the composition root and tests).
func (s *Store) AuditOutbox(ctx context.Context) (_ []audit.Event, err error) {
	defer s.mark(&err)
	rows, err := s.db.QueryContext(ctx, `SELECT at, kind, actor, subject, data FROM tokens_audit_outbox ORDER BY at, id`)
	if err != nil {
		return nil, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var at int64
		var e audit.Event
		var data string
		if err := rows.Scan(&at, &e.Kind, &e.Actor, &e.Subject, &data); err != nil {
			return nil, fmt.Errorf("tokens/sqlstore: %w", err)
		}
		e.Time = fromMicros(at)
		if data != "" {
			e.Data = []byte(data)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// tx runs fn in a transaction with ev appended, committing only if both succeed.
func (s *Store) tx(ctx context.Context, ev audit.Event, fn func(tx *sql.Tx) error) (err error) {
	defer s.mark(&err)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("tokens/sqlstore: begin: %w", err)
	}
	defer tx.Rollback()
	if fn != nil {
		if err := fn(tx); err != nil {
			return err
		}
	}
	if err := s.audit(ctx, tx, ev); err != nil {
		return fmt.Errorf("tokens/sqlstore: audit: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("tokens/sqlstore: commit: %w", err)
	}
	return nil
}

// PutFacilities implements tokens.Store.
func (s *Store) PutFacilities(ctx context.Context, fs []tokens.Facility, ev audit.Event) error {
	return s.tx(ctx, ev, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, s.q(`INSERT INTO tokens_facilities
			(siam_id, name, licence_number, licence_status, licence_from, licence_until, system_id, system_status, system_from, system_until)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (siam_id) DO UPDATE SET name = excluded.name, licence_number = excluded.licence_number,
			licence_status = excluded.licence_status, licence_from = excluded.licence_from, licence_until = excluded.licence_until,
			system_id = excluded.system_id, system_status = excluded.system_status, system_from = excluded.system_from,
			system_until = excluded.system_until`))
		if err != nil {
			return fmt.Errorf("tokens/sqlstore: %w", err)
		}
		defer stmt.Close()
		for _, f := range fs {
			if _, err := stmt.ExecContext(ctx, f.SIAMID, f.Name, f.LicenceNumber, string(f.LicenceStatus), micros(f.LicenceFrom),
				micros(f.LicenceUntil), f.SystemID, string(f.SystemStatus), nullMicros(f.SystemFrom), nullMicros(f.SystemUntil)); err != nil {
				return fmt.Errorf("tokens/sqlstore: facility %s: %w", f.SIAMID, err)
			}
		}
		return nil
	})
}

const facilityCols = `siam_id, name, licence_number, licence_status, licence_from, licence_until, system_id, system_status, system_from, system_until`

func scanFacility(sc interface{ Scan(...any) error }) (tokens.Facility, error) {
	var f tokens.Facility
	var ls, ss string
	var lf, lu int64
	var sf, su sql.NullInt64
	if err := sc.Scan(&f.SIAMID, &f.Name, &f.LicenceNumber, &ls, &lf, &lu, &f.SystemID, &ss, &sf, &su); err != nil {
		return f, err
	}
	f.LicenceStatus, f.SystemStatus = tokens.Status(ls), tokens.Status(ss)
	f.LicenceFrom, f.LicenceUntil, f.SystemFrom, f.SystemUntil = fromMicros(lf), fromMicros(lu), fromNull(sf), fromNull(su)
	return f, nil
}

// Facility implements tokens.Store.
func (s *Store) Facility(ctx context.Context, siamID string) (_ tokens.Facility, err error) {
	defer s.mark(&err)
	f, err := scanFacility(s.db.QueryRowContext(ctx, s.q(`SELECT `+facilityCols+` FROM tokens_facilities WHERE siam_id = ?`), siamID))
	if errors.Is(err, sql.ErrNoRows) {
		return f, fmt.Errorf("tokens/sqlstore: facility %s: %w", siamID, tokens.ErrNotFound)
	}
	if err != nil {
		return f, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	return f, nil
}

// Facilities implements tokens.Store.
func (s *Store) Facilities(ctx context.Context) (_ []tokens.Facility, err error) {
	defer s.mark(&err)
	rows, err := s.db.QueryContext(ctx, `SELECT `+facilityCols+` FROM tokens_facilities ORDER BY siam_id`)
	if err != nil {
		return nil, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	defer rows.Close()
	var out []tokens.Facility
	for rows.Next() {
		f, err := scanFacility(rows)
		if err != nil {
			return nil, fmt.Errorf("tokens/sqlstore: %w", err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// PutPhysicians implements tokens.Store. Each physician whose status or validity differs from what is stored
// (or who is new) gets an entry in its history (tokens.StandingChange), effective at StatusSince when the
// registry gave one, else at ev.Time for a change and at ValidFrom for a first record; every change of an
// existing physician's standing is also an audit event of its own (registry.physician.standing), all in the
// transaction of the import.
func (s *Store) PutPhysicians(ctx context.Context, ps []tokens.Physician, ev audit.Event) error {
	at := ev.Time.UTC()
	if at.IsZero() {
		at = time.Now().UTC()
	}
	return s.tx(ctx, ev, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, s.q(`INSERT INTO tokens_physicians
			(national_code, council_no, name, specialty, status, valid_from, valid_until) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (national_code) DO UPDATE SET council_no = excluded.council_no, name = excluded.name,
			specialty = excluded.specialty, status = excluded.status, valid_from = excluded.valid_from, valid_until = excluded.valid_until`))
		if err != nil {
			return fmt.Errorf("tokens/sqlstore: %w", err)
		}
		defer stmt.Close()
		cur, err := tx.PrepareContext(ctx, s.q(`SELECT h.council_no, h.status, h.valid_from, h.valid_until, h.seq
			FROM tokens_physician_history h WHERE h.national_code = ? ORDER BY h.seq DESC LIMIT 1`))
		if err != nil {
			return fmt.Errorf("tokens/sqlstore: %w", err)
		}
		defer cur.Close()
		hist, err := tx.PrepareContext(ctx, s.q(`INSERT INTO tokens_physician_history
			(national_code, seq, council_no, status, valid_from, valid_until, effective_at, recorded_at, actor)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`))
		if err != nil {
			return fmt.Errorf("tokens/sqlstore: %w", err)
		}
		defer hist.Close()
		for _, p := range ps {
			var cn, st string
			var vf, vu, seq int64
			err := cur.QueryRowContext(ctx, p.NationalCode).Scan(&cn, &st, &vf, &vu, &seq)
			first := errors.Is(err, sql.ErrNoRows)
			if err != nil && !first {
				return fmt.Errorf("tokens/sqlstore: physician history: %w", err)
			}
			changed := first || cn != p.CouncilNo || st != string(p.Status) || vf != micros(p.ValidFrom) || vu != micros(p.ValidUntil)
			if changed {
				eff := p.StatusSince
				switch {
				case !eff.IsZero():
				case first:
					eff = p.ValidFrom
				default:
					eff = at
				}
				if _, err := hist.ExecContext(ctx, p.NationalCode, seq+1, p.CouncilNo, string(p.Status), micros(p.ValidFrom),
					micros(p.ValidUntil), micros(eff), micros(at), ev.Actor); err != nil {
					return fmt.Errorf("tokens/sqlstore: physician history: %w", err)
				}
				if !first {
					data, _ := json.Marshal(map[string]any{"councilNo": p.CouncilNo, "from": st, "status": p.Status,
						"validFrom": p.ValidFrom, "validUntil": p.ValidUntil, "effectiveAt": eff.UTC()})
					if err := s.audit(ctx, tx, audit.Event{Time: at, Kind: "registry.physician.standing", Actor: ev.Actor,
						Subject: p.NationalCode, Data: data}); err != nil {
						return fmt.Errorf("tokens/sqlstore: audit: %w", err)
					}
				}
			}
			if _, err := stmt.ExecContext(ctx, p.NationalCode, p.CouncilNo, p.Name, p.Specialty, string(p.Status),
				micros(p.ValidFrom), micros(p.ValidUntil)); err != nil {
				return fmt.Errorf("tokens/sqlstore: physician: %w", err)
			}
		}
		return nil
	})
}

// PhysicianByCouncilWithHistory returns a registration by council number with its history (the changes under
// that council number, ordered as PhysicianHistory orders them) in one query: the verifier asks for every
// prescription it checks.
func (s *Store) PhysicianByCouncilWithHistory(ctx context.Context, councilNo string) (tokens.Physician, []tokens.StandingChange, error) {
	rows, err := s.registration.query(ctx, s.db, s.q(`SELECT p.national_code, p.council_no, p.name, p.specialty, p.status, p.valid_from, p.valid_until,
		h.seq, h.status, h.valid_from, h.valid_until, h.effective_at, h.recorded_at, h.actor
		FROM tokens_physicians p JOIN tokens_physician_history h ON h.national_code = p.national_code AND h.council_no = p.council_no
		WHERE p.council_no = ? ORDER BY h.effective_at, h.seq`), councilNo)
	if err != nil {
		return tokens.Physician{}, nil, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	defer rows.Close()
	var p tokens.Physician
	var out []tokens.StandingChange
	for rows.Next() {
		var c tokens.StandingChange
		var pst, hst string
		var pvf, pvu, vf, vu, ea, ra int64
		if err := rows.Scan(&p.NationalCode, &p.CouncilNo, &p.Name, &p.Specialty, &pst, &pvf, &pvu,
			&c.Seq, &hst, &vf, &vu, &ea, &ra, &c.Actor); err != nil {
			return tokens.Physician{}, nil, fmt.Errorf("tokens/sqlstore: %w", err)
		}
		p.Status, p.ValidFrom, p.ValidUntil = tokens.Status(pst), fromMicros(pvf), fromMicros(pvu)
		c.CouncilNo, c.Status, c.ValidFrom, c.ValidUntil, c.EffectiveAt, c.RecordedAt = p.CouncilNo, tokens.Status(hst), fromMicros(vf), fromMicros(vu), fromMicros(ea), fromMicros(ra)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return tokens.Physician{}, nil, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	if len(out) == 0 {
		// Unknown, or (not after the migration) known without history: the two-query path tells which.
		p, err := s.PhysicianByCouncil(ctx, councilNo)
		if err != nil {
			return p, nil, err
		}
		return p, nil, fmt.Errorf("tokens/sqlstore: physician history: %w", tokens.ErrNotFound)
	}
	return p, out, nil
}

// PhysicianHistory implements tokens.PhysicianHistory.
func (s *Store) PhysicianHistory(ctx context.Context, nationalCode string) (_ []tokens.StandingChange, err error) {
	defer s.mark(&err)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT seq, council_no, status, valid_from, valid_until, effective_at, recorded_at, actor
		FROM tokens_physician_history WHERE national_code = ? ORDER BY effective_at, seq`), nationalCode)
	if err != nil {
		return nil, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	defer rows.Close()
	var out []tokens.StandingChange
	for rows.Next() {
		var c tokens.StandingChange
		var st string
		var vf, vu, ea, ra int64
		if err := rows.Scan(&c.Seq, &c.CouncilNo, &st, &vf, &vu, &ea, &ra, &c.Actor); err != nil {
			return nil, fmt.Errorf("tokens/sqlstore: %w", err)
		}
		c.Status, c.ValidFrom, c.ValidUntil, c.EffectiveAt, c.RecordedAt = tokens.Status(st), fromMicros(vf), fromMicros(vu), fromMicros(ea), fromMicros(ra)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("tokens/sqlstore: physician history: %w", tokens.ErrNotFound)
	}
	return out, nil
}

// Physician implements tokens.Store.
func (s *Store) Physician(ctx context.Context, nationalCode string) (tokens.Physician, error) {
	return s.physicianWhere(ctx, "national_code", nationalCode)
}

// PhysicianByCouncil returns one registration by medical-council number (the verifier's lookup).
func (s *Store) PhysicianByCouncil(ctx context.Context, councilNo string) (tokens.Physician, error) {
	return s.physicianWhere(ctx, "council_no", councilNo)
}

// physicianWhere looks a physician up by one of two fixed columns (never caller text in the SQL).
func (s *Store) physicianWhere(ctx context.Context, column, value string) (_ tokens.Physician, err error) {
	defer s.mark(&err)
	if column != "national_code" && column != "council_no" {
		return tokens.Physician{}, fmt.Errorf("tokens/sqlstore: bad physician column")
	}
	var p tokens.Physician
	var st string
	var vf, vu int64
	err = s.db.QueryRowContext(ctx, s.q(`SELECT national_code, council_no, name, specialty, status, valid_from, valid_until
		FROM tokens_physicians WHERE `+column+` = ?`), value).Scan(&p.NationalCode, &p.CouncilNo, &p.Name, &p.Specialty, &st, &vf, &vu)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("tokens/sqlstore: physician: %w", tokens.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	p.Status, p.ValidFrom, p.ValidUntil = tokens.Status(st), fromMicros(vf), fromMicros(vu)
	return p, nil
}

// AddEnrolmentCode implements tokens.Store.
func (s *Store) AddEnrolmentCode(ctx context.Context, c tokens.EnrolmentCode, ev audit.Event) error {
	return s.tx(ctx, ev, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO tokens_enrolment_codes (id, hash, siam_id, created_by, created_at, expires_at, used_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
			c.ID, hex.EncodeToString(c.Hash), c.SIAMID, c.CreatedBy, micros(c.CreatedAt), micros(c.ExpiresAt), nullMicros(c.UsedAt))
		if err != nil {
			return fmt.Errorf("tokens/sqlstore: enrolment code: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("tokens/sqlstore: enrolment code id: %w", tokens.ErrConflict)
		}
		return nil
	})
}

// EnrolmentCode implements tokens.Store.
func (s *Store) EnrolmentCode(ctx context.Context, id string) (_ tokens.EnrolmentCode, err error) {
	defer s.mark(&err)
	var c tokens.EnrolmentCode
	var h string
	var ca, ea int64
	var ua sql.NullInt64
	err = s.db.QueryRowContext(ctx, s.q(`SELECT id, hash, siam_id, created_by, created_at, expires_at, used_at
		FROM tokens_enrolment_codes WHERE id = ?`), id).Scan(&c.ID, &h, &c.SIAMID, &c.CreatedBy, &ca, &ea, &ua)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("tokens/sqlstore: enrolment code: %w", tokens.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	if c.Hash, err = hex.DecodeString(h); err != nil {
		return c, fmt.Errorf("tokens/sqlstore: enrolment code hash: %w", err)
	}
	c.CreatedAt, c.ExpiresAt, c.UsedAt = fromMicros(ca), fromMicros(ea), fromNull(ua)
	return c, nil
}

// CompleteEnrolment implements tokens.Store: the conditional UPDATE lets exactly one of two racing
// enrolments mark the code used.
func (s *Store) CompleteEnrolment(ctx context.Context, id string, at time.Time, tok tokens.Token, ev audit.Event) error {
	return s.tx(ctx, ev, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE tokens_enrolment_codes SET used_at = ? WHERE id = ? AND used_at IS NULL`), micros(at), id)
		if err != nil {
			return fmt.Errorf("tokens/sqlstore: redeem code: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var one int
			err := tx.QueryRowContext(ctx, s.q(`SELECT 1 FROM tokens_enrolment_codes WHERE id = ?`), id).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("tokens/sqlstore: enrolment code: %w", tokens.ErrNotFound)
			}
			return tokens.ErrCodeUsed
		}
		return insertToken(ctx, s, tx, tok)
	})
}

func insertToken(ctx context.Context, s *Store, tx *sql.Tx, t tokens.Token) error {
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO tokens_tokens
		(serial, siam_id, kind, status, not_before, not_after, reason, created_at, updated_at, licence_number, system_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (serial) DO NOTHING`),
		t.Serial, t.SIAMID, string(t.Kind), string(t.Status), micros(t.NotBefore), micros(t.NotAfter), t.Reason,
		micros(t.CreatedAt), micros(t.UpdatedAt), t.LicenceNumber, t.SystemID)
	if err != nil {
		return fmt.Errorf("tokens/sqlstore: token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("tokens/sqlstore: token %s: %w", t.Serial, tokens.ErrConflict)
	}
	return nil
}

// AddToken implements tokens.Store.
func (s *Store) AddToken(ctx context.Context, tok tokens.Token, ev audit.Event) error {
	return s.tx(ctx, ev, func(tx *sql.Tx) error { return insertToken(ctx, s, tx, tok) })
}

const tokenCols = `serial, siam_id, kind, status, not_before, not_after, reason, created_at, updated_at, licence_number, system_id`

func scanToken(sc interface{ Scan(...any) error }) (tokens.Token, error) {
	var t tokens.Token
	var kind, st string
	var nb, na, ca, ua int64
	if err := sc.Scan(&t.Serial, &t.SIAMID, &kind, &st, &nb, &na, &t.Reason, &ca, &ua, &t.LicenceNumber, &t.SystemID); err != nil {
		return t, err
	}
	t.Kind, t.Status = tokens.TokenKind(kind), tokens.TokenStatus(st)
	t.NotBefore, t.NotAfter, t.CreatedAt, t.UpdatedAt = fromMicros(nb), fromMicros(na), fromMicros(ca), fromMicros(ua)
	return t, nil
}

// Token implements tokens.Store.
func (s *Store) Token(ctx context.Context, serial string) (_ tokens.Token, err error) {
	defer s.mark(&err)
	t, err := scanToken(s.db.QueryRowContext(ctx, s.q(`SELECT `+tokenCols+` FROM tokens_tokens WHERE serial = ?`), strings.ToLower(serial)))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("tokens/sqlstore: token %s: %w", serial, tokens.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	return t, nil
}

// Tokens implements tokens.Store.
func (s *Store) Tokens(ctx context.Context, siamID string) (_ []tokens.Token, err error) {
	defer s.mark(&err)
	var rows *sql.Rows
	if siamID == "" {
		rows, err = s.db.QueryContext(ctx, `SELECT `+tokenCols+` FROM tokens_tokens ORDER BY siam_id, not_before, serial`)
	} else {
		rows, err = s.db.QueryContext(ctx, s.q(`SELECT `+tokenCols+` FROM tokens_tokens WHERE siam_id = ? ORDER BY siam_id, not_before, serial`), siamID)
	}
	if err != nil {
		return nil, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	defer rows.Close()
	var out []tokens.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("tokens/sqlstore: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// SetTokenStatus implements tokens.Store.
func (s *Store) SetTokenStatus(ctx context.Context, serial string, st tokens.TokenStatus, reason int, at time.Time, ev audit.Event) error {
	return s.tx(ctx, ev, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE tokens_tokens SET status = ?, reason = ?, updated_at = ? WHERE serial = ?`),
			string(st), reason, micros(at), serial)
		if err != nil {
			return fmt.Errorf("tokens/sqlstore: token status: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("tokens/sqlstore: token %s: %w", serial, tokens.ErrNotFound)
		}
		return nil
	})
}

// AppendAudit implements tokens.Store.
func (s *Store) AppendAudit(ctx context.Context, ev audit.Event) error { return s.tx(ctx, ev, nil) }

// DrainAuditOutbox moves the outbox into the tamper-evident audit log exactly once, in batches: in one
// transaction it takes up to a batch of the oldest events (FOR UPDATE SKIP LOCKED on PostgreSQL, so two
// nodes draining at once take different events; SQLite has one writer), appends each with appendAudit inside
// that transaction and deletes them. Either the events are in the log and gone from the outbox, or neither.
// Each event's data carries its outbox id ("outbox_id"). It returns how many events it moved.
func (s *Store) DrainAuditOutbox(ctx context.Context, appendAudit func(context.Context, *sql.Tx, audit.Event) error) (_ int, err error) {
	defer s.mark(&err)
	total := 0
	for {
		n, err := s.drainBatch(ctx, appendAudit)
		total += n
		if err != nil || n < outboxBatch {
			return total, err
		}
	}
}

// outboxBatch is how many outbox events one transaction moves.
const outboxBatch = 100

func (s *Store) drainBatch(ctx context.Context, appendAudit func(context.Context, *sql.Tx, audit.Event) error) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("tokens/sqlstore: begin: %w", err)
	}
	defer tx.Rollback()
	lock := ""
	if s.postgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, at, kind, actor, subject, data FROM tokens_audit_outbox ORDER BY at, id LIMIT `+
		strconv.Itoa(outboxBatch)+lock)
	if err != nil {
		return 0, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	type item struct {
		id string
		ev audit.Event
	}
	var items []item
	for rows.Next() {
		var it item
		var at int64
		var data string
		if err := rows.Scan(&it.id, &at, &it.ev.Kind, &it.ev.Actor, &it.ev.Subject, &data); err != nil {
			rows.Close()
			return 0, fmt.Errorf("tokens/sqlstore: %w", err)
		}
		it.ev.Time = fromMicros(at)
		it.ev.Data = withOutboxID(data, it.id)
		items = append(items, it)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("tokens/sqlstore: %w", err)
	}
	if len(items) == 0 {
		return 0, nil
	}
	for _, it := range items {
		n, err := tx.ExecContext(ctx, s.q(`DELETE FROM tokens_audit_outbox WHERE id = ?`), it.id)
		if err != nil {
			return 0, fmt.Errorf("tokens/sqlstore: %w", err)
		}
		if k, _ := n.RowsAffected(); k != 1 {
			return 0, fmt.Errorf("tokens/sqlstore: outbox event %s was taken by another drainer", it.id)
		}
		if err := appendAudit(ctx, tx, it.ev); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("tokens/sqlstore: commit: %w", err)
	}
	return len(items), nil
}

// withOutboxID adds "outbox_id" to a JSON object (or makes one).
func withOutboxID(data, id string) []byte {
	var m map[string]any
	if data == "" || json.Unmarshal([]byte(data), &m) != nil || m == nil {
		m = map[string]any{}
		if data != "" {
			m["data"] = data
		}
	}
	m["outbox_id"] = id
	b, _ := json.Marshal(m)
	return b
}
