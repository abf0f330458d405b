package signing

import (
	"context"
	"testing"
	"time"
)

// TestRegistrationHistory judges a registration at several times against its history (issue 20): the standing
// in force at a time is the last entry effective at or before it.
func TestRegistrationHistory(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	from, until := t0.AddDate(-1, 0, 0), t0.AddDate(2, 0, 0)
	reg := Registration{Status: "active", ValidFrom: from, ValidUntil: until, History: []Standing{
		{EffectiveAt: from, Status: "active", ValidFrom: from, ValidUntil: until},
		{EffectiveAt: t0, Status: "suspended", ValidFrom: from, ValidUntil: until},
		{EffectiveAt: t0.AddDate(0, 1, 0), Status: "active", ValidFrom: from, ValidUntil: until},
		{EffectiveAt: t0.AddDate(0, 6, 0), Status: "revoked", ValidFrom: from, ValidUntil: until},
	}}
	for _, tt := range []struct {
		name string
		at   time.Time
		want bool
	}{
		{"before the registration", from.Add(-time.Second), false},
		{"first day", from, true},
		{"just before the suspension", t0.Add(-time.Second), true},
		{"at the suspension", t0, false},
		{"during the suspension", t0.AddDate(0, 0, 10), false},
		{"reinstated", t0.AddDate(0, 2, 0), true},
		{"revoked", t0.AddDate(0, 7, 0), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := reg.ActiveAt(tt.at); got != tt.want {
				t.Errorf("ActiveAt(%s) = %v", tt.at, got)
			}
		})
	}
	// A suspension within the second of a whole-second time-stamp fails it (checkRegistration checks the whole
	// second): the history says active at t0-1s+0 but suspended from t0-0.5s.
	half := Registration{Status: "suspended", ValidFrom: from, ValidUntil: until, History: []Standing{
		{EffectiveAt: from, Status: "active", ValidFrom: from, ValidUntil: until},
		{EffectiveAt: t0.Add(-500 * time.Millisecond), Status: "suspended", ValidFrom: from, ValidUntil: until},
	}}
	if !half.ActiveAt(t0.Add(-time.Second)) || half.ActiveAt(t0.Add(-time.Nanosecond)) {
		t.Error("history around the second boundary")
	}
	// Without history a suspension with no known start fails closed at every time.
	if (Registration{Status: "suspended", ValidFrom: from, ValidUntil: until}).ActiveAt(t0) {
		t.Error("a suspension without history or start passed")
	}
}

// TestCheckRegistrationWholeSecond: a time-stamp says "within this second"; a suspension effective inside the
// second of the best signature time fails the signature, one effective the next second does not.
func TestCheckRegistrationWholeSecond(t *testing.T) {
	best := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	from, until := best.AddDate(-1, 0, 0), best.AddDate(1, 0, 0)
	for _, tt := range []struct {
		name    string
		suspend time.Time
		want    SubIndication
	}{
		{"suspended within the second", best.Add(700 * time.Millisecond), SigConstraintsFailure},
		{"suspended the next second", best.Add(time.Second), ""},
		{"suspended before", best.Add(-time.Minute), SigConstraintsFailure},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := Registration{CouncilNumber: "12345", NationalCode: "0499370899", Status: "suspended", ValidFrom: from, ValidUntil: until,
				History: []Standing{{EffectiveAt: from, Status: "active", ValidFrom: from, ValidUntil: until},
					{EffectiveAt: tt.suspend, Status: "suspended", ValidFrom: from, ValidUntil: until}}}
			v := &Verifier{cfg: VerifierConfig{Registry: mapRegistry{"12345": reg}}}
			r := &Report{Prescriber: &Prescriber{}}
			sub, _ := v.checkRegistration(context.Background(), &certEntry{council: "12345", nationalCode: "0499370899"}, best, r)
			if sub != tt.want {
				t.Errorf("got %q (%s), want %q", sub, r.Prescriber.Registration, tt.want)
			}
		})
	}
}
