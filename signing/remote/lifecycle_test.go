package remote_test

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/mohr-hix/mohr/internal/softauthn"
	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing/remote"
)

// signOnce activates cred for one fresh hash with a and signs it.
func (f *fixture) signOnce(p physician, credID string, a *softauthn.Authenticator) error {
	ctx := context.Background()
	hashes := randomHashes(1)
	req, err := f.svc.BeginActivation(ctx, p.caller(), credID, hashes)
	if err != nil {
		return err
	}
	asn, err := a.Assert(mustJSON(f.t, req.Options))
	if err != nil {
		return err
	}
	act, err := f.svc.Activate(ctx, p.caller(), credID, req.ID, asn)
	if err != nil {
		return err
	}
	_, err = f.svc.SignHash(ctx, p.caller(), credID, act.SAD, hashes)
	return err
}

// TestLostAuthenticator: blocking removes the passkeys, nothing activates the key, the physician cannot
// re-register alone, an RA officer re-enrols a new passkey in person and the old one stays refused.
func TestLostAuthenticator(t *testing.T) {
	f := newFixture(t, "sqlite")
	ctx := context.Background()
	cred, old := f.enrol(drA)
	if err := f.svc.Block(ctx, drA.caller(), cred.ID, "phone lost"); err != nil {
		t.Fatal(err)
	}
	if err := f.signOnce(drA, cred.ID, old); !errors.Is(err, remote.ErrCredentialStatus) {
		t.Fatalf("blocked credential: %v", err)
	}
	if _, err := f.svc.BeginPasskeyRegistration(ctx, drA.caller(), cred.ID); !errors.Is(err, remote.ErrForbidden) {
		t.Fatalf("physician re-registering alone: %v", err)
	}
	reg, err := f.svc.BeginPasskeyRegistration(ctx, f.ra, cred.ID)
	if err != nil {
		t.Fatal(err)
	}
	fresh := softauthn.New(origin)
	f.register(cred.ID, reg, fresh)
	if err := f.signOnce(drA, cred.ID, fresh); err != nil {
		t.Fatalf("after re-enrolment: %v", err)
	}
	if err := f.signOnce(drA, cred.ID, old); !errors.Is(err, remote.ErrAssertion) {
		t.Fatalf("the lost authenticator after re-enrolment: %v", err)
	}
	for _, kind := range []string{"remote.credential.blocked", "remote.passkey.removed"} {
		if len(f.events(kind)) != 1 {
			t.Errorf("audit: %d %s", len(f.events(kind)), kind)
		}
	}
}

// TestRevokeAndDestroy: revocation for key compromise revokes the certificate at the CA, destroys the key
// in the HSM (audited) and refuses everything after; a revocation for another reason keeps the key but
// still refuses; leaving the registry destroys every key of the physician.
func TestRevokeAndDestroy(t *testing.T) {
	f := newFixture(t, "postgres")
	ctx := context.Background()
	var revoked []string
	f.setRevoke(func(_ context.Context, cert *x509.Certificate, reason int, _ string) error {
		revoked = append(revoked, cert.SerialNumber.Text(16))
		return nil
	})
	cred, a := f.enrol(drA)
	if err := f.svc.Revoke(ctx, drA.caller(), cred.ID, remote.ReasonKeyCompromise); !errors.Is(err, remote.ErrForbidden) {
		t.Fatalf("physician revoking: %v", err)
	}
	if err := f.svc.Revoke(ctx, f.ra, cred.ID, remote.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if len(revoked) != 1 {
		t.Fatalf("CA revocations: %v", revoked)
	}
	if _, err := f.keys.Opener.OpenSigner(ctx, cred.KeyURI); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("key still in the HSM after key-compromise revocation: %v", err)
	}
	got, _ := f.st.Credential(ctx, cred.ID)
	if got.Status != remote.StatusRevoked || !got.KeyDestroyed {
		t.Fatalf("credential after revocation: %s destroyed=%v", got.Status, got.KeyDestroyed)
	}
	if len(f.events("remote.key.destroyed")) != 1 {
		t.Fatal("key destruction not audited")
	}
	if err := f.signOnce(drA, cred.ID, a); !errors.Is(err, remote.ErrCredentialStatus) {
		t.Fatalf("revoked credential: %v", err)
	}

	// Another physician with two credentials leaves the registry: both revoked, both keys destroyed.
	c1, _ := f.enrol(drB)
	c2, _ := f.enrol(drB)
	if err := f.svc.Revoke(ctx, f.ra, c2.ID, remote.ReasonUnspecified); err != nil {
		t.Fatal(err)
	}
	if _, err := f.keys.Opener.OpenSigner(ctx, c2.KeyURI); err != nil {
		t.Fatalf("reason unspecified destroyed the key: %v", err)
	}
	if err := f.svc.LeftRegistry(ctx, f.ra, drB.council); err != nil {
		t.Fatal(err)
	}
	for _, c := range []remote.Credential{c1, c2} {
		got, _ := f.st.Credential(ctx, c.ID)
		if got.Status != remote.StatusRevoked || !got.KeyDestroyed {
			t.Errorf("%s after leaving the registry: %s destroyed=%v", c.ID, got.Status, got.KeyDestroyed)
		}
		if _, err := f.keys.Opener.OpenSigner(ctx, c.KeyURI); !errors.Is(err, keys.ErrNotFound) {
			t.Errorf("%s: key still in the HSM: %v", c.ID, err)
		}
	}
	if n := len(f.events("remote.key.destroyed")); n != 3 {
		t.Errorf("%d key destructions audited, want 3", n)
	}
}

// TestRekey: a new key and certificate under a new credential ID, the passkey carried over, the old
// credential revoked as superseded and its key destroyed.
func TestRekey(t *testing.T) {
	f := newFixture(t, "sqlite")
	ctx := context.Background()
	old, a := f.enrol(drA)
	if _, err := f.svc.Rekey(ctx, drA.caller(), old.ID); !errors.Is(err, remote.ErrForbidden) {
		t.Fatalf("physician re-keying: %v", err)
	}
	nc, err := f.svc.Rekey(ctx, f.ra, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if nc.ID == old.ID || nc.KeyLabel == old.KeyLabel || nc.Status != remote.StatusActive {
		t.Fatalf("new credential %+v", nc)
	}
	oc, _ := old.Certificates()
	ncc, _ := nc.Certificates()
	if oc[0].PublicKeyAlgorithm != ncc[0].PublicKeyAlgorithm || oc[0].SerialNumber.Cmp(ncc[0].SerialNumber) == 0 || !remote.HasRemotePolicy(ncc[0]) {
		t.Fatal("the new certificate is not a new remote-signing certificate")
	}
	if err := f.signOnce(drA, nc.ID, a); err != nil {
		t.Fatalf("new credential with the carried-over passkey: %v", err)
	}
	if err := f.signOnce(drA, old.ID, a); !errors.Is(err, remote.ErrCredentialStatus) {
		t.Fatalf("old credential: %v", err)
	}
	if _, err := f.keys.Opener.OpenSigner(ctx, old.KeyURI); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("old key not destroyed: %v", err)
	}
}
