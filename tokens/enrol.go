package tokens

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/ids"
)

// Enrolment codes look like "HIX-ABCDEFGH-<26 characters>": a public ID (40 bits) that finds the stored record
// and a secret (128 bits) of which only the SHA-256 is stored. The secret has full entropy, so a plain hash is
// enough; it is compared in constant time.
var codeEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

const codePrefix = "HIX-"

// NewEnrolmentCode creates a one-time enrolment code bound to siamID, valid for CodeTTL, for an RA officer to
// hand to the facility out of band. The facility must be eligible now. The code is returned once and never
// stored.
func (s *Service) NewEnrolmentCode(ctx context.Context, siamID, actor string) (code string, expires time.Time, err error) {
	now := s.now()
	f, err := CheckFacility(ctx, s.Store, siamID, now)
	if err != nil {
		return "", time.Time{}, err
	}
	r := s.Rand
	if r == nil {
		r = rand.Reader
	}
	var idb [5]byte
	var secret [16]byte
	if _, err := io.ReadFull(r, idb[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("tokens: random: %w", err)
	}
	if _, err := io.ReadFull(r, secret[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("tokens: random: %w", err)
	}
	ttl := s.CodeTTL
	if ttl <= 0 {
		ttl = 72 * time.Hour
	}
	id := codeEncoding.EncodeToString(idb[:])
	sec := codeEncoding.EncodeToString(secret[:])
	h := sha256.Sum256([]byte(sec))
	c := EnrolmentCode{ID: id, Hash: h[:], SIAMID: f.SIAMID, CreatedBy: actor, CreatedAt: now, ExpiresAt: now.Add(ttl).Truncate(time.Second)}
	ev := s.event("token.code.created", actor, f.SIAMID, map[string]any{"code_id": id, "expires": c.ExpiresAt})
	if err := s.Store.AddEnrolmentCode(ctx, c, ev); err != nil {
		return "", time.Time{}, fmt.Errorf("tokens: store enrolment code: %w", err)
	}
	return codePrefix + id + "-" + sec, c.ExpiresAt, nil
}

// splitCode normalises a code as a person may type it (case, spaces) and splits it.
func splitCode(code string) (id, secret string, ok bool) {
	c := strings.ToUpper(strings.Join(strings.Fields(code), ""))
	c = strings.TrimPrefix(c, codePrefix)
	id, secret, ok = strings.Cut(c, "-")
	if !ok || len(id) != 8 || len(secret) != 26 {
		return "", "", false
	}
	return id, secret, true
}

// redeemable looks up code and checks it is genuine, unused and unexpired at now.
func (s *Service) redeemable(ctx context.Context, code string, now time.Time) (EnrolmentCode, error) {
	id, secret, ok := splitCode(code)
	if !ok {
		return EnrolmentCode{}, ErrCodeUnknown
	}
	c, err := s.Store.EnrolmentCode(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return EnrolmentCode{}, ErrCodeUnknown
	}
	if err != nil {
		return EnrolmentCode{}, fmt.Errorf("tokens: enrolment code: %w", err)
	}
	h := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(h[:], c.Hash) != 1 {
		return EnrolmentCode{}, ErrCodeUnknown
	}
	if !c.UsedAt.IsZero() {
		return EnrolmentCode{}, ErrCodeUsed
	}
	if !now.Before(c.ExpiresAt) {
		return EnrolmentCode{}, ErrCodeExpired
	}
	return c, nil
}

// EnrolRequest is a facility's enrolment: the one-time code it was handed and a PKCS#10 CSR whose subject
// serialNumber is its SIAM ID. The key behind the CSR was generated on the facility's PKCS#11 device
// (KindPhysical) or in software (KindSoftware).
type EnrolRequest struct {
	Code  string
	CSR   *x509.CertificateRequest
	Kind  TokenKind
	Actor string
}

// Enrol redeems an enrolment code: it checks the code (ErrCodeUnknown, ErrCodeUsed, ErrCodeExpired), the CSR's
// signature (ErrBadCSR) and SIAM ID (ErrWrongSIAM), the facility's standing (ErrNotEligible), has the CA
// issue an adapter certificate and records the token and the code's use in one transaction. On any error
// before issuance the store is unchanged. If the code is redeemed concurrently between issuance and recording,
// the new certificate is revoked (superseded) and ErrCodeUsed returned.
func (s *Service) Enrol(ctx context.Context, req EnrolRequest) (*Issued, error) {
	now := s.now()
	c, err := s.redeemable(ctx, req.Code, now)
	if err != nil {
		return nil, err
	}
	if req.Kind != KindPhysical && req.Kind != KindSoftware {
		return nil, fmt.Errorf("%w: token kind %q", ErrInvalidInput, req.Kind)
	}
	if err := checkCSR(req.CSR, c.SIAMID); err != nil {
		return nil, err
	}
	f, err := CheckFacility(ctx, s.Store, c.SIAMID, now)
	if err != nil {
		return nil, err
	}
	cert, chain, err := s.issue(ctx, req.CSR, f, req.Actor)
	if err != nil {
		return nil, err
	}
	tok := tokenFor(cert, f, req.Kind, now)
	ev := s.event("token.enrolled", req.Actor, f.SIAMID, map[string]any{"serial": tok.Serial, "kind": tok.Kind, "code_id": c.ID, "not_after": tok.NotAfter})
	if err := s.Store.CompleteEnrolment(ctx, c.ID, now, tok, ev); err != nil {
		s.abandon(ctx, tok.Serial, req.Actor)
		if errors.Is(err, ErrCodeUsed) {
			return nil, ErrCodeUsed
		}
		return nil, fmt.Errorf("tokens: record enrolment: %w", err)
	}
	return &Issued{Cert: cert, Chain: chain, Token: tok}, nil
}

// Renew issues a new adapter certificate to the holder of current, a token recorded as active, from a CSR for
// the same SIAM ID (the adapter proved possession of current's key in the mTLS handshake that carried the
// request). The key may be the same (renewal) or new (rekey). The older token is marked superseded; its
// certificate stays valid until it expires so the adapter can switch without a gap.
func (s *Service) Renew(ctx context.Context, current *x509.Certificate, csr *x509.CertificateRequest, actor string) (*Issued, error) {
	now := s.now()
	old, err := s.Store.Token(ctx, serialHex(current))
	if err != nil {
		return nil, fmt.Errorf("tokens: renew: current certificate: %w", err)
	}
	if old.Status != TokenActive {
		return nil, fmt.Errorf("tokens: renew: current token is %s: %w", old.Status, ErrConflict)
	}
	if err := checkCSR(csr, old.SIAMID); err != nil {
		return nil, err
	}
	f, err := CheckFacility(ctx, s.Store, old.SIAMID, now)
	if err != nil {
		return nil, err
	}
	cert, chain, err := s.issue(ctx, csr, f, actor)
	if err != nil {
		return nil, err
	}
	tok := tokenFor(cert, f, old.Kind, now)
	ev := s.event("token.renewed", actor, f.SIAMID, map[string]any{"serial": tok.Serial, "previous": old.Serial, "not_after": tok.NotAfter})
	if err := s.Store.AddToken(ctx, tok, ev); err != nil {
		s.abandon(ctx, tok.Serial, actor)
		return nil, fmt.Errorf("tokens: record renewal: %w", err)
	}
	ev = s.event("token.superseded", actor, f.SIAMID, map[string]any{"serial": old.Serial, "by": tok.Serial})
	if err := s.Store.SetTokenStatus(ctx, old.Serial, TokenSuperseded, 0, now, ev); err != nil {
		return nil, fmt.Errorf("tokens: record renewal: %w", err)
	}
	return &Issued{Cert: cert, Chain: chain, Token: tok}, nil
}

// issue has the CA sign and checks what came back against the profile, revoking a certificate that does not
// match (a misbehaving issuer must not hand out a certificate that outlives the facility's standing).
func (s *Service) issue(ctx context.Context, csr *x509.CertificateRequest, f Facility, actor string) (*x509.Certificate, []*x509.Certificate, error) {
	cert, chain, err := s.Issuer.IssueAdapter(ctx, csr, f)
	if err != nil {
		return nil, nil, fmt.Errorf("tokens: issue: %w", err)
	}
	fx, err := hixext.ParseFacility(cert)
	switch {
	case err != nil:
	case fx.SIAMID != f.SIAMID || fx.LicenceNumber != f.LicenceNumber:
		err = errors.New("facility extension does not match the registry")
	case cert.NotAfter.After(f.NotAfterLimit()):
		err = errors.New("certificate outlives the licence or system certificate")
	case !bytes.Equal(cert.RawSubjectPublicKeyInfo, csr.RawSubjectPublicKeyInfo):
		err = errors.New("certificate key differs from the CSR's")
	}
	if err != nil {
		s.abandon(ctx, serialHex(cert), actor)
		return nil, nil, fmt.Errorf("tokens: issuer returned a non-conforming certificate: %w", err)
	}
	return cert, chain, nil
}

// abandon revokes a certificate that was issued but will not be handed out. A failure here leaves a
// certificate the CA's store knows about; it is reported by the CA's own audit, so it is not returned.
func (s *Service) abandon(ctx context.Context, serial, actor string) {
	if s.Revoker != nil {
		_ = s.Revoker.Revoke(ctx, serial, ReasonCodeSuperseded, actor)
	}
}

func tokenFor(cert *x509.Certificate, f Facility, kind TokenKind, now time.Time) Token {
	return Token{Serial: serialHex(cert), SIAMID: f.SIAMID, Kind: kind, Status: TokenActive,
		NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(), CreatedAt: now, UpdatedAt: now,
		LicenceNumber: f.LicenceNumber, SystemID: f.SystemID}
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// checkCSR verifies the CSR's self-signature (PKCS#10 proof of possession) and that its subject serialNumber
// names siamID.
func checkCSR(csr *x509.CertificateRequest, siamID string) error {
	if csr == nil {
		return fmt.Errorf("%w: missing", ErrBadCSR)
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("%w: signature does not verify", ErrBadCSR)
	}
	got, err := ids.SIAMID(csr.Subject.SerialNumber)
	if err != nil || got != siamID {
		return fmt.Errorf("%w: the CSR's subject serialNumber must be the SIAM ID the code was issued for", ErrWrongSIAM)
	}
	return nil
}
