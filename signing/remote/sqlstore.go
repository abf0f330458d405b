package remote

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/mohr-hix/mohr/internal/sqlq"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

// SQLStore is a Store on database/sql, for SQLite (modernc.org/sqlite, driver "sqlite") and PostgreSQL (pgx
// stdlib, driver "pgx"). It owns its tables (prefix remote_) and creates them with CREATE TABLE IF NOT EXISTS;
// the SQL is what both engines and PostgreSQL-compatible distributed engines accept (as tokens/sqlstore).
// Audit events go, in the same transaction as the change, into remote_audit_outbox, from which the
// composition root moves them into the tamper-evident audit log (DrainAuditOutbox), or wherever
// SQLOptions.AppendAudit writes them.
type SQLStore struct {
	db       *sql.DB
	postgres bool
	audit    func(ctx context.Context, tx *sql.Tx, ev audit.Event) error
}

var _ Store = (*SQLStore)(nil)

// SQLOptions configures an SQLStore.
type SQLOptions struct {
	// Dialect is "sqlite" or "postgres"; empty means "sqlite".
	Dialect string
	// AppendAudit, when set, replaces the outbox table: it must write ev using tx.
	AppendAudit func(ctx context.Context, tx *sql.Tx, ev audit.Event) error
}

var remoteSchema = []string{
	`CREATE TABLE IF NOT EXISTS remote_credentials (
		id             VARCHAR(64) PRIMARY KEY,
		council_no     VARCHAR(16) NOT NULL,
		national_code  VARCHAR(10) NOT NULL,
		name           TEXT NOT NULL,
		user_handle    VARCHAR(64) NOT NULL,
		key_uri        TEXT NOT NULL,
		key_label      TEXT NOT NULL,
		chain          TEXT NOT NULL,
		status         VARCHAR(16) NOT NULL,
		reason         TEXT NOT NULL,
		key_destroyed  INTEGER NOT NULL,
		created_at     BIGINT NOT NULL,
		updated_at     BIGINT NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS remote_credentials_council ON remote_credentials (council_no)`,
	`CREATE TABLE IF NOT EXISTS remote_passkeys (
		credential_id  VARCHAR(64) NOT NULL,
		id             VARCHAR(512) NOT NULL,
		data           TEXT NOT NULL,
		created_at     BIGINT NOT NULL,
		PRIMARY KEY (credential_id, id)
	)`,
	`CREATE TABLE IF NOT EXISTS remote_challenges (
		id             VARCHAR(64) PRIMARY KEY,
		kind           VARCHAR(16) NOT NULL,
		credential_id  VARCHAR(64) NOT NULL,
		hashes         TEXT NOT NULL,
		challenge      VARCHAR(128) NOT NULL,
		expires_at     BIGINT NOT NULL,
		used_at        BIGINT
	)`,
	`CREATE TABLE IF NOT EXISTS remote_sads (
		sad_hash       VARCHAR(64) PRIMARY KEY,
		credential_id  VARCHAR(64) NOT NULL,
		hashes         TEXT NOT NULL,
		expires_at     BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS remote_sad_hashes (
		sad_hash       VARCHAR(64) NOT NULL,
		hash           VARCHAR(128) NOT NULL,
		used_at        BIGINT,
		PRIMARY KEY (sad_hash, hash)
	)`,
	`CREATE TABLE IF NOT EXISTS remote_parked_assertions (
		request_id     VARCHAR(64) PRIMARY KEY,
		assertion      TEXT NOT NULL,
		parked_at      BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS remote_cards (
		credential_id  VARCHAR(64) NOT NULL,
		fingerprint    VARCHAR(64) NOT NULL,
		certificate    TEXT NOT NULL,
		serial         VARCHAR(128) NOT NULL,
		issuer         TEXT NOT NULL,
		national_code  VARCHAR(10) NOT NULL,
		not_after      BIGINT NOT NULL,
		created_at     BIGINT NOT NULL,
		PRIMARY KEY (credential_id, fingerprint)
	)`,
	`CREATE TABLE IF NOT EXISTS remote_card_challenges (
		id             VARCHAR(64) PRIMARY KEY,
		purpose        VARCHAR(16) NOT NULL,
		credential_id  VARCHAR(64) NOT NULL,
		actor          TEXT NOT NULL,
		challenge      VARCHAR(128) NOT NULL,
		expires_at     BIGINT NOT NULL,
		used_at        BIGINT
	)`,
	`CREATE TABLE IF NOT EXISTS remote_audit_outbox (
		id      VARCHAR(32) PRIMARY KEY,
		at      BIGINT NOT NULL,
		kind    TEXT NOT NULL,
		actor   TEXT NOT NULL,
		subject TEXT NOT NULL,
		data    TEXT NOT NULL
	)`,
}

