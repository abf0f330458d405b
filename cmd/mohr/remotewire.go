package main

import (
	"context"
	"crypto/x509"
	"database/sql"
	"fmt"

	"github.com/mohr-hix/mohr/api"
	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/hsm"
	"github.com/mohr-hix/mohr/signing/remote"
)

// remoteSigningConfig is the `remote_signing` section: remote signing for physicians (docs/remote-signing.md).
// An empty key_token leaves it off (the /csc/v2/ routes answer 501).
type remoteSigningConfig struct {
	// KeyToken is the pkcs11: URI of the HSM token for the physicians' keys, without object=, e.g.
	// "pkcs11:token=MohrRemote?pin-source=file:/etc/mohr/remote.pin".
	KeyToken string `yaml:"key_token"`
	// RPID and RPOrigins are the WebAuthn relying party: the domain passkeys are bound to and the origins
	// of the pages that run the ceremonies.
	RPID      string   `yaml:"rp_id"`
	RPOrigins []string `yaml:"rp_origins"`
	// MaxHashes is the comfort limit: most documents one activation covers (default 100).
	MaxHashes int `yaml:"max_hashes"`
	// IDCardIssuers is a PEM file of the national ID card issuers' CA certificates: the exchange checks the
	// card of an enrolment and of the card activation factor against them (empty: the card factor is refused).
	IDCardIssuers string `yaml:"id_card_issuers"`
}

// wireRemote builds the remote signing service when it is configured: its own tables in the node's
// database (events written into the audit log in the same transaction), the physicians' keys on the
// configured token, certificates from this node's CA with the remote-signing policy.
func (n *node) wireRemote(ctx context.Context) (api.RemoteSigning, error) {
	rc := n.cfg.RemoteSigning
	if rc.KeyToken == "" {
		return nil, nil
	}
	driver, dsn, dialect := "sqlite", n.cfg.Database.DSN, "sqlite"
	if n.cfg.Database.Driver == "postgres" {
		driver, dialect = "pgx", "postgres"
	} else {
		dsn = "file:" + dsn + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	if driver == "sqlite" {
		db.SetMaxOpenConns(1)
	}
	n.closers = append(n.closers, db.Close)
	st, err := remote.NewSQLStore(ctx, db, remote.SQLOptions{Dialect: dialect, AppendAudit: n.st.AppendAuditTx})
	if err != nil {
		return nil, fmt.Errorf("remote signing store: %w", err)
	}
	var cardIssuers []*x509.Certificate
	if rc.IDCardIssuers != "" {
		if cardIssuers, err = readCerts(rc.IDCardIssuers); err != nil || len(cardIssuers) == 0 {
			return nil, fmt.Errorf("remote_signing.id_card_issuers %s holds no PEM certificate (%v)", rc.IDCardIssuers, pathErrOrNil(err))
		}
	}
	op := hsm.NewOpener(n.cfg.HSM.Module)
	n.closers = append(n.closers, op.Close)
	svc, err := remote.New(remote.Config{
		Store: st, Keys: op, KeyToken: rc.KeyToken, RPID: rc.RPID, RPOrigins: rc.RPOrigins, MaxHashes: rc.MaxHashes, CardIssuers: cardIssuers,
		Now: n.cfg.clock(),
		// Enrolment's registry check: the council number must be this national code's, in good standing now.
		CheckRegistry: func(ctx context.Context, nationalCode, councilNumber string) error {
			_, err := registryRA{n.ts}.PhysicianStanding(ctx, nationalCode, councilNumber, n.cfg.clock()())
			return err
		},
		Issue: func(ctx context.Context, r remote.IssueRequest) ([]*x509.Certificate, error) {
			cert, err := n.ca.Issue(ctx, ca.Request{Profile: ca.ProfilePhysicianSigning, RemoteSigning: true, CSR: r.CSR,
				CommonName: r.Name, NationalCode: r.NationalCode, CouncilNumber: r.CouncilNumber, Actor: r.Actor})
			if err != nil {
				return nil, err
			}
			chain := n.ca.Issuer().Chain
			if len(chain) > 1 {
				chain = chain[:len(chain)-1] // never the root
			}
			return append([]*x509.Certificate{cert}, chain...), nil
		},
		Revoke: func(ctx context.Context, cert *x509.Certificate, reason int, actor string) error {
			_, err := certService{ca: n.ca, st: n.st, rev: n.rev}.Revoke(ctx, cert.SerialNumber.Text(16), reason, actor)
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	n.remote = svc
	return svc, nil
}

// remoteAPI returns svc as the API's interface, or a nil interface when remote signing is off (a nil
// *remote.Service in the interface would not read as "not configured").
func remoteAPI(svc *remote.Service) api.RemoteSigning {
	if svc == nil {
		return nil
	}
	return svc
}
