package store

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrUnavailable is wrapped by the errors of operations that failed because the database could not be
// reached, was shutting down or failing over, or took no writes (a standby, a read-only primary): nothing was
// changed, and the same request may succeed shortly, on this node or another. Such errors also have
// Unavailable() true, which the API answers with 503 and Retry-After.
var ErrUnavailable = errors.New("store: database unavailable")

type unavailableError struct{ err error }

func (e *unavailableError) Error() string     { return ErrUnavailable.Error() + ": " + e.err.Error() }
func (e *unavailableError) Unwrap() []error   { return []error{ErrUnavailable, e.err} }
func (e *unavailableError) Unavailable() bool { return true }

// markUnavailable wraps err when it says the database is unavailable (see ErrUnavailable).
func markUnavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || !unavailable(err) {
		return err
	}
	return &unavailableError{err}
}

func unavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case len(pe.Code) == 5 && pe.Code[:2] == "08", // connection exception
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // admin/crash shutdown, cannot connect now
			pe.Code == "25006",                     // read-only SQL transaction (a standby, or default_transaction_read_only)
			pe.Code == "53300",                     // too many connections
			pe.Code == "40001", pe.Code == "40P01": // serialization failure or deadlock after the retries
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	var se *sqlite.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.SafeToRetry(err), pgconn.Timeout(err),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		return true
	case errors.As(err, &se):
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_READONLY:
			return true
		}
	}
	return false
}

// Unavailable reports whether err, from this store or from a driver it uses (pgx, modernc SQLite, also
// through database/sql), says the database is unavailable (see ErrUnavailable): for other stores on the same
// database, such as the token store, to answer the same way.
func Unavailable(err error) bool { return errors.Is(err, ErrUnavailable) || unavailable(err) }
