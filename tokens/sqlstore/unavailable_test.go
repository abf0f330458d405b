package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/tokens"
	"github.com/mohr-hix/mohr/tokens/sqlstore"
)

// cutter forwards TCP connections to PostgreSQL until cut: the database goes away under an open pool.
type cutter struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newCutter(t *testing.T, target string) *cutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln}
	t.Cleanup(c.cut)
	go func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				a.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, a, b)
			c.mu.Unlock()
			go func() { io.Copy(b, a); b.Close() }()
			go func() { io.Copy(a, b); a.Close() }()
		}
	}()
	return c
}

func (c *cutter) cut() {
	c.ln.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.conns {
		x.Close()
	}
}

func isUnavailable(err error) bool {
	var ua interface{ Unavailable() bool }
	return errors.Is(err, sqlstore.ErrUnavailable) && errors.As(err, &ua) && ua.Unavailable()
}

func facility(id string) tokens.Facility {
	now := time.Now().UTC().Truncate(time.Second)
	return tokens.Facility{SIAMID: id, Name: "Clinic", LicenceNumber: "L-1", LicenceStatus: tokens.StatusActive,
		LicenceFrom: now.Add(-time.Hour), LicenceUntil: now.Add(time.Hour), SystemID: "S-1", SystemStatus: tokens.StatusActive}
}

// TestUnavailable: a database that is read-only or gone makes the token store's errors ErrUnavailable (503
// with Retry-After in the API, as for the other stores), while its own answers (not found, conflict) stay
// what they are: never a 503 for a request that would fail again.
func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.PostgresDSN(t)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var b [6]byte
	rand.Read(b[:])
	name := "tokens_unavail_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") })
	u, _ := url.Parse(dsn)
	cut := newCutter(t, u.Host)
	u.Host, u.Path = cut.ln.Addr().String(), "/"+name
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := sqlstore.New(ctx, db, sqlstore.Options{Dialect: "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	ev := audit.Event{Time: time.Now(), Kind: "registry.facilities", Actor: "test"}
	if err := s.PutFacilities(ctx, []tokens.Facility{facility("SIAM-1")}, ev); err != nil {
		t.Fatal(err)
	}

	// Answers of a working database are not "unavailable".
	if _, err := s.Facility(ctx, "SIAM-NONE"); !errors.Is(err, tokens.ErrNotFound) || isUnavailable(err) {
		t.Fatalf("not found: %v", err)
	}
	code := tokens.EnrolmentCode{ID: "C1", Hash: []byte{1}, SIAMID: "SIAM-1", CreatedBy: "test", CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := s.AddEnrolmentCode(ctx, code, ev); err != nil {
		t.Fatal(err)
	}
	if err := s.AddEnrolmentCode(ctx, code, ev); !errors.Is(err, tokens.ErrConflict) || isUnavailable(err) {
		t.Fatalf("conflict: %v", err)
	}

	// Read-only (a standby, or default_transaction_read_only): writes are unavailable, reads still answer.
	if _, err := admin.Exec("ALTER DATABASE " + name + " SET default_transaction_read_only = on"); err != nil {
		t.Fatal(err)
	}
	admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
	var werr error
	for i := 0; i < 50; i++ { // the pool may hand out a terminated connection first (also unavailable)
		if werr = s.PutFacilities(ctx, []tokens.Facility{facility("SIAM-2")}, ev); werr == nil || !isUnavailable(werr) {
			break
		}
		var pe interface{ SQLState() string }
		if errors.As(werr, &pe) && pe.SQLState() == "25006" {
			break
		}
	}
	if !isUnavailable(werr) {
		t.Fatalf("write on a read-only database: %v, want ErrUnavailable", werr)
	}
	if err := s.SetTokenStatus(ctx, "00ff", tokens.TokenRevoked, 1, time.Now(), ev); !isUnavailable(err) {
		t.Fatalf("token status on a read-only database: %v, want ErrUnavailable", err)
	}
	if _, err := s.Facility(ctx, "SIAM-1"); err != nil {
		t.Fatalf("read on a read-only database: %v", err)
	}
	if _, err := admin.Exec("ALTER DATABASE " + name + " SET default_transaction_read_only = off"); err != nil {
		t.Fatal(err)
	}
	admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)

	// Gone: every operation is unavailable.
	cut.cut()
	if _, err := s.Facility(ctx, "SIAM-1"); !isUnavailable(err) {
		t.Fatalf("read without a database: %v, want ErrUnavailable", err)
	}
	if _, err := s.Tokens(ctx, "SIAM-1"); !isUnavailable(err) {
		t.Fatalf("list without a database: %v, want ErrUnavailable", err)
	}
	if err := s.AddToken(ctx, tokens.Token{Serial: "01", SIAMID: "SIAM-1", Kind: "adapter", Status: tokens.TokenActive}, ev); !isUnavailable(err) {
		t.Fatalf("write without a database: %v, want ErrUnavailable", err)
	}
	if _, err := s.DrainAuditOutbox(ctx, func(context.Context, *sql.Tx, audit.Event) error { return nil }); !isUnavailable(err) {
		t.Fatalf("outbox without a database: %v, want ErrUnavailable", err)
	}
}