// NewSQLStore creates the tables if needed and returns a store on db.
func NewSQLStore(ctx context.Context, db *sql.DB, opt SQLOptions) (*SQLStore, error) {
	s := &SQLStore{db: db, audit: opt.AppendAudit}
	switch opt.Dialect {
	case "", "sqlite":
	case "postgres", "pgx":
		s.postgres = true
	default:
		return nil, fmt.Errorf("remote: unknown dialect %q", opt.Dialect)
	}
	if s.audit == nil {
		s.audit = s.outbox
	}
	for _, q := range remoteSchema {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("remote: create schema: %w", err)
		}
	}
	return s, nil
}

// q rewrites ? placeholders to $n for PostgreSQL.
func (s *SQLStore) q(query string) string { return sqlq.Rebind(s.postgres, query) }

func us(t time.Time) int64 { return t.UTC().UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func hexList(hs [][]byte) string {
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = hex.EncodeToString(h)
	}
	return strings.Join(parts, ",")
}

func parseHexList(s string) ([][]byte, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	out := make([][]byte, len(parts))
	for i, p := range parts {
		b, err := hex.DecodeString(p)
		if err != nil {
			return nil, fmt.Errorf("remote: stored hash: %w", err)
		}
		out[i] = b
	}
	return out, nil
}

func (s *SQLStore) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("remote: begin: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("remote: commit: %w", err)
	}
	return nil
}

func (s *SQLStore) outbox(ctx context.Context, tx *sql.Tx, ev audit.Event) error {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO remote_audit_outbox (id, at, kind, actor, subject, data) VALUES (?, ?, ?, ?, ?, ?)`),
		hex.EncodeToString(id[:]), us(at), ev.Kind, ev.Actor, ev.Subject, string(ev.Data))
	if err != nil {
		return fmt.Errorf("remote: audit outbox: %w", err)
	}
	return nil
}

// Audit implements Store.
func (s *SQLStore) Audit(ctx context.Context, ev audit.Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return s.audit(ctx, tx, ev) })
}

// CreateCredential implements Store.
func (s *SQLStore) CreateCredential(ctx context.Context, c Credential, ev audit.Event) error {
	chain := make([]string, len(c.Chain))
	for i, d := range c.Chain {
		chain[i] = hex.EncodeToString(d)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO remote_credentials (id, council_no, national_code, name, user_handle, key_uri, key_label,
			chain, status, reason, key_destroyed, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			c.ID, c.CouncilNumber, c.NationalCode, c.Name, c.UserHandle, c.KeyURI, c.KeyLabel, strings.Join(chain, ","), string(c.Status),
			c.Reason, boolInt(c.KeyDestroyed), us(c.CreatedAt), us(c.UpdatedAt))
		if err != nil {
			return fmt.Errorf("remote: create credential: %w", err)
		}
		return s.audit(ctx, tx, ev)
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

const credCols = `id, council_no, national_code, name, user_handle, key_uri, key_label, chain, status, reason, key_destroyed, created_at, updated_at`

func scanCredential(sc interface{ Scan(...any) error }) (Credential, error) {
	var c Credential
	var chain, status string
	var destroyed int
	var created, updated int64
	if err := sc.Scan(&c.ID, &c.CouncilNumber, &c.NationalCode, &c.Name, &c.UserHandle, &c.KeyURI, &c.KeyLabel, &chain, &status, &c.Reason,
		&destroyed, &created, &updated); err != nil {
		return Credential{}, err
	}
	if chain != "" {
		for _, p := range strings.Split(chain, ",") {
			d, err := hex.DecodeString(p)
			if err != nil {
				return Credential{}, fmt.Errorf("remote: stored chain: %w", err)
			}
			c.Chain = append(c.Chain, d)
		}
	}
	c.Status, c.KeyDestroyed = Status(status), destroyed != 0
	c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
	return c, nil
}

// Credential implements Store.
func (s *SQLStore) Credential(ctx context.Context, id string) (Credential, error) {
	c, err := scanCredential(s.db.QueryRowContext(ctx, s.q(`SELECT `+credCols+` FROM remote_credentials WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Credential{}, fmt.Errorf("%w: credential", ErrNotFound)
	}
	if err != nil {
		return Credential{}, fmt.Errorf("remote: credential: %w", err)
	}
	return c, nil
}

