package store

import (
	"context"
	"strconv"
	"strings"
)

// querier runs SQL: a transaction, or the pool for reads that need no transaction. Queries use ? placeholders;
// the PostgreSQL querier rewrites them.
type querier interface {
	exec(ctx context.Context, query string, args ...any) (rowsAffected int64, err error)
	queryRow(ctx context.Context, query string, args ...any) row
	query(ctx context.Context, query string, args ...any) (rows, error)
}

// row is one result row; Scan returns errNoRows when there is none.
type row interface {
	Scan(dest ...any) error
}

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// backend is what differs between SQLite and PostgreSQL.
type backend interface {
	// inTx runs fn in a read-write transaction and commits it, or rolls it back if fn fails.
	inTx(ctx context.Context, fn func(q querier) error) error
	// reader returns a querier for single-statement reads.
	reader() querier
	// forUpdate is the row-locking suffix of a SELECT inside inTx ("" where the transaction already holds
	// the database's write lock).
	forUpdate() string
	// isUniqueViolation reports whether err is a primary key or unique constraint violation.
	isUniqueViolation(err error) bool
	close() error
}

// rebindDollar rewrites ? placeholders as $1, $2, ... for PostgreSQL. The store's SQL has no ? in literals.
func rebindDollar(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// placeholders returns "?, ?, ..." with n marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
