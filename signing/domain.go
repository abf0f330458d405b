package signing

import (
	"context"
	"errors"
	"time"

	"github.com/mohr-hix/mohr/internal/ids"
	"github.com/mohr-hix/mohr/signing/internal/rx"
)

// Registration is a physician's standing in the medical council's registry.
type Registration struct {
	CouncilNumber string
	NationalCode  string
	Name          string
	Specialty     string
	// Status is "active", "suspended" or "expired" as of now; ValidFrom/ValidUntil bound the registration.
	Status     string
	ValidFrom  time.Time
	ValidUntil time.Time
	// SuspendedFrom, if set, is when a suspension began (a registration suspended after the signing time was
	// valid at signing time).
	SuspendedFrom time.Time
	// History, when the registry keeps one, is every standing the registration had, ordered by EffectiveAt
	// (entries with the same EffectiveAt in the order they were recorded). With a history the standing at a
	// time is the last entry effective at or before it; Status and the bounds above are only today's.
	History []Standing
}

// Standing is one entry of a registration's history: from EffectiveAt until the next entry's EffectiveAt the
// registration had Status and the bounds ValidFrom/ValidUntil.
type Standing struct {
	EffectiveAt time.Time `json:"effectiveAt"`
	Status      string    `json:"status"`
	ValidFrom   time.Time `json:"validFrom"`
	ValidUntil  time.Time `json:"validUntil,omitempty"`
}

// activeAt reports whether a registration with this status and bounds is valid at t: "expired" counts within
// its bounds (it was valid then), "suspended" and "revoked" never do.
func (s Standing) activeAt(t time.Time) bool {
	if t.Before(s.ValidFrom) || (!s.ValidUntil.IsZero() && !t.Before(s.ValidUntil)) {
		return false
	}
	return s.Status == "active" || s.Status == "expired"
}

// StandingAt returns the standing in force at t: from History when there is one (ok false when t is before its
// first entry), else today's Status and bounds.
func (r Registration) StandingAt(t time.Time) (Standing, bool) {
	if len(r.History) == 0 {
		return Standing{Status: r.Status, ValidFrom: r.ValidFrom, ValidUntil: r.ValidUntil}, true
	}
	var cur Standing
	found := false
	for _, h := range r.History {
		if h.EffectiveAt.After(t) {
			break
		}
		cur, found = h, true
	}
	return cur, found
}

// ActiveAt reports whether the registration was valid at t (docs/signature-policy.md §5.9): by the history
// when the registry keeps one, else by today's status (a suspension counts from SuspendedFrom when known,
// else always: without history a suspended registration fails closed).
func (r Registration) ActiveAt(t time.Time) bool {
	if len(r.History) > 0 {
		s, ok := r.StandingAt(t)
		return ok && s.activeAt(t)
	}
	if t.Before(r.ValidFrom) || (!r.ValidUntil.IsZero() && !t.Before(r.ValidUntil)) {
		return false
	}
	switch r.Status {
	case "active", "expired":
		return true
	case "suspended":
		return !r.SuspendedFrom.IsZero() && t.Before(r.SuspendedFrom)
	}
	return false
}

// ErrUnknownPhysician is returned by a PhysicianRegistry for a council number it does not know.
var ErrUnknownPhysician = errors.New("signing: unknown medical-council number")

// ErrRegistryNotConsulted is returned by a PhysicianRegistry that stands for a registry the verifier was not
// given (mohr verify without --registry): the registration check cannot be made, so the result is incomplete
// (INDETERMINATE/TRY_LATER, docs/signature-policy.md §5.9), never TOTAL_PASSED.
var ErrRegistryNotConsulted = errors.New("signing: medical council registry not consulted")

// PhysicianRegistry looks a prescriber up in the medical council's registry.
type PhysicianRegistry interface {
	Registration(ctx context.Context, councilNumber string) (Registration, error)
}

