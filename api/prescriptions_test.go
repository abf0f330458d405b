package api

import "testing"

// TestOwnsRecord: a facility reads only what it submitted; a physician what they prescribed or submitted; no
// identifier, no access.
func TestOwnsRecord(t *testing.T) {
	p := StoredPrescription{PrescriberCouncilNumber: "12345", Submitter: "facility:SIAM-1001"}
	for _, c := range []struct {
		name string
		id   Identity
		want bool
	}{
		{"submitting facility", Identity{Role: RoleFacility, SIAMID: "SIAM-1001"}, true},
		{"other facility", Identity{Role: RoleFacility, SIAMID: "SIAM-1002"}, false},
		{"facility without SIAM ID", Identity{Role: RoleFacility}, false},
		{"prescriber", Identity{Role: RolePhysician, CouncilNumber: "12345"}, true},
		{"other physician", Identity{Role: RolePhysician, CouncilNumber: "54321"}, false},
		{"physician without council number", Identity{Role: RolePhysician}, false},
		{"pharmacy (reads all by the matrix, owns nothing)", Identity{Role: RolePharmacy}, false},
	} {
		if got := ownsRecord(c.id, p); got != c.want {
			t.Errorf("%s: %v", c.name, got)
		}
	}
	sub := StoredPrescription{PrescriberCouncilNumber: "12345", Submitter: "physician:777"}
	if !ownsRecord(Identity{Role: RolePhysician, CouncilNumber: "777"}, sub) {
		t.Error("submitting physician")
	}
}
