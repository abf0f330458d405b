package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Lapse policy (docs/tokens.md). When a facility's standing lapses, the certificates issued on it stop working:
//
//   - A temporary lapse (licence or system certificate suspended, or outside its validity) puts them on hold,
//     RFC 5280 §5.3.1 certificateHold (6). Hold is the one reversible reason: when the registry shows the
//     facility in good standing again, the sync releases them.
//   - The licence revoked, or the facility gone from the registry: revoked with cessationOfOperation (5),
//     "the certificate is no longer needed for the purpose for which it was issued".
//   - The system certificate revoked, or the licence number or system ID changed from what the certificate
//     binds: revoked with affiliationChanged (3), "the subject's name or other information in the
//     certificate has been modified"; the facility enrols again for a certificate with the new facts.
//
// Revocations are final; a facility that regains standing after one enrols again with a new code. A token
// already superseded by a renewal is revoked (superseded, 4) rather than held.

// Action is what the sync did to one token.
type Action struct {
	Serial string
	SIAMID string
	Did    string // "hold", "release", "revoke"
	Reason Reason // why; empty for release
	Code   int    // RFC 5280 CRLReason
	Err    error  // nil if done
}

// SyncReport summarises one pass.
type SyncReport struct {
	Checked int
	Updated int // registry entries refreshed from the source
	Actions []Action
}

// lapse decides the action for a facility's tokens: "", "hold" or "revoke" with a CRLReason.
func lapse(f Facility, tok Token, gone bool, at time.Time) (did string, why Reason, code int) {
	if gone {
		return "revoke", ReasonUnknownFacility, ReasonCodeCessationOfOperation
	}
	if f.LicenceStatus == StatusRevoked {
		return "revoke", ReasonLicenceRevoked, ReasonCodeCessationOfOperation
	}
	if f.SystemStatus == StatusRevoked {
		return "revoke", ReasonSystemNotActive, ReasonCodeAffiliationChanged
	}
	if tok.LicenceNumber != f.LicenceNumber || tok.SystemID != f.SystemID {
		return "revoke", "binding-changed", ReasonCodeAffiliationChanged
	}
	if r := facilityReason(f, at); r != "" {
		return "hold", r, ReasonCodeCertificateHold
	}
	return "", "", 0
}

// Sync re-checks every registered facility's standing, refreshing its entry from src first when src is not
// nil, and holds, revokes or releases the certificates issued on it according to the lapse policy. Each change
// goes to the CA (Revoker) first and is then recorded with an audit event saying why. Errors on one token are
// reported in its Action and do not stop the pass; a registry or store error does.
func (s *Service) Sync(ctx context.Context, src FacilityRegistry, actor string) (SyncReport, error) {
	var rep SyncReport
	fs, err := s.Store.Facilities(ctx)
	if err != nil {
		return rep, fmt.Errorf("tokens: sync: %w", err)
	}
	for _, f := range fs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Checked++
		gone := false
		if src != nil {
			fresh, err := src.Facility(ctx, f.SIAMID)
			switch {
			case errors.Is(err, ErrNotFound):
				gone = true
			case err != nil:
				return rep, fmt.Errorf("tokens: sync: registry: %w", err)
			case fresh != f:
				ev := s.event("registry.facility.updated", actor, f.SIAMID, map[string]any{
					"licence_status": fresh.LicenceStatus, "system_status": fresh.SystemStatus})
				if err := s.Store.PutFacilities(ctx, []Facility{fresh}, ev); err != nil {
					return rep, fmt.Errorf("tokens: sync: %w", err)
				}
				rep.Updated++
				f = fresh
			}
		}
		toks, err := s.Store.Tokens(ctx, f.SIAMID)
		if err != nil {
			return rep, fmt.Errorf("tokens: sync: %w", err)
		}
		now := s.now()
		for _, tok := range toks {
			if tok.Status == TokenRevoked || !now.Before(tok.NotAfter) {
				continue
			}
			did, why, code := lapse(f, tok, gone, now)
			if did == "hold" && tok.Status == TokenSuperseded {
				// A renewed-away certificate is not worth keeping on hold: revoke it as superseded.
				did, code = "revoke", ReasonCodeSuperseded
			}
			if a, ok := s.apply(ctx, tok, did, why, code, actor); ok {
				rep.Actions = append(rep.Actions, a)
			}
		}
	}
	return rep, nil
}

func (s *Service) apply(ctx context.Context, tok Token, did string, why Reason, code int, actor string) (Action, bool) {
	a := Action{Serial: tok.Serial, SIAMID: tok.SIAMID, Did: did, Reason: why, Code: code}
	var st TokenStatus
	switch {
	case did == "" && tok.Status == TokenHeld:
		a.Did, st = "release", TokenActive
		a.Err = s.Revoker.Release(ctx, tok.Serial, actor)
	case did == "hold" && tok.Status != TokenHeld:
		st = TokenHeld
		a.Err = s.Revoker.Hold(ctx, tok.Serial, actor)
	case did == "revoke":
		st = TokenRevoked
		a.Err = s.Revoker.Revoke(ctx, tok.Serial, code, actor)
	default:
		return a, false
	}
	if a.Err != nil {
		a.Err = fmt.Errorf("tokens: sync %s %s: %w", a.Did, tok.Serial, a.Err)
		return a, true
	}
	ev := s.event("token."+a.Did, actor, tok.SIAMID, map[string]any{"serial": tok.Serial, "why": string(why), "crl_reason": code})
	if err := s.Store.SetTokenStatus(ctx, tok.Serial, st, code, s.now(), ev); err != nil {
		a.Err = fmt.Errorf("tokens: sync %s %s: %w", a.Did, tok.Serial, err)
	}
	return a, true
}

// RunSync runs Sync every interval until ctx ends, passing each report to report (which must not block long).
// The first pass runs at once.
func (s *Service) RunSync(ctx context.Context, src FacilityRegistry, interval time.Duration, actor string, report func(SyncReport, error)) error {
	if interval <= 0 {
		return fmt.Errorf("%w: sync interval must be positive", ErrInvalidInput)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rep, err := s.Sync(ctx, src, actor)
		if report != nil {
			report(rep, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
