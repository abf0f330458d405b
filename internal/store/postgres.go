package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the production store on PostgreSQL, through a pgx connection pool. Transactions run at READ
// COMMITTED; state changes lock the rows they change (SELECT ... FOR UPDATE) and then the audit head, always in
// that order, so concurrent writers neither deadlock nor fork the audit chain. A transaction that fails with a
// serialization failure or a deadlock (possible on distributed PostgreSQL-compatible engines) is retried.
type Postgres struct {
	core
}

// OpenPostgres connects to the database at dsn (a libpq URL or key=value string) and migrates its schema.
func OpenPostgres(ctx context.Context, dsn string, opts ...Option) (*Postgres, error) {
	o := buildOptions(opts)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error quotes the DSN (with the password masked); say only what is wrong.
		if inner := errors.Unwrap(err); inner != nil {
			return nil, fmt.Errorf("store: invalid PostgreSQL DSN: %w", inner)
		}
		return nil, errors.New("store: invalid PostgreSQL DSN")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect to PostgreSQL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect to PostgreSQL: %w", err)
	}
	b := &pgBackend{pool: pool}
	if err := migrate(ctx, b, "postgres", o.now()); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Postgres{core{b: b, now: o.now, auditQueue: true}}
	// Events a process left queued when it stopped between a commit and its chain go into the log now, so the
	// log and the tables agree for whoever opens the store (a node starting, `mohr audit verify`). A failure
	// leaves them for the next chain or append of any node.
	_ = s.ChainAuditQueue(ctx)
	return s, nil
}

type pgBackend struct {
	pool *pgxpool.Pool
}

// pgTxAttempts bounds the retries of a transaction that failed with a serialization failure or deadlock.
const pgTxAttempts = 5

func (b *pgBackend) inTx(ctx context.Context, fn func(q querier) error) error {
	var err error
	for attempt := 0; attempt < pgTxAttempts; attempt++ {
		err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return fn(pgQuerier{tx}) })
		if !retryable(err) {
			return err
		}
	}
	return err
}

func retryable(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && (e.Code == "40001" || e.Code == "40P01")
}

func (b *pgBackend) reader() querier   { return pgQuerier{b.pool} }
func (b *pgBackend) forUpdate() string { return " FOR UPDATE" }

func (b *pgBackend) isUniqueViolation(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505"
}

func (b *pgBackend) close() error {
	b.pool.Close()
	return nil
}

// pgQuerier runs queries on a pgx transaction or pool, rewriting ? placeholders.
type pgQuerier struct {
	q interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
}

func (p pgQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := p.q.Exec(ctx, rebindDollar(query), args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (p pgQuerier) queryRow(ctx context.Context, query string, args ...any) row {
	return pgRow{p.q.QueryRow(ctx, rebindDollar(query), args...)}
}

func (p pgQuerier) query(ctx context.Context, query string, args ...any) (rows, error) {
	rs, err := p.q.Query(ctx, rebindDollar(query), args...)
	if err != nil {
		return nil, err
	}
	return rs, nil
}

type pgRow struct{ r pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNoRows
	}
	return err
}
