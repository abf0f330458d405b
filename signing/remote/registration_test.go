package remote_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/softauthn"
	"github.com/mohr-hix/mohr/signing/remote"
)

// TestRegistrationCode: the physician registers the passkey with the RA's one-use code (the registration
// page's calls): the options come back for the code as typed by a person (lower case, no dashes), the
// passkey is registered and the credential becomes active; the code is then used up; a wrong code, an
// expired code, and a code for a credential that is no longer pending are refused, each audited.
func TestRegistrationCode(t *testing.T) {
	f := newFixture(t, "sqlite")
	ctx := context.Background()
	cred, reg, err := f.svc.Enrol(ctx, f.ra, remote.EnrolRequest{NationalCode: drA.national, CouncilNumber: drA.council, Name: drA.name,
		IdentityCheck: `{"method":"national ID card"}`})
	if err != nil {
		t.Fatal(err)
	}
	if len(reg.Code) != 23 || strings.Count(reg.Code, "-") != 3 {
		t.Fatalf("code %q", reg.Code)
	}
	if got := reg.ExpiresAt.Sub(f.clock.Now()); got != 30*time.Minute {
		t.Errorf("registration lives %v, want 30m", got)
	}
	// Wrong codes: not the format, and a well-formed stranger.
	for _, bad := range []string{"", "nope", "00000-00000-00000-00000"} {
		if _, err := f.svc.RegistrationOptions(ctx, bad); !errors.Is(err, remote.ErrNotFound) {
			t.Fatalf("options for %q: %v", bad, err)
		}
	}
	typed := strings.ToLower(strings.ReplaceAll(reg.Code, "-", ""))
	pr, err := f.svc.RegistrationOptions(ctx, typed)
	if err != nil {
		t.Fatal(err)
	}
	if pr.CredentialID != cred.ID || pr.Name != drA.name || string(pr.Options.Response.Challenge) != string(reg.Options.Response.Challenge) {
		t.Fatalf("pending registration %+v", pr)
	}
	// Peeking does not use the code up.
	if _, err := f.svc.RegistrationOptions(ctx, reg.Code); err != nil {
		t.Fatal(err)
	}
	a := softauthn.New(origin)
	opts, _ := json.Marshal(pr.Options)
	resp, err := a.Register(opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.svc.FinishRegistrationWithCode(ctx, reg.Code, resp)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != remote.StatusActive {
		t.Fatalf("status %s", got.Status)
	}
	if evs := f.events("remote.passkey.registered"); len(evs) != 1 || !strings.Contains(evs[0].Actor, "registration-code") {
		t.Fatalf("registered events %+v", evs)
	}
	// Used up: neither the options nor a second registration.
	if _, err := f.svc.RegistrationOptions(ctx, reg.Code); !errors.Is(err, remote.ErrUsed) {
		t.Fatalf("options after use: %v", err)
	}
	if _, err := f.svc.FinishRegistrationWithCode(ctx, reg.Code, resp); !errors.Is(err, remote.ErrUsed) {
		t.Fatalf("second registration: %v", err)
	}
	// A lost authenticator: blocked, a new code from the RA, which expires unused.
	if err := f.svc.Block(ctx, drA.caller(), cred.ID, "phone lost"); err != nil {
		t.Fatal(err)
	}
	reg2, err := f.svc.BeginPasskeyRegistration(ctx, f.ra, cred.ID)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(31 * time.Minute)
	if _, err := f.svc.RegistrationOptions(ctx, reg2.Code); !errors.Is(err, remote.ErrExpired) {
		t.Fatalf("expired code: %v", err)
	}
	b := softauthn.New(origin)
	opts, _ = json.Marshal(reg2.Options)
	resp2, _ := b.Register(opts)
	if _, err := f.svc.FinishRegistrationWithCode(ctx, reg2.Code, resp2); !errors.Is(err, remote.ErrExpired) {
		t.Fatalf("registration with an expired code: %v", err)
	}
	// A code for a credential that was revoked meanwhile.
	reg3, err := f.svc.BeginPasskeyRegistration(ctx, f.ra, cred.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Revoke(ctx, f.ra, cred.ID, remote.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RegistrationOptions(ctx, reg3.Code); !errors.Is(err, remote.ErrCredentialStatus) {
		t.Fatalf("code of a revoked credential: %v", err)
	}
	if n := len(f.events("remote.refused")); n < 6 {
		t.Errorf("%d refusals audited, want at least 6", n)
	}
}

// TestEnrolRegistryMismatch: enrolment is refused, before any key is generated, when the registry does not
// list the council number for the national code; the refusal is audited.
func TestEnrolRegistryMismatch(t *testing.T) {
	f := newFixture(t, "sqlite")
	f.registry = func(_ context.Context, nationalCode, council string) error {
		if nationalCode == drA.national && council == drA.council {
			return nil
		}
		return errors.New("council number is not this national code's")
	}
	ctx := context.Background()
	_, _, err := f.svc.Enrol(ctx, f.ra, remote.EnrolRequest{NationalCode: drB.national, CouncilNumber: drA.council, Name: drB.name, IdentityCheck: "card"})
	if !errors.Is(err, remote.ErrRegistry) {
		t.Fatalf("enrol with a mismatching registry: %v", err)
	}
	if creds, _ := f.st.CredentialsOf(ctx, drA.council); len(creds) != 0 {
		t.Fatalf("a credential was created: %+v", creds)
	}
	if len(f.events("remote.refused")) != 1 || len(f.events("remote.key.destroyed")) != 0 {
		t.Fatalf("audit: refused %d, destroyed %d (no key may have been generated)", len(f.events("remote.refused")), len(f.events("remote.key.destroyed")))
	}
	if _, _, err := f.svc.Enrol(ctx, f.ra, remote.EnrolRequest{NationalCode: drA.national, CouncilNumber: drA.council, Name: drA.name, IdentityCheck: "card"}); err != nil {
		t.Fatal(err)
	}
}
