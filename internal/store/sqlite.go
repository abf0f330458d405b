package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"

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

// walCheckpointPages is how many WAL pages a commit may leave before the committing connection checkpoints
// them into the database file (SQLite's default is 1000 pages, 4 MB). Every commit is durable in the WAL
// (synchronous=FULL) whatever this is: it only says how often the pages are copied into the database. A
// page written by many commits between two checkpoints (B-tree interior pages, the tables' and the audit
// log's last pages, hot index pages) is copied once, and the writer, which runs the checkpoint, stalls the
// queued commits less often. Measured with BenchmarkSavePrescription (32 concurrent ingestions' rows,
// 2026-12-03, docs/signing.md "Store"): 16000 pages gives 0.70 of the CPU per row of 1000 and 1.9x the
// rows/s. The WAL file grows to about 64 MB (walSizeLimit truncates it back after a checkpoint).
const walCheckpointPages = 16000

// walSizeLimit is the size the WAL file is truncated to when a checkpoint has emptied it (journal_size_limit).
const walSizeLimit = 64 << 20

// OpenSQLite opens (creating if needed) the database file at path and migrates its schema.
func OpenSQLite(ctx context.Context, path string, opts ...Option) (*SQLite, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") || path == ":memory:" {
		return nil, fmt.Errorf("store: unsupported SQLite path %q", path)
	}
	o := buildOptions(opts)
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)", busyTimeoutMS)
	w, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate"+
		fmt.Sprintf("&_pragma=wal_autocheckpoint(%d)&_pragma=journal_size_limit(%d)", walCheckpointPages, walSizeLimit))
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
	b := &sqliteBackend{w: w, r: r, ws: newStmtCache(w), rs: newStmtCache(r)}
	if err := migrate(ctx, b, "sqlite", o.now()); err != nil {
		b.close()
		return nil, err
	}
	return &SQLite{core{b: b, now: o.now}}, nil
}

type sqliteBackend struct {
	w, r   *sql.DB
	ws, rs *stmtCache // prepared statements of the writer and the readers
}

func (b *sqliteBackend) inTx(ctx context.Context, fn func(q querier) error) (err error) {
	tx, err := b.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock)
	if err != nil {
		return err
	}
	defer func() {
		b.ws.prepareWanted(ctx)
	}()
	if err := fn(sqlQuerier{q: tx, tx: tx, stmts: b.ws}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (b *sqliteBackend) reader() querier   { return sqlQuerier{q: b.r, stmts: b.rs} }
func (b *sqliteBackend) forUpdate() string { return "" }

func (b *sqliteBackend) isUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

func (b *sqliteBackend) close() error {
	b.ws.close()
	b.rs.close()
	return errors.Join(b.r.Close(), b.w.Close())
}

// stmtCache keeps prepared statements by query text, so that each statement is parsed and planned once per
// connection instead of on every call (database/sql reuses a statement prepared on the connection a
// transaction runs on; the driver keeps the compiled statement). Queries whose text varies with their
// arguments (multi-row VALUES) would fill it: past maxStmts, queries run unprepared.
type stmtCache struct {
	db   *sql.DB
	mu   sync.Mutex
	m    map[string]*sql.Stmt
	want map[string]bool
}

const maxStmts = 256

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, want: map[string]bool{}}
}

// get returns the prepared statement for query, in tx when tx is not nil, or nil when it is not cached. It
// never waits for a connection while holding the cache's lock (a connection may be held by a caller of get).
func (c *stmtCache) get(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
	// Multi-row VALUES and IN lists: the text varies with the arguments.
	if c == nil || strings.Contains(query, "), (") || strings.Contains(query, " IN (?") {
		return nil
	}
	c.mu.Lock()
	st, ok := c.m[query]
	room := !ok && len(c.m)+len(c.want) < maxStmts
	if room && tx != nil {
		// The writer's one connection is the transaction's until it ends: prepared after it.
		c.want[query] = true
	}
	c.mu.Unlock()
	if room && tx == nil {
		st = c.prepare(ctx, query)
	}
	if st == nil || tx == nil {
		return st
	}
	return tx.StmtContext(ctx, st)
}

// prepare prepares query on the pool and keeps it (or the one another caller kept first).
func (c *stmtCache) prepare(ctx context.Context, query string) *sql.Stmt {
	p, err := c.db.PrepareContext(context.WithoutCancel(ctx), query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[query]; ok {
		p.Close()
		return old
	}
	c.m[query] = p
	return p
}

// prepareWanted prepares the queries a transaction ran unprepared; the caller holds no connection.
func (c *stmtCache) prepareWanted(ctx context.Context) {
	c.mu.Lock()
	var qs []string
	for q := range c.want { // usually empty
		qs = append(qs, q)
		delete(c.want, q)
	}
	c.mu.Unlock()
	for _, q := range qs {
		c.prepare(ctx, q)
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	clear(c.m)
}

// sqlQuerier runs queries on a database/sql transaction or pool, with the prepared statements of stmts when set
// (tx is the transaction q is, if it is one).
type sqlQuerier struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
	tx    *sql.Tx
	stmts *stmtCache
}

func (s sqlQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	var res sql.Result
	var err error
	if st := s.stmts.get(ctx, s.tx, query); st != nil {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = s.q.ExecContext(ctx, query, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqlQuerier) queryRow(ctx context.Context, query string, args ...any) row {
	if st := s.stmts.get(ctx, s.tx, query); st != nil {
		return sqlRow{st.QueryRowContext(ctx, args...)}
	}
	return sqlRow{s.q.QueryRowContext(ctx, query, args...)}
}

func (s sqlQuerier) query(ctx context.Context, query string, args ...any) (rows, error) {
	var rs *sql.Rows
	var err error
	if st := s.stmts.get(ctx, s.tx, query); st != nil {
		rs, err = st.QueryContext(ctx, args...)
	} else {
		rs, err = s.q.QueryContext(ctx, query, args...)
	}
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