// CredentialsOf implements Store.
func (s *SQLStore) CredentialsOf(ctx context.Context, council string) ([]Credential, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+credCols+` FROM remote_credentials WHERE council_no = ? ORDER BY created_at, id`), council)
	if err != nil {
		return nil, fmt.Errorf("remote: credentials: %w", err)
	}
	defer rows.Close()
	var out []Credential
	for rows.Next() {
		c, err := scanCredential(rows)
		if err != nil {
			return nil, fmt.Errorf("remote: credentials: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// UpdateCredential implements Store.
func (s *SQLStore) UpdateCredential(ctx context.Context, c Credential, from []Status, ev audit.Event) error {
	if len(from) == 0 {
		return fmt.Errorf("%w: no state to move from", ErrBadRequest)
	}
	args := []any{string(c.Status), c.Reason, boolInt(c.KeyDestroyed), us(c.UpdatedAt), c.ID}
	ph := make([]string, len(from))
	for i, f := range from {
		ph[i] = "?"
		args = append(args, string(f))
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE remote_credentials SET status = ?, reason = ?, key_destroyed = ?, updated_at = ?
			WHERE id = ? AND status IN (`+strings.Join(ph, ", ")+`)`), args...)
		if err != nil {
			return fmt.Errorf("remote: update credential: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: credential is not in a state this change applies to", ErrCredentialStatus)
		}
		return s.audit(ctx, tx, ev)
	})
}

// AddPasskey implements Store. With activate, a pending or blocked credential becomes active in the same
// transaction.
func (s *SQLStore) AddPasskey(ctx context.Context, p Passkey, activate bool, ev audit.Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO remote_passkeys (credential_id, id, data, created_at) VALUES (?, ?, ?, ?)`),
			p.CredentialID, hex.EncodeToString(p.ID), string(p.Data), us(p.CreatedAt)); err != nil {
			return fmt.Errorf("remote: add passkey: %w", err)
		}
		if activate {
			res, err := tx.ExecContext(ctx, s.q(`UPDATE remote_credentials SET status = ?, reason = '', updated_at = ?
				WHERE id = ? AND status IN (?, ?)`), string(StatusActive), us(p.CreatedAt), p.CredentialID, string(StatusPending), string(StatusBlocked))
			if err != nil {
				return fmt.Errorf("remote: activate credential: %w", err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return fmt.Errorf("%w: only a pending or blocked credential gets a passkey", ErrCredentialStatus)
			}
		}
		return s.audit(ctx, tx, ev)
	})
}

// Passkeys implements Store.
func (s *SQLStore) Passkeys(ctx context.Context, credID string) ([]Passkey, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, data, created_at FROM remote_passkeys WHERE credential_id = ? ORDER BY created_at, id`), credID)
	if err != nil {
		return nil, fmt.Errorf("remote: passkeys: %w", err)
	}
	defer rows.Close()
	var out []Passkey
	for rows.Next() {
		var id, data string
		var created int64
		if err := rows.Scan(&id, &data, &created); err != nil {
			return nil, fmt.Errorf("remote: passkeys: %w", err)
		}
		raw, err := hex.DecodeString(id)
		if err != nil {
			return nil, fmt.Errorf("remote: stored passkey id: %w", err)
		}
		out = append(out, Passkey{CredentialID: credID, ID: raw, Data: []byte(data), CreatedAt: fromMicros(created)})
	}
	return out, rows.Err()
}

// UpdatePasskey implements Store (the signature counter after an assertion).
func (s *SQLStore) UpdatePasskey(ctx context.Context, p Passkey) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE remote_passkeys SET data = ? WHERE credential_id = ? AND id = ?`),
		string(p.Data), p.CredentialID, hex.EncodeToString(p.ID))
	if err != nil {
		return fmt.Errorf("remote: update passkey: %w", err)
	}
	return nil
}

// DeletePasskeys implements Store.
func (s *SQLStore) DeletePasskeys(ctx context.Context, credID string, ev audit.Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM remote_passkeys WHERE credential_id = ?`), credID); err != nil {
			return fmt.Errorf("remote: delete passkeys: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM remote_cards WHERE credential_id = ?`), credID); err != nil {
			return fmt.Errorf("remote: delete cards: %w", err)
		}
		return s.audit(ctx, tx, ev)
	})
}

