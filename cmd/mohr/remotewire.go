package main

import (
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"fmt"
	"os"
	"sync"

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
	// IDCardCRLs are files (DER or PEM) of the national ID card issuers' CRLs, replaced in place as the issuers
	// publish (re-read when a file changes). Set, a card certificate must be covered by a current CRL of its
	// issuer that does not list it; empty, card revocation is not checked.
	IDCardCRLs []string `yaml:"id_card_crls"`
}

// crlFiles serves the CRLs in files, parsed again only when a file's size or modification time changes.
type crlFiles struct {
	paths []string
	mu    sync.Mutex
	seen  map[string]string // path -> size/mtime key
	crls  map[string]*x509.RevocationList
}

func (c *crlFiles) load(context.Context) ([]*x509.RevocationList, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen, c.crls = map[string]string{}, map[string]*x509.RevocationList{}
	}
	out := make([]*x509.RevocationList, 0, len(c.paths))
	for _, p := range c.paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("id_card_crls: %w", err)
		}
		key := fmt.Sprintf("%d/%d", fi.Size(), fi.ModTime().UnixNano())
		if c.seen[p] != key {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("id_card_crls: %w", err)
			}
			if blk, _ := pem.Decode(b); blk != nil {
				b = blk.Bytes
			}
			crl, err := x509.ParseRevocationList(b)
			if err != nil {
				return nil, fmt.Errorf("id_card_crls: %s: %w", p, err)
			}
			c.seen[p], c.crls[p] = key, crl
		}
		out = append(out, c.crls[p])
	}
	return out, nil
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
	var cardCRLs func(context.Context) ([]*x509.RevocationList, error)
	if len(rc.IDCardCRLs) > 0 {
		files := &crlFiles{paths: rc.IDCardCRLs}
		if _, err := files.load(ctx); err != nil {
			return nil, fmt.Errorf("remote_signing: %w", err)
		}
		cardCRLs = files.load
	}
	op := hsm.NewOpener(n.cfg.HSM.Module)
	n.closers = append(n.closers, op.Close)
	svc, err := remote.New(remote.Config{
		Store: st, Keys: op, KeyToken: rc.KeyToken, RPID: rc.RPID, RPOrigins: rc.RPOrigins, MaxHashes: rc.MaxHashes, CardIssuers: cardIssuers,
		CardCRLs: cardCRLs,
		Now:      n.cfg.clock(),
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
