package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mohr-hix/mohr/internal/ids"
)

// CheckFacility returns the registry entry of siamID if the facility may hold an adapter token at time at:
// the SIAM ID exists, the licence is active and at is within its validity, and the facility's information
// system holds an active, valid system certificate (DOMAIN.md, "Who may get one"). Otherwise it returns a
// *NotEligibleError (errors.Is ErrNotEligible) naming the first failed condition, or the registry's error.
func CheckFacility(ctx context.Context, reg FacilityRegistry, siamID string, at time.Time) (Facility, error) {
	id, err := ids.SIAMID(siamID)
	if err != nil {
		return Facility{}, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	f, err := reg.Facility(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Facility{}, &NotEligibleError{Subject: id, Reason: ReasonUnknownFacility}
	}
	if err != nil {
		return Facility{}, fmt.Errorf("tokens: facility registry: %w", err)
	}
	if r := facilityReason(f, at); r != "" {
		return f, &NotEligibleError{Subject: id, Reason: r}
	}
	return f, nil
}

// facilityReason returns why f is not in good standing at time at, or "".
func facilityReason(f Facility, at time.Time) Reason {
	switch {
	case f.LicenceStatus == StatusRevoked:
		return ReasonLicenceRevoked
	case f.LicenceStatus == StatusExpired:
		return ReasonLicenceExpired
	case f.LicenceStatus != StatusActive:
		return ReasonLicenceNotActive
	case at.Before(f.LicenceFrom) || !at.Before(f.LicenceUntil):
		return ReasonLicenceExpired
	case f.SystemID == "":
		return ReasonNoSystem
	case f.SystemStatus == StatusExpired:
		return ReasonSystemExpired
	case f.SystemStatus != StatusActive:
		return ReasonSystemNotActive
	case at.Before(f.SystemFrom) || !at.Before(f.SystemUntil):
		return ReasonSystemExpired
	}
	return ""
}

// CheckPhysician returns the council registration of nationalCode if it is active at time at and its council
// number is councilNo. It is the RA check of the physician signing and authentication profiles: a physician
// certificate is issued only for an active council registration, and never beyond it. Both identifiers are
// normalised (Persian and Arabic-Indic digits) and validated first.
func CheckPhysician(ctx context.Context, reg PhysicianRegistry, nationalCode, councilNo string, at time.Time) (Physician, error) {
	nc, err := ids.NationalCode(nationalCode)
	if err != nil {
		return Physician{}, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	cn, err := ids.CouncilNumber(councilNo)
	if err != nil {
		return Physician{}, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	p, err := reg.Physician(ctx, nc)
	if errors.Is(err, ErrNotFound) {
		return Physician{}, &NotEligibleError{Subject: nc, Reason: ReasonUnknownPhysician}
	}
	if err != nil {
		return Physician{}, fmt.Errorf("tokens: physician registry: %w", err)
	}
	switch {
	case p.CouncilNo != cn:
		return p, &NotEligibleError{Subject: nc, Reason: ReasonCouncilMismatch}
	case p.Status == StatusExpired:
		return p, &NotEligibleError{Subject: nc, Reason: ReasonRegistrationExpired}
	case p.Status != StatusActive:
		return p, &NotEligibleError{Subject: nc, Reason: ReasonRegistrationInvalid}
	case at.Before(p.ValidFrom) || !at.Before(p.ValidUntil):
		return p, &NotEligibleError{Subject: nc, Reason: ReasonRegistrationExpired}
	}
	return p, nil
}

// NotAfterLimit is the latest NotAfter an adapter certificate for f may carry: the earlier of the licence's
// and the system certificate's expiry (ARCHITECTURE.md, facility adapter profile).
func (f Facility) NotAfterLimit() time.Time {
	if f.SystemUntil.Before(f.LicenceUntil) {
		return f.SystemUntil
	}
	return f.LicenceUntil
}

// Standing adapts a FacilityRegistry to the gateway's standing check (adapter.StandingChecker): Standing
// reports true when the facility is in good standing at Clock(), false with a nil error when CheckFacility says
// it is not eligible, and an error when the registry cannot answer.
type Standing struct {
	Registry FacilityRegistry
	Clock    func() time.Time // nil: time.Now
}

// Standing reports whether siamID is in good standing now.
func (s Standing) Standing(ctx context.Context, siamID string) (bool, error) {
	now := time.Now
	if s.Clock != nil {
		now = s.Clock
	}
	_, err := CheckFacility(ctx, s.Registry, siamID, now().UTC())
	if errors.Is(err, ErrNotEligible) || errors.Is(err, ErrInvalidInput) {
		return false, nil
	}
	return err == nil, err
}
