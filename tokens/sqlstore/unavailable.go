package sqlstore

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"
)

// ErrUnavailable is wrapped by the errors of operations that failed because the database could not be
// reached, was shutting down or failing over, or took no writes (a standby, a read-only database): nothing was
// changed and the same request may succeed shortly. Such errors also have Unavailable() true, which the API
// answers with 503 and Retry-After, as it does for the other stores.
var ErrUnavailable = errors.New("tokens/sqlstore: database unavailable")

type unavailableError struct{ err error }

func (e *unavailableError) Error() string     { return ErrUnavailable.Error() + ": " + e.err.Error() }
func (e *unavailableError) Unwrap() []error   { return []error{ErrUnavailable, e.err} }
func (e *unavailableError) Unavailable() bool { return true }

// mark wraps *err in ErrUnavailable when it says the database is unavailable. Exported methods defer it.
func (s *Store) mark(err *error) {
	if *err == nil || errors.Is(*err, ErrUnavailable) {
		return
	}
	var ua interface{ Unavailable() bool } // already classified (the audit append of the main store)
	if errors.As(*err, &ua) && ua.Unavailable() {
		*err = &unavailableError{*err}
		return
	}
	if unavailable(*err) || (s.unavailable != nil && s.unavailable(*err)) {
		*err = &unavailableError{*err}
	}
}

// unavailable recognises, without knowing the driver, the errors of a database that is out of reach or takes
// no writes: broken connections, and the SQLSTATE classes and codes of SQL:2016 and PostgreSQL for a
// connection exception (08xxx), a shutdown or crash (57P01-57P03), a read-only transaction (25006), too many
// connections (53300), and a serialization failure or deadlock (40001, 40P01).
func unavailable(err error) bool {
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		c := st.SQLState()
		switch {
		case len(c) == 5 && c[:2] == "08", c == "57P01", c == "57P02", c == "57P03", c == "25006", c == "53300",
			c == "40001", c == "40P01":
			return true
		}
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}
