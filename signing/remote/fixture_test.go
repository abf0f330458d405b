package remote_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/hsm"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/softauthn"
	"github.com/mohr-hix/mohr/internal/store"
	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing/remote"
)

const (
	tokenLabel = "MohrRemote"
	rpID       = "localhost"
	origin     = "https://localhost:8443"
)

func TestMain(m *testing.M) { os.Exit(testenv.SoftHSMMain(m, tokenLabel)) }

// countingKeys wraps the HSM opener and counts the signatures its keys make, so a refusal can be shown to
// have signed nothing.
type countingKeys struct {
	*hsm.Opener
	signs atomic.Int64
}

type countingSigner struct {
	crypto.Signer
	n *atomic.Int64
}

func (c countingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, d, o)
}

func (c countingSigner) SignContext(ctx context.Context, d []byte, o crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.(*hsm.Key).SignContext(ctx, d, o)
}

func (k *countingKeys) GenerateKey(ctx context.Context, uri, alg string) (crypto.Signer, error) {
	s, err := k.Opener.GenerateKey(ctx, uri, alg)
	if err != nil {
		return nil, err
	}
	return countingSigner{s, &k.signs}, nil
}

func (k *countingKeys) OpenSigner(ctx context.Context, uri string) (crypto.Signer, error) {
	s, err := k.Opener.OpenSigner(ctx, uri)
	if err != nil {
		return nil, err
	}
	return countingSigner{s, &k.signs}, nil
}

type fixture struct {
	t      testing.TB
	svc    *remote.Service
	st     *remote.SQLStore
	keys   *countingKeys
	clock  *testpki.Clock
	pki    *testpki.PKI
	ca     *ca.CA
	module string
	pin    string
	ra     remote.Caller
	revoke func(context.Context, *x509.Certificate, int, string) error
	// registry, if set, is the enrolment's registry check.
	registry func(ctx context.Context, nationalCode, council string) error
	// cfg is the service's configuration; cardIssuer the national ID card issuer withCards makes it trust.
	cfg        remote.Config
	cardIssuer *virtualcard.Issuer
}

// withCards rebuilds the service trusting cardIssuer's national ID cards (Config.CardIssuers): the card
// factor works and every enrolment needs the card's answer.
func (f *fixture) withCards() {
	f.t.Helper()
	f.cfg.CardIssuers = []*x509.Certificate{f.cardIssuer.Cert}
	svc, err := remote.New(f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.svc = svc
}

// setRevoke makes fn the CA revocation the service calls.
func (f *fixture) setRevoke(fn func(context.Context, *x509.Certificate, int, string) error) {
	f.revoke = fn
}

// physician is a test physician with a valid national code.
type physician struct {
	national, council, name string
}

var (
	drA = physician{"0499370899", "12345", "Dr Sara Ahmadi"}
	drB = physician{"0013542419", "67890", "Dr Reza Karimi"}
)

func (p physician) caller() remote.Caller {
	return remote.Caller{Role: remote.RolePhysician, CouncilNumber: p.council, Actor: "api:physician:" + p.council}
}

func openSQLite(t testing.TB, name string) *sql.DB {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), name) + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// freshPostgres creates a database of its own on the throwaway cluster and drops it when t ends.
func freshPostgres(t testing.TB) *sql.DB {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var b [6]byte
	rand.Read(b[:])
	name := "remote_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		admin.Exec(fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
	})
	return db
}

