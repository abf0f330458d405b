package remote_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/signing/remote"
)

// TestActivationPage: the activation page's calls. The page sees the request (whose, how many documents,
// the hashes) without using it; the physician's assertion is checked and parked; the signing application
// gets ErrPending until then and the SAD after, once. Refused, audited, nothing signed: an unknown handle,
// an assertion for another request's hashes, another physician's passkey, a second approval, another
// physician (or an operator) asking for the parked SAD, an expired request.
func TestActivationPage(t *testing.T) {
	f := newFixture(t, "sqlite")
	credA, authA := f.enrol(drA)
	_, authB := f.enrol(drB)
	ctx := context.Background()
	hashes := randomHashes(4)
	req, err := f.svc.BeginActivation(ctx, drA.caller(), credA.ID, hashes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ActivationOptions(ctx, "00"+req.ID[2:]); !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("unknown handle: %v", err)
	}
	pa, err := f.svc.ActivationOptions(ctx, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if pa.CredentialID != credA.ID || len(pa.Hashes) != 4 || string(pa.Options.Response.Challenge) != string(req.Options.Response.Challenge) {
		t.Fatalf("pending activation %+v", pa)
	}
	if _, err := f.svc.ActivateParked(ctx, drA.caller(), credA.ID, req.ID); !errors.Is(err, remote.ErrPending) {
		t.Fatalf("before approval: %v", err)
	}
	// An assertion over another request's challenge (other hashes), and one by another physician's passkey.
	other, err := f.svc.BeginActivation(ctx, drA.caller(), credA.ID, randomHashes(2))
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := authA.Assert(mustJSON(t, other.Options))
	if err := f.svc.ApproveActivation(ctx, req.ID, wrong); !errors.Is(err, remote.ErrAssertion) {
		t.Fatalf("assertion for other hashes: %v", err)
	}
	foreign, _ := authB.Assert(mustJSON(t, pa.Options))
	if err := f.svc.ApproveActivation(ctx, req.ID, foreign); !errors.Is(err, remote.ErrAssertion) {
		t.Fatalf("another physician's passkey: %v", err)
	}
	good, err := authA.Assert(mustJSON(t, pa.Options))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ApproveActivation(ctx, req.ID, good); err != nil {
		t.Fatal(err)
	}
	again, _ := authA.Assert(mustJSON(t, pa.Options))
	if err := f.svc.ApproveActivation(ctx, req.ID, again); !errors.Is(err, remote.ErrUsed) {
		t.Fatalf("second approval: %v", err)
	}
	// Only the credential's physician gets the SAD.
	for _, c := range []remote.Caller{drB.caller(), {Role: remote.RoleOperator, Actor: "op"}} {
		if _, err := f.svc.ActivateParked(ctx, c, credA.ID, req.ID); err == nil || errors.Is(err, remote.ErrPending) {
			t.Fatalf("%s got the parked activation: %v", c.Role, err)
		}
	}
	before := f.keys.signs.Load()
	act, err := f.svc.ActivateParked(ctx, drA.caller(), credA.ID, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ActivateParked(ctx, drA.caller(), credA.ID, req.ID); !errors.Is(err, remote.ErrUsed) {
		t.Fatalf("a second SAD from the same approval: %v", err)
	}
	sigs, err := f.svc.SignHash(ctx, drA.caller(), credA.ID, act.SAD, hashes)
	if err != nil || len(sigs) != 4 || f.keys.signs.Load() != before+4 {
		t.Fatalf("sign: %d %v", len(sigs), err)
	}
	if len(f.events("remote.activation.approved")) != 1 {
		t.Fatalf("approved events: %d", len(f.events("remote.activation.approved")))
	}
	// An expired request: neither the page nor an approval.
	late, err := f.svc.BeginActivation(ctx, drA.caller(), credA.ID, randomHashes(1))
	if err != nil {
		t.Fatal(err)
	}
	lateOpts, _ := f.svc.ActivationOptions(ctx, late.ID)
	f.clock.Advance(3 * time.Minute)
	if _, err := f.svc.ActivationOptions(ctx, late.ID); !errors.Is(err, remote.ErrExpired) {
		t.Fatalf("expired request: %v", err)
	}
	asn, _ := authA.Assert(mustJSON(t, lateOpts.Options))
	if err := f.svc.ApproveActivation(ctx, late.ID, asn); !errors.Is(err, remote.ErrExpired) {
		t.Fatalf("approval of an expired request: %v", err)
	}
	if !f.refusedWith("approve", nil, "assertion refused") || !f.refusedWith("approve", nil, "already") || !f.refusedWith("approve", nil, "expired") {
		t.Fatal("refusals of the page not audited")
	}
}
