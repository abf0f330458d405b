package api

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/hixext"
)

// issueBodyFor is a valid POST /v1/certificates body for profile.
func issueBodyFor(t testing.TB, profile string) []byte {
	csr := testCSR(t)
	sub := SubjectIDs{CommonName: "Subject of " + profile}
	switch profile {
	case ca.ProfileFacilityAdapter:
		sub = SubjectIDs{SIAMID: testSIAM, LicenceNumber: "L-1"}
	case ca.ProfilePhysicianSigning, ca.ProfilePhysicianAuth:
		sub.NationalCode, sub.CouncilNumber = testNatCode, testCouncil
	case ca.ProfileOrganisationAuth:
		sub.Role = string(RolePharmacy)
	case ca.ProfileOperator:
		sub.Role = string(RoleOperator)
	case ca.ProfileTLSServer:
		sub.DNSNames = []string{"hix.example"}
	}
	b, err := json.Marshal(map[string]any{"profile": profile, "csr": base64.StdEncoding.EncodeToString(csr), "subject": sub})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantIssue is what the profile dimension of the access matrix says caller gets when asking for profile:
// 201 issued at once, 202 a pending approval, 401 or 403 refused.
func wantIssue(profile, caller string) int {
	role := callerRole(caller)
	if role == "" {
		return http.StatusUnauthorized
	}
	switch role {
	case RoleOperator, RoleRAOfficer:
	default:
		return http.StatusForbidden // the route itself refuses
	}
	subscriber := map[string]bool{ca.ProfileFacilityAdapter: true, ca.ProfilePhysicianSigning: true,
		ca.ProfilePhysicianAuth: true, ca.ProfileOrganisationAuth: true}[profile]
	switch {
	case subscriber:
		return http.StatusCreated
	case role == RoleOperator:
		return http.StatusAccepted
	}
	return http.StatusForbidden
}

// TestIssuanceProfileMatrix is the profile dimension of the access matrix: every profile x every caller, issued
// at once, held for dual control or refused, as docs/access-matrix.md says; a refused or pending request never
// reaches the CA, and an approved one reaches it exactly once with both operators named.
func TestIssuanceProfileMatrix(t *testing.T) {
	e := newEnv(t, nil)
	for _, profile := range ca.Profiles {
		body := issueBodyFor(t, profile)
		for _, caller := range matrixCallers {
			t.Run(profile+"/"+caller, func(t *testing.T) {
				e.t = t
				e.rec.reset()
				r := e.do(caller, "POST", "/v1/certificates", ctJSON, body)
				want := wantIssue(profile, caller)
				if r.status != want {
					t.Fatalf("issue %s as %s: %d, want %d; %s", profile, caller, r.status, want, r.body)
				}
				switch want {
				case http.StatusCreated:
					if n := e.rec.count("Certs.Issue"); n != 1 || e.rec.issued[0].Profile != profile {
						t.Fatalf("issued %d times: %+v", n, e.rec.issued)
					}
					return
				case http.StatusAccepted:
				default:
					checkProblem(t, r, want)
					if n := e.rec.total(); n != 0 {
						t.Fatalf("refused issuance reached a service: %v", e.rec.calls)
					}
					return
				}
				if n := e.rec.count("Certs.Issue"); n != 0 {
					t.Fatalf("dual-control issuance executed at once")
				}
				var ap approval
				if err := json.Unmarshal(r.body, &ap); err != nil || ap.Operation != "cert.issue" {
					t.Fatalf("approval %s: %v", r.body, err)
				}
				// The requester cannot approve their own request; an RA officer cannot approve at all.
				if r := e.do(caller, "POST", "/v1/approvals/"+ap.ID+"/approve", "", nil); r.status != http.StatusConflict {
					t.Fatalf("self-approval: %d %s", r.status, r.body)
				}
				if r := e.do(string(RoleRAOfficer), "POST", "/v1/approvals/"+ap.ID+"/approve", "", nil); r.status != http.StatusForbidden {
					t.Fatalf("RA officer approval: %d %s", r.status, r.body)
				}
				if n := e.rec.count("Certs.Issue"); n != 0 {
					t.Fatalf("issued without a second operator")
				}
				second := callerOp2
				if caller == callerOp2 {
					second = string(RoleOperator)
				}
				if r := e.do(second, "POST", "/v1/approvals/"+ap.ID+"/approve", "", nil); r.status != http.StatusOK {
					t.Fatalf("approval by a second operator: %d %s", r.status, r.body)
				}
				if n := e.rec.count("Certs.Issue"); n != 1 || e.rec.issued[0].Profile != profile {
					t.Fatalf("approved issuance ran %d times: %+v", n, e.rec.issued)
				}
				if a := e.rec.issued[0].Actor; !containsAll(a, "api:operator:", " approved-by ") {
					t.Fatalf("actor %q does not name both operators", a)
				}
			})
		}
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestIssueRulesCoverProfiles: every CA profile has exactly one issuance rule.
func TestIssueRulesCoverProfiles(t *testing.T) {
	for _, p := range ca.Profiles {
		n := 0
		for _, r := range issueRules {
			if r.profile == p {
				n++
			}
		}
		if n != 1 {
			t.Errorf("profile %s has %d issuance rules", p, n)
		}
	}
	if len(issueRules) != len(ca.Profiles) {
		t.Errorf("%d rules for %d profiles", len(issueRules), len(ca.Profiles))
	}
}

// TestLoginNeedsAPIProfile: only certificates of the API profiles log in. A physician's non-repudiation
// certificate (no EKU), an organisation seal carrying a staff role policy (no EKU), a certificate whose key is
// both a signing and an authentication key, and a server certificate are all refused with 401 and reach no
// service, although each chains to the intermediate and maps to a role.
func TestLoginNeedsAPIProfile(t *testing.T) {
	adm := &hixext.Admission{Authority: "Iran Medical Council", Profession: "Physician", RegistrationNumber: testCouncil}
	cases := []struct {
		name string
		o    leafOpts
	}{
		{"physician-signing", leafOpts{cn: "Dr Test", serialNum: hixext.NationalCodePrefix + testNatCode, admission: adm,
			eku: []x509.ExtKeyUsage{}, keyUsage: x509.KeyUsageContentCommitment}},
		{"organisation-seal-as-operator", leafOpts{cn: "Seal", policy: []int{1}, eku: []x509.ExtKeyUsage{},
			keyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment}},
		{"signing-and-auth-key", leafOpts{cn: "Dr Both", serialNum: hixext.NationalCodePrefix + testNatCode, admission: adm,
			keyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment}},
		{"any-eku", leafOpts{cn: "Any", policy: []int{1}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}},
		{"server-auth", leafOpts{cn: "Server", policy: []int{1}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
	}
	e := newEnv(t, nil)
	for _, c := range cases {
		e.leaves[c.name] = e.ca.issue(t, c.o)
	}
	// The physician-auth shape (clientAuth, digitalSignature) still logs in.
	if r := e.do(string(RolePhysician), "GET", "/v1/whoami", "", nil); r.status != http.StatusOK {
		t.Fatalf("physician-auth whoami: %d %s", r.status, r.body)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			e.rec.reset()
			r := e.do(c.name, "GET", "/v1/whoami", "", nil)
			checkProblem(t, r, http.StatusUnauthorized)
			r = e.do(c.name, "POST", "/v1/verify", ctCMS, []byte("der"))
			checkProblem(t, r, http.StatusUnauthorized)
			if n := e.rec.total(); n != 0 {
				t.Fatalf("refused credential reached a service: %v", e.rec.calls)
			}
		})
	}
}