// AddCard implements Store.
func (s *SQLStore) AddCard(ctx context.Context, k Card, activate bool, ev audit.Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM remote_cards WHERE credential_id = ? AND fingerprint = ?`),
			k.CredentialID, k.Fingerprint).Scan(&n); err != nil {
			return fmt.Errorf("remote: cards: %w", err)
		}
		if n != 0 {
			return fmt.Errorf("%w: the card is registered already", ErrUsed)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO remote_cards (credential_id, fingerprint, certificate, serial, issuer, national_code,
			not_after, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), k.CredentialID, k.Fingerprint, hex.EncodeToString(k.Certificate),
			k.Serial, k.Issuer, k.NationalCode, us(k.NotAfter), us(k.CreatedAt)); err != nil {
			return fmt.Errorf("remote: add card: %w", err)
		}
		if activate {
			res, err := tx.ExecContext(ctx, s.q(`UPDATE remote_credentials SET status = ?, reason = '', updated_at = ?
				WHERE id = ? AND status IN (?, ?)`), string(StatusActive), us(k.CreatedAt), k.CredentialID, string(StatusPending), string(StatusBlocked))
			if err != nil {
				return fmt.Errorf("remote: activate credential: %w", err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return fmt.Errorf("%w: only a pending or blocked credential is activated by a new factor", ErrCredentialStatus)
			}
		}
		return s.audit(ctx, tx, ev)
	})
}

// Cards implements Store.
func (s *SQLStore) Cards(ctx context.Context, credID string) ([]Card, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT fingerprint, certificate, serial, issuer, national_code, not_after, created_at
		FROM remote_cards WHERE credential_id = ? ORDER BY created_at, fingerprint`), credID)
	if err != nil {
		return nil, fmt.Errorf("remote: cards: %w", err)
	}
	defer rows.Close()
	var out []Card
	for rows.Next() {
		k := Card{CredentialID: credID}
		var cert string
		var notAfter, created int64
		if err := rows.Scan(&k.Fingerprint, &cert, &k.Serial, &k.Issuer, &k.NationalCode, &notAfter, &created); err != nil {
			return nil, fmt.Errorf("remote: cards: %w", err)
		}
		if k.Certificate, err = hex.DecodeString(cert); err != nil {
			return nil, fmt.Errorf("remote: stored card certificate: %w", err)
		}
		k.NotAfter, k.CreatedAt = fromMicros(notAfter), fromMicros(created)
		out = append(out, k)
	}
	return out, rows.Err()
}

func (s *SQLStore) putCardChallenge(ctx context.Context, ch cardChallengeRecord, ev audit.Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO remote_card_challenges (id, purpose, credential_id, actor, challenge, expires_at)
			VALUES (?, ?, ?, ?, ?, ?)`), ch.ID, string(ch.Purpose), ch.CredentialID, ch.Actor, hex.EncodeToString(ch.Challenge),
			us(ch.ExpiresAt)); err != nil {
			return fmt.Errorf("remote: store card challenge: %w", err)
		}
		return s.audit(ctx, tx, ev)
	})
}

func (s *SQLStore) takeCardChallenge(ctx context.Context, id string, now time.Time) (cardChallengeRecord, error) {
	ch := cardChallengeRecord{ID: id}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var purpose, chal string
		var exp int64
		var used sql.NullInt64
		err := tx.QueryRowContext(ctx, s.q(`SELECT purpose, credential_id, actor, challenge, expires_at, used_at FROM remote_card_challenges
			WHERE id = ?`), id).Scan(&purpose, &ch.CredentialID, &ch.Actor, &chal, &exp, &used)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: card challenge", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("remote: card challenge: %w", err)
		}
		ch.Purpose, ch.ExpiresAt = CardPurpose(purpose), fromMicros(exp)
		if ch.Challenge, err = hex.DecodeString(chal); err != nil {
			return fmt.Errorf("remote: stored card challenge: %w", err)
		}
		// One use, across nodes: only the UPDATE that finds used_at NULL wins.
		res, err := tx.ExecContext(ctx, s.q(`UPDATE remote_card_challenges SET used_at = ? WHERE id = ? AND used_at IS NULL`), us(now), id)
		if err != nil {
			return fmt.Errorf("remote: use card challenge: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: card challenge", ErrUsed)
		}
		return nil
	})
	return ch, err
}

func (s *SQLStore) putChallenge(ctx context.Context, ch challengeRecord, ev audit.Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO remote_challenges (id, kind, credential_id, hashes, challenge, expires_at)
			VALUES (?, ?, ?, ?, ?, ?)`), ch.ID, string(ch.Kind), ch.CredentialID, hexList(ch.Hashes), hex.EncodeToString(ch.Challenge),
			us(ch.ExpiresAt)); err != nil {
			return fmt.Errorf("remote: store challenge: %w", err)
		}
		return s.audit(ctx, tx, ev)
	})
}

