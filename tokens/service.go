package tokens

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

// CertIssuer issues facility-adapter certificates. Package ca implements it: the certificate has extended key
// usage clientAuth, the SIAM ID and licence number in the subject serialNumber and in the facility extension
// (internal/hixext), and a NotAfter no later than f.NotAfterLimit() (the licence's and the system certificate's
// expiry). The chain starts with the issuing intermediate.
type CertIssuer interface {
	IssueAdapter(ctx context.Context, csr *x509.CertificateRequest, f Facility) (*x509.Certificate, []*x509.Certificate, error)
}

// Revoker changes the revocation state of certificates at the CA. reason is an RFC 5280 §5.3.1 CRLReason.
// Hold is reason certificateHold (6), the only reversible one; Release takes a certificate off hold.
type Revoker interface {
	Revoke(ctx context.Context, serial string, reason int, actor string) error
	Hold(ctx context.Context, serial string, actor string) error
	Release(ctx context.Context, serial string, actor string) error
}

// RFC 5280 §5.3.1 CRLReason codes used by tokens.
const (
	ReasonCodeUnspecified          = 0
	ReasonCodeKeyCompromise        = 1
	ReasonCodeAffiliationChanged   = 3
	ReasonCodeSuperseded           = 4
	ReasonCodeCessationOfOperation = 5
	ReasonCodeCertificateHold      = 6
)

// Service is the RA side of adapter tokens: it hands out enrolment codes, enrols facilities, renews and revokes
// their tokens and keeps them in line with the registries.
type Service struct {
	Store   Store
	Issuer  CertIssuer
	Revoker Revoker
	// Clock returns the current time; nil means time.Now. Every decision uses Clock().UTC().
	Clock func() time.Time
	// Rand is the source of enrolment code secrets; nil means crypto/rand.
	Rand io.Reader
	// CodeTTL is how long an enrolment code stays valid; zero means 72 hours.
	CodeTTL time.Duration
}

func (s *Service) now() time.Time {
	if s.Clock != nil {
		return s.Clock().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) event(kind, actor, subject string, data any) audit.Event {
	return audit.Event{Time: s.now(), Kind: kind, Actor: actor, Subject: subject, Data: eventData(data)}
}

// Issued is the result of an enrolment or a renewal.
type Issued struct {
	Cert  *x509.Certificate
	Chain []*x509.Certificate // intermediate first
	Token Token
}

// ImportFacilities stores facilities, all or none, with one audit event.
func (s *Service) ImportFacilities(ctx context.Context, fs []Facility, actor string) error {
	if err := s.Store.PutFacilities(ctx, fs, s.event("registry.facilities.imported", actor, "", map[string]int{"count": len(fs)})); err != nil {
		return fmt.Errorf("tokens: import facilities: %w", err)
	}
	return nil
}

// ImportPhysicians stores physicians, all or none, with one audit event.
func (s *Service) ImportPhysicians(ctx context.Context, ps []Physician, actor string) error {
	if err := s.Store.PutPhysicians(ctx, ps, s.event("registry.physicians.imported", actor, "", map[string]int{"count": len(ps)})); err != nil {
		return fmt.Errorf("tokens: import physicians: %w", err)
	}
	return nil
}

// Tokens lists the tokens of siamID ("" for all).
func (s *Service) Tokens(ctx context.Context, siamID string) ([]Token, error) {
	ts, err := s.Store.Tokens(ctx, siamID)
	if err != nil {
		return nil, fmt.Errorf("tokens: list: %w", err)
	}
	return ts, nil
}

// Revoke revokes a token's certificate at the CA with an RFC 5280 reason and records it.
func (s *Service) Revoke(ctx context.Context, serial string, reason int, actor string) error {
	tok, err := s.Store.Token(ctx, serial)
	if err != nil {
		return err
	}
	if reason < 0 || reason > 10 || reason == 7 || reason == 8 || reason == ReasonCodeCertificateHold {
		return fmt.Errorf("%w: revocation reason %d (certificateHold and removeFromCRL go through the sync)", ErrInvalidInput, reason)
	}
	if err := s.Revoker.Revoke(ctx, tok.Serial, reason, actor); err != nil {
		return fmt.Errorf("tokens: revoke %s: %w", tok.Serial, err)
	}
	ev := s.event("token.revoked", actor, tok.SIAMID, map[string]any{"serial": tok.Serial, "reason": reason})
	return s.Store.SetTokenStatus(ctx, tok.Serial, TokenRevoked, reason, s.now(), ev)
}
