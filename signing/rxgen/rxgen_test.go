package rxgen

import (
	"encoding/json"
	"testing"

	"github.com/mohr-hix/mohr/internal/ids"
	"github.com/mohr-hix/mohr/signing/internal/rx"
)

func TestPrescriptionsAreWellFormed(t *testing.T) {
	g := New(7)
	doc := g.Physician()
	for i := 0; i < 200; i++ {
		b, err := g.Prescription(doc)
		if err != nil {
			t.Fatal(err)
		}
		var bundle rx.Bundle
		if err := json.Unmarshal(b, &bundle); err != nil || bundle.ResourceType != "Bundle" {
			t.Fatalf("bundle %d: %v", i, err)
		}
		if p, err := rx.Parse(b); err != nil || len(p.Entry) != len(bundle.Entry) {
			t.Fatalf("rx.Parse: %v", err)
		}
		counts := map[string]int{}
		for _, e := range bundle.Entry {
			counts[e.Resource.ResourceType]++
			if e.Resource.ResourceType == "Patient" || e.Resource.ResourceType == "Practitioner" {
				if _, err := ids.NationalCode(e.Resource.Find(rx.SystemNationalCode)); err != nil {
					t.Fatalf("%s national code: %v", e.Resource.ResourceType, err)
				}
			}
		}
		if counts["Patient"] != 1 || counts["Practitioner"] != 1 || counts["MedicationRequest"] < 1 {
			t.Fatalf("resources %v", counts)
		}
	}
}

func TestReproducible(t *testing.T) {
	a, _ := New(1).Prescription(New(1).Physician())
	b, _ := New(1).Prescription(New(1).Physician())
	if string(a) != string(b) {
		t.Fatal("same seed, different prescriptions")
	}
}
