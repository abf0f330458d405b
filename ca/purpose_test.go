package ca

import (
	"context"
	"errors"
	"testing"
)

// TestSigningKeyNeverAuthKey: a key certified for signing (physician-signing) is refused for the same
// physician's authentication certificate, and the other way round; a fresh key is accepted.
func TestSigningKeyNeverAuthKey(t *testing.T) {
	c, st, _ := newTestCA(t)
	reqs := validRequests(t)
	ctx := context.Background()
	signKey := p256(t)
	sign := reqs[ProfilePhysicianSigning]
	sign.CSR = csrFor(t, signKey)
	if _, err := c.Issue(ctx, sign); err != nil {
		t.Fatal(err)
	}
	auth := reqs[ProfilePhysicianAuth]
	auth.CSR = csrFor(t, signKey)
	before := len(st.events)
	if _, err := c.Issue(ctx, auth); !errors.Is(err, ErrKeyReuse) {
		t.Fatalf("signing key certified for authentication: %v", err)
	}
	if len(st.events) != before {
		t.Fatalf("refused request left audit events")
	}
	authKey := p256(t)
	auth.CSR = csrFor(t, authKey)
	if _, err := c.Issue(ctx, auth); err != nil {
		t.Fatal(err)
	}
	sign.CSR = csrFor(t, authKey)
	if _, err := c.Issue(ctx, sign); !errors.Is(err, ErrKeyReuse) {
		t.Fatalf("authentication key certified for signing: %v", err)
	}
	// Re-certifying a key for the same purpose (renewal) is allowed.
	sign.CSR = csrFor(t, signKey)
	if _, err := c.Issue(ctx, sign); err != nil {
		t.Fatalf("renewal of the signing certificate: %v", err)
	}
}

// TestRoleProfilePairs: only the role/profile pairs the CLI help lists are accepted.
func TestRoleProfilePairs(t *testing.T) {
	c, _, _ := newTestCA(t)
	reqs := validRequests(t)
	ok := map[string][]string{
		ProfileOperator:         {"operator", "ra-officer", "auditor"},
		ProfileOrganisationAuth: {"pharmacy", "insurer"},
		ProfileOrganisationSeal: {"", "pharmacy", "insurer"},
	}
	for _, profile := range Profiles {
		for _, role := range []string{"", "operator", "ra-officer", "auditor", "pharmacy", "insurer", "root"} {
			r := reqs[profile]
			r.Role = role
			r.CSR = csrFor(t, p256(t))
			allowed := false
			if roles, has := ok[profile]; has {
				for _, a := range roles {
					allowed = allowed || a == role
				}
			} else {
				allowed = role == ""
			}
			_, err := c.Issue(context.Background(), r)
			if allowed && err != nil {
				t.Errorf("%s with role %q refused: %v", profile, role, err)
			}
			if !allowed && !errors.Is(err, ErrBadRequest) {
				t.Errorf("%s with role %q: %v, want ErrBadRequest", profile, role, err)
			}
		}
	}
}
