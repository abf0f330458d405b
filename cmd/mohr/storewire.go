package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/store"
)

// appStore is what the commands need of the database: the CA's store, the audit log's source and checkpoints.
type appStore interface {
	ca.Store
	clusterStore
	audit.Source
	Checkpoint(ctx context.Context, cp *audit.Checkpointer) error
	SavePrescription(ctx context.Context, rec store.PrescriptionRecord, ev audit.Event) error
	AppendAuditTx(ctx context.Context, tx *sql.Tx, ev audit.Event) error
	Prescription(ctx context.Context, id string) (store.PrescriptionRecord, error)
	PrescriptionsDue(ctx context.Context, t time.Time, limit int) ([]store.PrescriptionRecord, error)
	UpdatePrescriptionSignature(ctx context.Context, id string, old, sig []byte, due time.Time, ev audit.Event) error
	Close() error
}

var (
	_ appStore = (*store.SQLite)(nil)
	_ appStore = (*store.Postgres)(nil)
)

// openStore opens the configured database and applies its migrations.
func openStore(ctx context.Context, cfg *Config) (appStore, error) {
	switch cfg.Database.Driver {
	case "sqlite":
		if err := requireInitialised(cfg); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
			return nil, err
		}
		// The database holds the audit log and the certificates: readable by its owner only.
		if f, err := os.OpenFile(cfg.Database.DSN, os.O_CREATE|os.O_RDONLY, 0o600); err == nil {
			f.Close()
		}
		os.Chmod(cfg.Database.DSN, 0o600)
		st, err := store.OpenSQLite(ctx, cfg.Database.DSN)
		if err != nil {
			return nil, err
		}
		return st, nil
	case "postgres":
		st, err := store.OpenPostgres(ctx, cfg.Database.DSN)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	return nil, fmt.Errorf("unknown database driver %q", cfg.Database.Driver)
}

// withStore opens the store for one CLI command.
func withStore(ctx context.Context, fn func(appStore) error) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

// auditCAEvent records a CA operation made from the CLI.
func auditCAEvent(ctx context.Context, cfg *Config, kind string, data map[string]any) error {
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.AppendAudit(ctx, newEvent(kind, cliActor(), "", data))
}

func newEvent(kind, actor, subject string, data map[string]any) audit.Event {
	b, _ := json.Marshal(data)
	return audit.Event{Time: time.Now().UTC(), Kind: kind, Actor: actor, Subject: subject, Data: b}
}

func init() {
	openAuditStore = func(ctx context.Context) (AuditStore, error) {
		cfg, err := loadConfig()
		if err != nil {
			return nil, err
		}
		return openStore(ctx, cfg)
	}
}

// errNotInitialised is the answer of every command that needs the exchange's data where there is none.
var errNotInitialised = errors.New("no Mohr data")

// requireInitialised refuses a data directory with neither a database nor a CA: a command run in the wrong
// directory (or without --data-dir) would otherwise create an empty ./mohr-data and answer from an empty
// registry ("enrolment code not recognised", "facility-unknown"). Only `mohr ca init` starts a data directory.
func requireInitialised(cfg *Config) error {
	if _, err := os.Stat(cfg.Database.DSN); err == nil {
		return nil
	}
	if _, err := os.Stat(cfg.CA.Cert); err == nil {
		return nil
	}
	how := "--data-dir " + cfg.dataDir
	if !dataDirGiven() {
		how = "no --data-dir or MOHR_DATA_DIR was given, so ./mohr-data was tried"
	}
	return fmt.Errorf("%w in %s (%s): run the command where the exchange's data is, with --data-dir DIR or MOHR_DATA_DIR=DIR; on a new exchange run `mohr ca init --dev` (or `mohr ca init --csr`) there first",
		errNotInitialised, cfg.dataDir, how)
}

// dataDirGiven says whether the data directory came from --data-dir or MOHR_DATA_DIR rather than the default.
func dataDirGiven() bool {
	if f := rootCmd.PersistentFlags().Lookup("data-dir"); f != nil && f.Changed {
		return true
	}
	return os.Getenv("MOHR_DATA_DIR") != ""
}