// newFixture builds the service on SoftHSM2, a real CA (package ca, certificates in a SQLite store) and the
// remote store on dialect ("sqlite" or "postgres").
func newFixture(t testing.TB, dialect string) *fixture {
	t.Helper()
	module, pin := testenv.SoftHSM(t, tokenLabel)
	ctx := context.Background()
	clock := &testpki.Clock{}
	clock.Set(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	p, err := testpki.New(clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	p.Clock = clock
	cst, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cst.Close() })
	c, err := ca.New(&ca.Issuer{Cert: p.Intermediate, Signer: p.InterKey, Chain: []*x509.Certificate{p.Intermediate, p.Root}},
		cst, ca.DefaultConfig(), ca.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	var db *sql.DB
	if dialect == "postgres" {
		db = freshPostgres(t)
	} else {
		db = openSQLite(t, "remote.db")
	}
	st, err := remote.NewSQLStore(ctx, db, remote.SQLOptions{Dialect: dialect})
	if err != nil {
		t.Fatal(err)
	}
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	op := hsm.NewOpener(module)
	t.Cleanup(func() { op.Close() })
	keys := &countingKeys{Opener: op}
	f := &fixture{}
	cardIssuer, err := virtualcard.NewIssuer(nil, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := remote.Config{
		Store: st, Keys: keys, KeyToken: "pkcs11:token=" + tokenLabel + "?pin-source=file:" + pinFile,
		Issue: func(ctx context.Context, r remote.IssueRequest) ([]*x509.Certificate, error) {
			cert, err := c.Issue(ctx, ca.Request{Profile: ca.ProfilePhysicianSigning, RemoteSigning: true, CSR: r.CSR,
				CommonName: r.Name, NationalCode: r.NationalCode, CouncilNumber: r.CouncilNumber, Actor: r.Actor})
			if err != nil {
				return nil, err
			}
			return []*x509.Certificate{cert, p.Intermediate}, nil
		},
		RPID: rpID, RPOrigins: []string{origin}, MaxHashes: 20, Now: clock.Now,
		CheckRegistry: func(ctx context.Context, nationalCode, council string) error {
			if f.registry == nil {
				return nil
			}
			return f.registry(ctx, nationalCode, council)
		},
		Revoke: func(ctx context.Context, cert *x509.Certificate, reason int, actor string) error {
			if f.revoke == nil {
				return nil
			}
			return f.revoke(ctx, cert, reason, actor)
		},
	}
	svc, err := remote.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	*f = fixture{t: t, svc: svc, st: st, keys: keys, clock: clock, pki: p, ca: c, module: module, pin: pin,
		ra: remote.Caller{Role: remote.RoleRAOfficer, Actor: "api:ra-officer:ra1"}, cfg: cfg, cardIssuer: cardIssuer}
	return f
}

// enrol enrols p and registers a soft passkey; it returns the active credential and the authenticator.
func (f *fixture) enrol(p physician) (remote.Credential, *softauthn.Authenticator) {
	f.t.Helper()
	ctx := context.Background()
	cred, reg, err := f.svc.Enrol(ctx, f.ra, remote.EnrolRequest{NationalCode: p.national, CouncilNumber: p.council, Name: p.name,
		IdentityCheck: "national ID card INTERNAL AUTHENTICATE ok"})
	if err != nil {
		f.t.Fatal(err)
	}
	a := softauthn.New(origin)
	f.register(cred.ID, reg, a)
	cred, err = f.st.Credential(ctx, cred.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	if cred.Status != remote.StatusActive {
		f.t.Fatalf("status after passkey registration = %s", cred.Status)
	}
	return cred, a
}

func (f *fixture) register(credID string, reg remote.Registration, a *softauthn.Authenticator) {
	f.t.Helper()
	opts, _ := json.Marshal(reg.Options)
	resp, err := a.Register(opts)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.svc.FinishPasskeyRegistration(context.Background(), f.ra, credID, reg.ID, resp); err != nil {
		f.t.Fatal(err)
	}
}

func randomHashes(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, 32)
		rand.Read(out[i])
	}
	return out
}

// events returns the outbox events of kind.
func (f *fixture) events(kind string) []audit.Event {
	f.t.Helper()
	evs, err := f.st.OutboxEvents(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	var out []audit.Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// refusedWith reports whether a remote.refused event for op mentions every hash and the text.
func (f *fixture) refusedWith(op string, hashes [][]byte, text string) bool {
	for _, e := range f.events("remote.refused") {
		var d struct {
			Op     string   `json:"op"`
			Reason string   `json:"reason"`
			Hashes []string `json:"hashes"`
		}
		json.Unmarshal(e.Data, &d)
		if d.Op != op || !strings.Contains(d.Reason, text) {
			continue
		}
		all := true
		for _, h := range hashes {
			found := false
			for _, x := range d.Hashes {
				found = found || x == hex.EncodeToString(h)
			}
			all = all && found
		}
		if all {
			return true
		}
	}
	return false
}
