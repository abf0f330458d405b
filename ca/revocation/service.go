package revocation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// Audit event kinds written by Service, in the same store transaction as the change.
const (
	EventRevoked  = "cert.revoked"
	EventHeld     = "cert.held"
	EventReleased = "cert.released"
)

// CRLTrigger is what Service needs from a CRL publisher: a request to regenerate one shard soon.
// *CRLPublisher implements it.
type CRLTrigger interface {
	Trigger(shard int)
}

// OCSPUpdater is what Service needs from an OCSP responder: re-sign the cached responses of one serial
// from the store's current record. *Responder implements it.
type OCSPUpdater interface {
	Update(ctx context.Context, serial string) error
}

// Service revokes, holds and releases certificates. It checks the reason and the certificate's state,
// records the change with its audit event through the store, and then asks the OCSP responder to re-sign
// the certificate's responses and the CRL publisher to regenerate its shard. Authorisation (operators
// for any certificate, a facility for its own tokens) is the caller's job: Service trusts Actor.
type Service struct {
	Store ca.Store
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// CRL and OCSP are told about each change; either may be nil.
	CRL  CRLTrigger
	OCSP OCSPUpdater
}

// Result describes what a Revoke, Hold or Release did.
type Result struct {
	Serial    string
	Changed   bool      // false when the certificate was already in the requested state (idempotent call)
	Status    ca.Status // the status after the call
	Reason    Reason    // the revocation reason after the call, when Status is revoked or hold
	RevokedAt time.Time // when Status is revoked or hold
	Shard     int
}

type eventData struct {
	Reason     int       `json:"reason"`
	ReasonName string    `json:"reasonName"`
	RevokedAt  time.Time `json:"revokedAt,omitzero"`
	Previous   ca.Status `json:"previousStatus"`
	Shard      int       `json:"shard"`
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// NormalizeSerial turns a serial as an operator types it (hex, any case, with or without "0x" or colons)
// into the store's canonical form (ca.SerialHex).
func NormalizeSerial(serial string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(serial))
	s = strings.TrimPrefix(s, "0x")
	s = strings.ReplaceAll(s, ":", "")
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || s == "" || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") || n.Sign() <= 0 {
		return "", fmt.Errorf("%w: %q", ErrBadSerial, serial)
	}
	return ca.SerialHex(n), nil
}

// Revoke revokes serial for good with reason (RFC 5280 §5.3.1), on behalf of actor (an audit.Event Actor
// such as "cli:root" or "api:operator:<serial>"). A certificate on hold may be revoked for good with any
// allowed reason. Revoking again with the same reason changes nothing and returns Changed false; with
// another reason it returns ErrAlreadyRevoked. Pending and failed serials give ErrNotIssued.
func (s *Service) Revoke(ctx context.Context, serial string, reason Reason, actor string) (Result, error) {
	if err := CheckRevocationReason(reason); err != nil {
		return Result{}, err
	}
	return s.revoke(ctx, serial, reason, actor)
}

// Hold suspends serial with reason certificateHold (RFC 5280 §5.3.1), e.g. for a physician's lost card;
// Release undoes it. Holding a held certificate is a no-op; holding a revoked one is ErrAlreadyRevoked.
func (s *Service) Hold(ctx context.Context, serial string, actor string) (Result, error) {
	return s.revoke(ctx, serial, CertificateHold, actor)
}

func (s *Service) revoke(ctx context.Context, serial string, reason Reason, actor string) (Result, error) {
	if actor == "" {
		return Result{}, ErrNoActor
	}
	rec, err := s.load(ctx, serial)
	if err != nil {
		return Result{}, err
	}
	switch rec.Status {
	case ca.StatusIssued:
	case ca.StatusHeld:
		if reason == CertificateHold {
			return resultOf(rec, false), nil
		}
	case ca.StatusRevoked:
		if Reason(rec.RevocationReason) == reason {
			return resultOf(rec, false), nil
		}
		return Result{}, fmt.Errorf("%w: %s is revoked with %v", ErrAlreadyRevoked, rec.Serial, Reason(rec.RevocationReason))
	default:
		return Result{}, fmt.Errorf("%w: %s is %s", ErrNotIssued, rec.Serial, rec.Status)
	}

	// CRL and OCSP times are GeneralizedTime to the second (RFC 5280 §4.1.2.5.2); store what we publish.
	at := s.now().UTC().Truncate(time.Second)
	kind := EventRevoked
	if reason == CertificateHold {
		kind = EventHeld
	}
	ev, err := event(kind, actor, rec, at, eventData{
		Reason: int(reason), ReasonName: reason.String(), RevokedAt: at, Previous: rec.Status, Shard: rec.Shard,
	})
	if err != nil {
		return Result{}, err
	}
	changed, err := s.Store.Revoke(ctx, rec.Serial, int(reason), at, ev)
	if err != nil {
		if errors.Is(err, ca.ErrConflict) {
			return Result{}, fmt.Errorf("%w: %s: %w", ErrAlreadyRevoked, rec.Serial, err)
		}
		return Result{}, fmt.Errorf("revocation: revoke %s: %w", rec.Serial, err)
	}
	res := Result{Serial: rec.Serial, Changed: changed, Status: ca.StatusRevoked, Reason: reason, RevokedAt: at, Shard: rec.Shard}
	if reason == CertificateHold {
		res.Status = ca.StatusHeld
	}
	if !changed {
		// Someone else won the race; report what the store holds now.
		if cur, err := s.Store.Certificate(ctx, rec.Serial); err == nil {
			res = resultOf(cur, false)
		}
		return res, nil
	}
	return res, s.propagate(ctx, rec)
}

