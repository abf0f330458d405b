package signing

import (
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
	// Without history a suspension with no known start fails closed at every time.
	if (Registration{Status: "suspended", ValidFrom: from, ValidUntil: until}).ActiveAt(t0) {
		t.Error("a suspension without history or start passed")
	}
}