// peekChallenge implements Store: the ceremony without using it up.
func (s *SQLStore) peekChallenge(ctx context.Context, id string, kind challengeKind) (challengeRecord, error) {
	ch := challengeRecord{ID: id, Kind: kind}
	var hashes, chal string
	var exp int64
	var used sql.NullInt64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT credential_id, hashes, challenge, expires_at, used_at FROM remote_challenges
		WHERE id = ? AND kind = ?`), id, string(kind)).Scan(&ch.CredentialID, &hashes, &chal, &exp, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return ch, fmt.Errorf("%w: %s request", ErrNotFound, kind)
	}
	if err != nil {
		return ch, fmt.Errorf("remote: challenge: %w", err)
	}
	ch.ExpiresAt = fromMicros(exp)
	if ch.Hashes, err = parseHexList(hashes); err != nil {
		return ch, err
	}
	if ch.Challenge, err = hex.DecodeString(chal); err != nil {
		return ch, fmt.Errorf("remote: stored challenge: %w", err)
	}
	if used.Valid {
		return ch, fmt.Errorf("%w: %s request", ErrUsed, kind)
	}
	return ch, nil
}

func (s *SQLStore) takeChallenge(ctx context.Context, id string, kind challengeKind, now time.Time) (challengeRecord, error) {
	var ch challengeRecord
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var hashes, chal string
		var exp int64
		var used sql.NullInt64
		err := tx.QueryRowContext(ctx, s.q(`SELECT credential_id, hashes, challenge, expires_at, used_at FROM remote_challenges
			WHERE id = ? AND kind = ?`), id, string(kind)).Scan(&ch.CredentialID, &hashes, &chal, &exp, &used)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: activation request", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("remote: challenge: %w", err)
		}
		ch.ID, ch.Kind, ch.ExpiresAt = id, kind, fromMicros(exp)
		if ch.Hashes, err = parseHexList(hashes); err != nil {
			return err
		}
		if ch.Challenge, err = hex.DecodeString(chal); err != nil {
			return fmt.Errorf("remote: stored challenge: %w", err)
		}
		// One use, across nodes: only the UPDATE that finds used_at NULL wins.
		res, err := tx.ExecContext(ctx, s.q(`UPDATE remote_challenges SET used_at = ? WHERE id = ? AND used_at IS NULL`), us(now), id)
		if err != nil {
			return fmt.Errorf("remote: use challenge: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: activation request", ErrUsed)
		}
		return nil
	})
	if errors.Is(err, ErrUsed) {
		return ch, err
	}
	return ch, err
}

// parkAssertion implements Store.
func (s *SQLStore) parkAssertion(ctx context.Context, requestID string, assertion []byte, now time.Time, ev audit.Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM remote_parked_assertions WHERE request_id = ?`), requestID).Scan(&n); err != nil {
			return fmt.Errorf("remote: parked assertion: %w", err)
		}
		if n != 0 {
			return fmt.Errorf("%w: the request was already approved", ErrUsed)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO remote_parked_assertions (request_id, assertion, parked_at) VALUES (?, ?, ?)`),
			requestID, hex.EncodeToString(assertion), us(now)); err != nil {
			return fmt.Errorf("%w: the request was already approved", ErrUsed) // the primary key: a concurrent approval won
		}
		return s.audit(ctx, tx, ev)
	})
}

// parkedAssertion implements Store.
func (s *SQLStore) parkedAssertion(ctx context.Context, requestID string) ([]byte, error) {
	var h string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT assertion FROM remote_parked_assertions WHERE request_id = ?`), requestID).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrPending
	}
	if err != nil {
		return nil, fmt.Errorf("remote: parked assertion: %w", err)
	}
	return hex.DecodeString(h)
}