// checkDomain applies the health-domain checks of HIX-Rx-CAdES (docs/signature-policy.md §5): the content is a
// FHIR R4 Bundle with a Patient and a Practitioner whose national codes are well formed; the Practitioner's
// national code and council number are the signing certificate's; and, when a registry is configured, the
// prescriber's council registration was valid at the best signature time.
func (v *Verifier) checkDomain(ctx context.Context, content []byte, signer *certEntry, best time.Time, r *Report) (SubIndication, string) {
	p := r.Prescriber
	b, err := parseBundle(ctx, content) // rx.Parse, a lean, strict reader; once per ingestion
	if err != nil || b.ResourceType != "Bundle" {
		return SigConstraintsFailure, "content is not a FHIR Bundle"
	}
	var patient, practitioner *rx.Resource
	for i := range b.Entry {
		res := &b.Entry[i].Resource
		switch res.ResourceType {
		case "Patient":
			if patient != nil {
				return SigConstraintsFailure, "more than one Patient in the prescription"
			}
			patient = res
		case "Practitioner":
			if practitioner != nil {
				return SigConstraintsFailure, "more than one Practitioner in the prescription"
			}
			practitioner = res
		}
	}
	if patient == nil || practitioner == nil {
		return SigConstraintsFailure, "prescription needs a Patient and a Practitioner"
	}
	pc, err := ids.NationalCode(patient.Find(rx.SystemNationalCode))
	if err != nil {
		return SigConstraintsFailure, "patient national code: " + err.Error()
	}
	p.PatientCode = pc
	p.PrescriptionID = b.ID
	dc, err := ids.NationalCode(practitioner.Find(rx.SystemNationalCode))
	if err != nil {
		return SigConstraintsFailure, "practitioner national code: " + err.Error()
	}
	if dc != signer.nationalCode {
		return SigConstraintsFailure, "practitioner's national code is not the signer's"
	}
	if cn, err := ids.CouncilNumber(practitioner.Find(rx.SystemCouncilNumber)); err != nil || cn != signer.council {
		return SigConstraintsFailure, "practitioner's council number is not the signer's"
	}
	return v.checkRegistration(ctx, signer, best, r)
}

// checkRegistration asks the registry, when one is configured, whether the prescriber's council registration
// was valid at best (docs/signature-policy.md §5.9); PDF printouts get the same check as prescriptions.
func (v *Verifier) checkRegistration(ctx context.Context, signer *certEntry, best time.Time, r *Report) (SubIndication, string) {
	p := r.Prescriber
	if v.cfg.Registry == nil {
		return "", ""
	}
	reg, err := v.registration(ctx, signer.council)
	switch {
	case errors.Is(err, ErrUnknownPhysician):
		p.Registration = "unknown"
		return SigConstraintsFailure, "council number not in the medical council's registry"
	case errors.Is(err, ErrRegistryNotConsulted):
		p.Registration = "not consulted"
		return TryLater, "medical council registry not consulted: the result is incomplete"
	case err != nil:
		p.Registration = "unavailable"
		return TryLater, "medical council registry unavailable"
	}
	if reg.NationalCode != "" && reg.NationalCode != signer.nationalCode {
		p.Registration = "mismatch"
		return SigConstraintsFailure, "registry's national code for the council number is not the signer's"
	}
	then, known := reg.StandingAt(best)
	if then.Status != reg.Status {
		p.RegistrationNow = reg.Status
	}
	// A time-stamp's genTime has whole seconds (RFC 3161 §2.4.2 without fractions): the signature existed at
	// some instant of that second, so the registration must hold for the whole second. A suspension effective
	// within it fails the signature (fail closed on the boundary).
	if !reg.ActiveAt(best) || !reg.ActiveAt(best.Truncate(time.Second).Add(time.Second-time.Nanosecond)) {
		if !known {
			then.Status = "unregistered"
		}
		p.Registration = then.Status + " (not valid at signing time)"
		return SigConstraintsFailure, "prescriber's council registration was not valid at the signing time"
	}
	p.Registration = then.Status
	return "", ""
}
