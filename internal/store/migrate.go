package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	stmts   []string
}

// migrations returns the dialect's migrations (migrations/<dialect>/NNNN_name.sql) in version order.
func migrations(dialect string) ([]migration, error) {
	dir := path.Join("migrations", dialect)
	ents, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range ents {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("bad migration file name %q", e.Name())
		}
		b, err := fs.ReadFile(migrationFS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: strings.TrimSuffix(e.Name(), ".sql"), stmts: splitSQL(string(b))})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration versions are not 1..n (%s)", m.name)
		}
	}
	return ms, nil
}

// splitSQL splits a migration into statements: each ends with ; at the end of a line. Lines starting with --
// are comments.
func splitSQL(s string) []string {
	var stmts []string
	var cur strings.Builder
	for _, line := range strings.Split(s, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			stmts = append(stmts, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if strings.TrimSpace(cur.String()) != "" {
		stmts = append(stmts, strings.TrimSpace(cur.String()))
	}
	return stmts
}

// migrate brings the schema up to date. Row version 0 of schema_migrations is a lock: every migrator locks it
// first, so two processes opening a new database at once apply each migration once. A database with a version
// this binary does not know is refused.
func migrate(ctx context.Context, b backend, dialect string, now time.Time) error {
	ms, err := migrations(dialect)
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	err = b.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER NOT NULL PRIMARY KEY,
	name       TEXT    NOT NULL,
	applied_us BIGINT  NOT NULL
)`); err != nil {
			return err
		}
		_, err := q.exec(ctx, `INSERT INTO schema_migrations (version, name, applied_us) VALUES (0, 'lock', 0) ON CONFLICT (version) DO NOTHING`)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: create schema_migrations: %w", err)
	}
	err = b.inTx(ctx, func(q querier) error {
		var lock int
		if err := q.queryRow(ctx, `SELECT version FROM schema_migrations WHERE version = 0`+b.forUpdate()).Scan(&lock); err != nil {
			return err
		}
		var current int
		if err := q.queryRow(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&current); err != nil {
			return err
		}
		if current > len(ms) {
			return fmt.Errorf("database schema version %d is newer than this binary's (%d)", current, len(ms))
		}
		for _, m := range ms[current:] {
			for i, s := range m.stmts {
				if _, err := q.exec(ctx, s); err != nil {
					return fmt.Errorf("migration %s, statement %d: %w", m.name, i+1, err)
				}
			}
			if _, err := q.exec(ctx, `INSERT INTO schema_migrations (version, name, applied_us) VALUES (?, ?, ?)`,
				m.version, m.name, toUS(now)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return nil
}
