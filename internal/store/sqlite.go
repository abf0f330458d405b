package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded store: one database file in WAL mode with synchronous=FULL, so a committed
// transaction survives a crash or power loss. All writes go through one connection that begins its
// transactions with BEGIN IMMEDIATE, so writers queue (in this process, and through busy_timeout across
// processes) instead of failing; reads use a separate read-only pool and do not wait for writers.
type SQLite struct {
	core
}

// busyTimeoutMS is how long a connection waits for another process's write lock.
const busyTimeoutMS = 10000

// OpenSQLite opens (creating if needed) the database file at path and migrates its schema.
func OpenSQLite(ctx context.Context, path string, opts ...Option) (*SQLite, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") || path == ":memory:" {
		return nil, fmt.Errorf("store: unsupported SQLite path %q", path)
	}
	o := buildOptions(opts)
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)", busyTimeoutMS)
	w, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("store: open SQLite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open SQLite %s: %w", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		w.Close()
		return nil, fmt.Errorf("store: open SQLite %s: journal mode is %s, not WAL", path, mode)
	}
	r, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open SQLite: %w", err)
	}
	r.SetMaxOpenConns(4)
	b := &sqliteBackend{w: w, r: r}
	if err := migrate(ctx, b, "sqlite", o.now()); err != nil {
		b.close()
		return nil, err
	}
	return &SQLite{core{b: b, now: o.now}}, nil
}

type sqliteBackend struct {
	w, r *sql.DB
}

func (b *sqliteBackend) inTx(ctx context.Context, fn func(q querier) error) (err error) {
	tx, err := b.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock)
	if err != nil {
		return err
	}
	if err := fn(sqlQuerier{tx}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (b *sqliteBackend) reader() querier   { return sqlQuerier{b.r} }
func (b *sqliteBackend) forUpdate() string { return "" }

func (b *sqliteBackend) isUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

func (b *sqliteBackend) close() error {
	return errors.Join(b.r.Close(), b.w.Close())
}

// sqlQuerier runs queries on a database/sql transaction or pool.
type sqlQuerier struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
}

func (s sqlQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqlQuerier) queryRow(ctx context.Context, query string, args ...any) row {
	return sqlRow{s.q.QueryRowContext(ctx, query, args...)}
}

func (s sqlQuerier) query(ctx context.Context, query string, args ...any) (rows, error) {
	rs, err := s.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rs}, nil
}

type sqlRow struct{ r *sql.Row }

func (r sqlRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return errNoRows
	}
	return err
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }
