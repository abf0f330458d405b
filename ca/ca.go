// Package ca is the health intermediate CA: the issuance pipeline, certificate profiles and the checks a
// registration authority makes before a certificate is signed. It takes its key as a crypto.Signer and never
// knows whether that is a file key or an HSM key.
//
// Issuance follows Boulder's sequence (docs/ISSUANCE-CYCLE.md there): validate -> reserve serial -> build the
// TBS -> lint it (with a placeholder signature, sign.go) -> persist the intent and its audit event -> sign with the CA key ->
// check that the signed TBS is the linted one -> persist the certificate and its audit event -> return. A crash
// anywhere leaves no certificate the store and the audit log do not know about: the intent (with the TBS hash)
// is recorded before the CA key is used, and a certificate is handed out only after it is recorded as issued.
package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/keys"
)

// RA is the registration authority's view of a subject's standing. Implementations look the subject up in the
// facility and council registries and return the end of its standing, or an error wrapping ErrNotEligible.
type RA interface {
	FacilityStanding(ctx context.Context, siamID, licence string, at time.Time) (validUntil time.Time, err error)
	PhysicianStanding(ctx context.Context, nationalCode, councilNo string, at time.Time) (validUntil time.Time, err error)
}

// Options configure a CA beyond its issuer, store and config.
type Options struct {
	// RA, when set, is consulted for facility and physician profiles; its answer caps the certificate's
	// lifetime. Production sets it; the development CLI may leave it nil and pass ValidUntil itself.
	RA RA
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the source of serials and throwaway keys; nil means crypto/rand.
	Rand io.Reader
	// BlockedKeys holds SHA-256 hashes of SubjectPublicKeyInfos that must never be certified.
	BlockedKeys map[[32]byte]bool
	// IssuerUsable, when set, is asked before every issuance whether the issuer's key may still sign
	// certificates; an error (for example: the key was superseded by a key rollover or retired, a state the
	// nodes share in the database) stops the issuance before a serial is reserved or anything is signed.
	IssuerUsable func(ctx context.Context) error
}

// CA issues certificates under one issuer.
type CA struct {
	issuer *Issuer
	store  Store
	cfg    Config
	opt    Options

	// lintSig is a signature made once by a throwaway key of the issuer's key type: the lint copy of a
	// certificate (its TBS, which the CA key then signs byte for byte) carries it (sign.go).
	lintSig []byte

	regMu sync.Mutex
	regs  map[string]*linter

	// suspended, when set, holds why issuance stopped (the intermediate was revoked or is being replaced).
	suspended atomic.Pointer[string]
}

// ErrSuspended is returned by Issue after Suspend.
var ErrSuspended = errors.New("ca: issuance suspended")

// Suspend stops all further issuance, e.g. once the intermediate is being revoked. It cannot be undone in the
// running process: a new intermediate means a new CA.
func (c *CA) Suspend(reason string) { c.suspended.Store(&reason) }

// New returns a CA. It checks that the issuer's key matches its certificate and that cfg is valid.
func New(is *Issuer, st Store, cfg Config, opt Options) (*CA, error) {
	if is == nil || is.Cert == nil || is.Signer == nil || st == nil {
		return nil, errors.New("ca: New needs an issuer certificate, its key and a store")
	}
	if len(is.Chain) == 0 {
		is.Chain = []*x509.Certificate{is.Cert}
	}
	if err := keys.MatchesCertificate(is.Signer, is.Cert); err != nil {
		return nil, fmt.Errorf("ca: issuer key: %w", err)
	}
	if !is.Cert.IsCA || is.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("ca: issuer certificate is not a CA certificate with keyCertSign")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Rand == nil {
		opt.Rand = rand.Reader
	}
	c := &CA{issuer: is, store: st, cfg: cfg, opt: opt, regs: map[string]*linter{}}
	throwaway, err := throwawayKey(is.Signer.Public())
	if err != nil {
		return nil, err
	}
	if c.lintSig, err = lintSignature(throwaway); err != nil {
		return nil, fmt.Errorf("ca: lint signature: %w", err)
	}
	return c, nil
}

// Issuer returns the CA's issuer.
func (c *CA) Issuer() *Issuer { return c.issuer }

// Config returns the CA's configuration.
func (c *CA) Config() Config { return c.cfg }

func throwawayKey(pub crypto.PublicKey) (crypto.Signer, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.GenerateKey(k.Curve, rand.Reader)
	case *rsa.PublicKey:
		return rsa.GenerateKey(rand.Reader, k.N.BitLen())
	case ed25519.PublicKey:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("ca: unsupported issuer key type %T", pub)
}

func (c *CA) registry(profile string) (*linter, error) {
	c.regMu.Lock()
	defer c.regMu.Unlock()
	if r, ok := c.regs[profile]; ok {
		return r, nil
	}
	r, err := lintRegistry(profile)
	if err != nil {
		return nil, fmt.Errorf("ca: lint registry: %w", err)
	}
	l := newLinter(r)
	c.regs[profile] = l
	return l, nil
}

// maxSerialTries bounds retries when a random serial collides (which for 127-bit serials means a broken RNG).
const maxSerialTries = 3

// Issue runs the issuance pipeline for r and returns the signed certificate.
func (c *CA) Issue(ctx context.Context, r Request) (*x509.Certificate, error) {
	cert, _, err := c.IssueRecord(ctx, r)
	return cert, err
}

// IssueRecord is Issue, also returning the certificate's record as the store now holds it (status issued, the
// DER; CreatedAt, UpdatedAt and revocation fields unset), so that a caller need not read it back.
func (c *CA) IssueRecord(ctx context.Context, r Request) (*x509.Certificate, CertRecord, error) {
	if why := c.suspended.Load(); why != nil {
		return nil, CertRecord{}, fmt.Errorf("%w: %s", ErrSuspended, *why)
	}
	if c.opt.IssuerUsable != nil {
		if err := c.opt.IssuerUsable(ctx); err != nil {
			return nil, CertRecord{}, fmt.Errorf("%w: %w", ErrSuspended, err)
		}
	}
	// 1. Validate the request, the key and the subject's standing.
	r, err := c.normalize(r)
	if err != nil {
		return nil, CertRecord{}, err
	}
	if err := CheckKey(r.CSR.PublicKey, c.opt.BlockedKeys); err != nil {
		return nil, CertRecord{}, err
	}
	if err := c.checkKeyPurpose(ctx, r); err != nil {
		return nil, CertRecord{}, err
	}
	now := c.opt.Now()
	if err := c.checkStanding(ctx, &r, now); err != nil {
		return nil, CertRecord{}, err
	}
	reg, err := c.registry(r.Profile)
	if err != nil {
		return nil, CertRecord{}, err
	}
	for try := 0; ; try++ {
		// 2. Reserve a random serial: 16 bytes from the RNG with the top bit cleared, so at least 64 bits
		// of entropy (CA/B BR §7.1) and a positive INTEGER of at most 16 octets.
		serial, err := c.randomSerial()
		if err != nil {
			return nil, CertRecord{}, err
		}
		// 3. Build the TBS.
		tmpl, err := c.template(r, serial, now)
		if err != nil {
			return nil, CertRecord{}, err
		}
		tbs, err := c.buildTBS(tmpl, r.CSR.PublicKey)
		if err != nil {
			return nil, CertRecord{}, err
		}
		// 4. Lint it (with a placeholder signature: sign.go).
		lintDERBytes, err := c.lintCopy(tbs)
		if err != nil {
			return nil, CertRecord{}, err
		}
		lintCert, err := x509.ParseCertificate(lintDERBytes)
		if err != nil {
			return nil, CertRecord{}, fmt.Errorf("ca: parse lint certificate: %w", err)
		}
		if err := reg.lint(lintDERBytes); err != nil {
			return nil, CertRecord{}, err
		}
		tbsHash := sha256.Sum256(lintCert.RawTBSCertificate)
		rec := CertRecord{
			Serial:    SerialHex(serial),
			Profile:   r.Profile,
			Subject:   lintCert.Subject.String(),
			Subject2:  bindingOf(r),
			NotBefore: tmpl.NotBefore,
			NotAfter:  tmpl.NotAfter,
			TBSHash:   tbsHash[:],
			Status:    StatusPending,
			Shard:     ShardFor(serial, c.cfg.CRLShards),
		}
		// 5-6. Persist the intent and its audit event, in one transaction.
		ev := c.event(now, "cert.intent", r.Actor, rec.Serial, map[string]any{
			"profile": r.Profile, "subject": rec.Subject, "binding": rec.Subject2,
			"not_after": rec.NotAfter, "tbs_sha256": hex.EncodeToString(tbsHash[:]),
		})
		if err := c.store.AddPending(ctx, rec, ev); err != nil {
			if errors.Is(err, ErrDuplicateSerial) && try < maxSerialTries {
				continue
			}
			return nil, CertRecord{}, err
		}
		// 7. Sign the linted TBS with the CA key, and check the signature.
		cert, der, err := c.signTBS(tbs, lintCert)
		// 8. The signed TBS must be the linted TBS.
		if err == nil && !bytes.Equal(cert.RawTBSCertificate, lintCert.RawTBSCertificate) {
			err = errors.New("ca: signed TBS differs from the linted TBS")
		}
		if err != nil {
			fev := c.event(c.opt.Now(), "cert.failed", r.Actor, rec.Serial, map[string]any{"stage": "sign"})
			if ferr := c.store.MarkFailed(context.WithoutCancel(ctx), rec.Serial, fev); ferr != nil {
				return nil, CertRecord{}, fmt.Errorf("ca: signing failed (%v) and the intent could not be closed: %w", err, ferr)
			}
			return nil, CertRecord{}, fmt.Errorf("ca: sign: %w", err)
		}
		// 9. Persist the certificate and its audit event. Cancellation no longer applies: the key has signed.
		iev := c.event(c.opt.Now(), "cert.issued", r.Actor, rec.Serial, map[string]any{
			"profile": r.Profile, "sha256": hex.EncodeToString(sha256sum(der)),
		})
		if err := c.store.MarkIssued(context.WithoutCancel(ctx), rec.Serial, der, iev); err != nil {
			return nil, CertRecord{}, err
		}
		rec.DER, rec.Status = der, StatusIssued
		return cert, rec, nil
	}
}

func sha256sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func (c *CA) randomSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := io.ReadFull(c.opt.Rand, b[:]); err != nil {
			return nil, fmt.Errorf("ca: serial: %w", err)
		}
		b[0] &= 0x7f
		s := new(big.Int).SetBytes(b[:])
		if s.BitLen() > 64 {
			return s, nil
		}
	}
}

func (c *CA) checkStanding(ctx context.Context, r *Request, now time.Time) error {
	if c.opt.RA == nil {
		return nil
	}
	var until time.Time
	var err error
	switch r.Profile {
	case ProfileFacilityAdapter:
		until, err = c.opt.RA.FacilityStanding(ctx, r.SIAMID, r.LicenceNumber, now)
	case ProfilePhysicianSigning, ProfilePhysicianAuth:
		until, err = c.opt.RA.PhysicianStanding(ctx, r.NationalCode, r.CouncilNumber, now)
	default:
		return nil
	}
	if err != nil {
		if errors.Is(err, ErrNotEligible) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrNotEligible, err)
	}
	if r.ValidUntil.IsZero() || until.Before(r.ValidUntil) {
		r.ValidUntil = until
	}
	return nil
}

func (c *CA) event(t time.Time, kind, actor, subject string, data map[string]any) audit.Event {
	if actor == "" {
		actor = "system"
	}
	b, _ := json.Marshal(data)
	return audit.Event{Time: t.UTC(), Kind: kind, Actor: actor, Subject: subject, Data: b}
}

// AuditEvent builds an audit event with the CA's clock, for operations outside Issue (CA start, import).
func (c *CA) AuditEvent(kind, actor, subject string, data map[string]any) audit.Event {
	return c.event(c.opt.Now(), kind, actor, subject, data)
}