// Release takes serial off hold (back to good). RFC 5280 §5.3.1: the entry simply disappears from the
// next full CRL of its shard, and OCSP answers good again. Releasing a certificate that is not on hold
// but valid is a no-op; releasing a revoked one is ErrNotOnHold.
func (s *Service) Release(ctx context.Context, serial string, actor string) (Result, error) {
	if actor == "" {
		return Result{}, ErrNoActor
	}
	rec, err := s.load(ctx, serial)
	if err != nil {
		return Result{}, err
	}
	switch rec.Status {
	case ca.StatusHeld:
	case ca.StatusIssued:
		return resultOf(rec, false), nil
	case ca.StatusRevoked:
		return Result{}, fmt.Errorf("%w: %s is revoked with %v", ErrNotOnHold, rec.Serial, Reason(rec.RevocationReason))
	default:
		return Result{}, fmt.Errorf("%w: %s is %s", ErrNotIssued, rec.Serial, rec.Status)
	}
	at := s.now().UTC().Truncate(time.Second)
	ev, err := event(EventReleased, actor, rec, at, eventData{
		Reason: int(CertificateHold), ReasonName: CertificateHold.String(), RevokedAt: rec.RevokedAt, Previous: rec.Status, Shard: rec.Shard,
	})
	if err != nil {
		return Result{}, err
	}
	if err := s.Store.Release(ctx, rec.Serial, ev); err != nil {
		if errors.Is(err, ca.ErrConflict) {
			// A concurrent release or revocation; report the state it left.
			cur, gerr := s.Store.Certificate(ctx, rec.Serial)
			if gerr == nil && cur.Status == ca.StatusIssued {
				return resultOf(cur, false), nil
			}
			return Result{}, fmt.Errorf("%w: %s: %w", ErrNotOnHold, rec.Serial, err)
		}
		return Result{}, fmt.Errorf("revocation: release %s: %w", rec.Serial, err)
	}
	return Result{Serial: rec.Serial, Changed: true, Status: ca.StatusIssued, Shard: rec.Shard}, s.propagate(ctx, rec)
}

func (s *Service) load(ctx context.Context, serial string) (ca.CertRecord, error) {
	if err := ctx.Err(); err != nil {
		return ca.CertRecord{}, err
	}
	key, err := NormalizeSerial(serial)
	if err != nil {
		return ca.CertRecord{}, err
	}
	rec, err := s.Store.Certificate(ctx, key)
	if errors.Is(err, ca.ErrNotFound) {
		return ca.CertRecord{}, fmt.Errorf("%w: %s", ErrUnknownSerial, key)
	}
	if err != nil {
		return ca.CertRecord{}, fmt.Errorf("revocation: look up %s: %w", key, err)
	}
	return rec, nil
}

// Propagate tells the CRL publisher and the OCSP responder of this process about a change to serial that
// another process recorded (for instance `mohr cert revoke` writing to the store while `mohr serve` runs):
// the server calls it for each cert.revoked, cert.held and cert.released audit event it reads. Without it
// the responder still notices at its next Refresh (ResponderConfig.Interval) and the CRL at its next
// regeneration.
func (s *Service) Propagate(ctx context.Context, serial string) error {
	rec, err := s.load(ctx, serial)
	if err != nil {
		return err
	}
	return s.propagate(ctx, rec)
}

// propagate tells the CRL publisher and the OCSP responder. The CRL trigger is asynchronous (the
// publisher coalesces revocations per shard); the OCSP update is synchronous because a cached "good"
// response for a revoked certificate must not outlive the call.
func (s *Service) propagate(ctx context.Context, rec ca.CertRecord) error {
	if s.CRL != nil {
		s.CRL.Trigger(rec.Shard)
	}
	if s.OCSP != nil {
		if err := s.OCSP.Update(ctx, rec.Serial); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrRefresh, rec.Serial, err)
		}
	}
	return nil
}

func event(kind, actor string, rec ca.CertRecord, at time.Time, d eventData) (audit.Event, error) {
	data, err := json.Marshal(d)
	if err != nil {
		return audit.Event{}, fmt.Errorf("revocation: audit data: %w", err)
	}
	return audit.Event{Time: at, Kind: kind, Actor: actor, Subject: rec.Serial, Data: data}, nil
}

func resultOf(rec ca.CertRecord, changed bool) Result {
	r := Result{Serial: rec.Serial, Changed: changed, Status: rec.Status, Shard: rec.Shard}
	if rec.Status == ca.StatusRevoked || rec.Status == ca.StatusHeld {
		r.Reason = Reason(rec.RevocationReason)
		r.RevokedAt = rec.RevokedAt
	}
	return r
}

var (
	_ CRLTrigger  = (*CRLPublisher)(nil)
	_ OCSPUpdater = (*Responder)(nil)
)