func (s *SQLStore) putActivation(ctx context.Context, a activationRecord, ev audit.Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO remote_sads (sad_hash, credential_id, hashes, expires_at) VALUES (?, ?, ?, ?)`),
			a.SADHash, a.CredentialID, hexList(a.Hashes), us(a.ExpiresAt)); err != nil {
			return fmt.Errorf("remote: store SAD: %w", err)
		}
		for _, h := range a.Hashes {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO remote_sad_hashes (sad_hash, hash) VALUES (?, ?)`), a.SADHash, hex.EncodeToString(h)); err != nil {
				return fmt.Errorf("remote: store SAD: %w", err)
			}
		}
		return s.audit(ctx, tx, ev)
	})
}

func (s *SQLStore) activation(ctx context.Context, sadHash string) (activationRecord, error) {
	a := activationRecord{SADHash: sadHash}
	var hashes string
	var exp int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT credential_id, hashes, expires_at FROM remote_sads WHERE sad_hash = ?`), sadHash).
		Scan(&a.CredentialID, &hashes, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("%w: SAD", ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("remote: SAD: %w", err)
	}
	a.ExpiresAt = fromMicros(exp)
	a.Hashes, err = parseHexList(hashes)
	return a, err
}

func (s *SQLStore) spendHashes(ctx context.Context, sadHash string, hashes [][]byte, now time.Time, ev audit.Event) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, h := range hashes {
			hh := hex.EncodeToString(h)
			res, err := tx.ExecContext(ctx, s.q(`UPDATE remote_sad_hashes SET used_at = ? WHERE sad_hash = ? AND hash = ? AND used_at IS NULL`),
				us(now), sadHash, hh)
			if err != nil {
				return fmt.Errorf("remote: spend SAD: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				continue
			}
			var used sql.NullInt64
			err = tx.QueryRowContext(ctx, s.q(`SELECT used_at FROM remote_sad_hashes WHERE sad_hash = ? AND hash = ?`), sadHash, hh).Scan(&used)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: %s", ErrNotAuthorized, hh)
			}
			if err != nil {
				return fmt.Errorf("remote: spend SAD: %w", err)
			}
			return fmt.Errorf("%w: hash %s was signed already", ErrUsed, hh)
		}
		return s.audit(ctx, tx, ev)
	})
}

// OutboxEvents returns the events waiting in the outbox, oldest first (tests and `mohr` diagnostics).
func (s *SQLStore) OutboxEvents(ctx context.Context) ([]audit.Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT at, kind, actor, subject, data FROM remote_audit_outbox ORDER BY at, id`)
	if err != nil {
		return nil, fmt.Errorf("remote: outbox: %w", err)
	}
	defer rows.Close()
	var out []audit.Event
	for rows.Next() {
		var at int64
		var ev audit.Event
		var data string
		if err := rows.Scan(&at, &ev.Kind, &ev.Actor, &ev.Subject, &data); err != nil {
			return nil, fmt.Errorf("remote: outbox: %w", err)
		}
		ev.Time, ev.Data = fromMicros(at), json.RawMessage(data)
		out = append(out, ev)
	}
	return out, rows.Err()
}

// DrainAuditOutbox moves the outbox's events into the audit log with appendAudit (which writes within tx),
// deleting each in the same transaction, in batches of 100. It returns how many it moved.
func (s *SQLStore) DrainAuditOutbox(ctx context.Context, appendAudit func(context.Context, *sql.Tx, audit.Event) error) (int, error) {
	total := 0
	for {
		n := 0
		err := s.tx(ctx, func(tx *sql.Tx) error {
			lock := ""
			if s.postgres {
				lock = " FOR UPDATE SKIP LOCKED"
			}
			rows, err := tx.QueryContext(ctx, `SELECT id, at, kind, actor, subject, data FROM remote_audit_outbox ORDER BY at, id LIMIT 100`+lock)
			if err != nil {
				return fmt.Errorf("remote: outbox: %w", err)
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
					return fmt.Errorf("remote: outbox: %w", err)
				}
				it.ev.Time, it.ev.Data = fromMicros(at), json.RawMessage(data)
				items = append(items, it)
			}
			rows.Close()
			for _, it := range items {
				if err := appendAudit(ctx, tx, it.ev); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM remote_audit_outbox WHERE id = ?`), it.id); err != nil {
					return fmt.Errorf("remote: outbox: %w", err)
				}
			}
			n = len(items)
			return nil
		})
		total += n
		if err != nil || n < 100 {
			return total, err
		}
	}
}
