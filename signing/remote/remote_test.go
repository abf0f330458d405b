package remote_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/signing/remote"
)

// TestEnrolKeyInHSM: enrolment generates a sensitive, never-extractable key in SoftHSM2 labelled for the
// physician (checked from outside with pkcs11-tool), the certificate asserts the physician-signing and the
// remote-signing policies, and the credential and its passkey are stored.
func TestEnrolKeyInHSM(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			f := newFixture(t, dialect)
			cred, _ := f.enrol(drA)
			if !strings.HasPrefix(cred.KeyLabel, "remote-"+drA.council+"-") || !strings.Contains(cred.KeyURI, "object="+cred.KeyLabel) {
				t.Fatalf("key label %q / URI %q not per physician", cred.KeyLabel, cred.KeyURI)
			}
			chain, err := cred.Certificates()
			if err != nil || len(chain) != 2 {
				t.Fatalf("chain: %v (%d)", err, len(chain))
			}
			leaf := chain[0]
			if !remote.HasRemotePolicy(leaf) {
				t.Errorf("certificate lacks the remote-signing policy %s: %v", hixext.OIDPolicyRemoteSigning, leaf.Policies)
			}
			phys, _ := x509.OIDFromInts([]uint64{2, 999, 1742, 2, 3})
			found := false
			for _, p := range leaf.Policies {
				found = found || p.Equal(phys)
			}
			if !found {
				t.Errorf("certificate lacks the physician-signing policy: %v", leaf.Policies)
			}
			if leaf.KeyUsage != x509.KeyUsageContentCommitment || leaf.Subject.SerialNumber != "IDCIR-"+drA.national {
				t.Errorf("profile: keyUsage %v, serialNumber %q", leaf.KeyUsage, leaf.Subject.SerialNumber)
			}
			if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
				t.Errorf("key type %T", leaf.PublicKey)
			}
			pks, err := f.st.Passkeys(context.Background(), cred.ID)
			if err != nil || len(pks) != 1 {
				t.Fatalf("passkeys: %v %d", err, len(pks))
			}
			for _, kind := range []string{"remote.credential.enrolled", "remote.passkey.registered"} {
				if len(f.events(kind)) != 1 {
					t.Errorf("audit: %d %s events", len(f.events(kind)), kind)
				}
			}

			testenv.Tool(t, "pkcs11-tool")
			out, err := exec.Command("pkcs11-tool", "--module", f.module, "--token-label", tokenLabel, "-O", "--login", "--pin", f.pin).CombinedOutput()
			if err != nil {
				t.Fatalf("pkcs11-tool: %v\n%s", err, out)
			}
			blk := privateKeyBlock(string(out), cred.KeyLabel)
			if blk == "" {
				t.Fatalf("pkcs11-tool does not list %s:\n%s", cred.KeyLabel, out)
			}
			for _, want := range []string{"sensitive", "always sensitive", "never extractable", "sign"} {
				if !strings.Contains(blk, want) {
					t.Errorf("pkcs11-tool does not say %q for %s:\n%s", want, cred.KeyLabel, blk)
				}
			}
		})
	}
}

// privateKeyBlock returns pkcs11-tool's lines about the private key labelled label.
func privateKeyBlock(out, label string) string {
	blocks := strings.Split(out, "Private Key Object")
	for _, b := range blocks[1:] {
		if i := strings.Index(b, "Object;"); i > 0 {
			b = b[:i]
		}
		if strings.Contains(b, "label:      "+label+"\n") || strings.Contains(b, "label:      "+label+"\r") {
			return b
		}
	}
	return ""
}

// TestActivateAndSign: ten hashes, one assertion, ten HSM signatures that verify under the certificate; the
// audit log holds the request, the grant, the authorisation and the signatures, each with the hashes.
func TestActivateAndSign(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			f := newFixture(t, dialect)
			cred, a := f.enrol(drA)
			ctx := context.Background()
			hashes := randomHashes(10)
			before := f.keys.signs.Load() // enrolment signed the CSR
			req, err := f.svc.BeginActivation(ctx, drA.caller(), cred.ID, hashes)
			if err != nil {
				t.Fatal(err)
			}
			nonce := mustHex(t, req.ID)
			if got, want := []byte(req.Options.Response.Challenge), remote.Challenge(cred.ID, nonce, hashes); string(got) != string(want) {
				t.Fatal("challenge is not the hash over the credential, nonce and hashes")
			}
			if req.Options.Response.UserVerification != "required" || len(req.Options.Response.AllowedCredentials) != 1 {
				t.Fatalf("assertion options: %+v", req.Options.Response)
			}
			asn, err := a.Assert(mustJSON(t, req.Options))
			if err != nil {
				t.Fatal(err)
			}
			act, err := f.svc.Activate(ctx, drA.caller(), cred.ID, req.ID, asn)
			if err != nil {
				t.Fatal(err)
			}
			sigs, err := f.svc.SignHash(ctx, drA.caller(), cred.ID, act.SAD, hashes)
			if err != nil {
				t.Fatal(err)
			}
			chain, _ := cred.Certificates()
			pub := chain[0].PublicKey.(*ecdsa.PublicKey)
			for i, s := range sigs {
				if !ecdsa.VerifyASN1(pub, hashes[i], s) {
					t.Fatalf("signature %d does not verify", i)
				}
			}
			if n := f.keys.signs.Load() - before; n != 10 {
				t.Errorf("HSM signed %d times, want 10", n)
			}
			for _, kind := range []string{"remote.activation.requested", "remote.activation.granted", "remote.signature.authorized", "remote.signature"} {
				evs := f.events(kind)
				if len(evs) != 1 {
					t.Fatalf("audit: %d %s events", len(evs), kind)
				}
				for _, h := range hashes {
					if !strings.Contains(string(evs[0].Data), hexs(h)) {
						t.Errorf("%s event lacks hash %s", kind, hexs(h))
					}
				}
				if strings.Contains(string(evs[0].Data), act.SAD) {
					t.Errorf("%s event holds the SAD itself", kind)
				}
			}
		})
	}
}

// TestRefusals presents each forbidden thing and checks it is refused with the right kind of error, that
// the HSM signed nothing, and that the audit log records the attempt.
func TestRefusals(t *testing.T) {
	f := newFixture(t, "sqlite")
	credA, authA := f.enrol(drA)
	credB, authB := f.enrol(drB)
	ctx := context.Background()

	// activate returns a fresh SAD over hashes for credA.
	activate := func(hashes [][]byte) remote.Activation {
		t.Helper()
		req, err := f.svc.BeginActivation(ctx, drA.caller(), credA.ID, hashes)
		if err != nil {
			t.Fatal(err)
		}
		asn, err := authA.Assert(mustJSON(t, req.Options))
		if err != nil {
			t.Fatal(err)
		}
		act, err := f.svc.Activate(ctx, drA.caller(), credA.ID, req.ID, asn)
		if err != nil {
			t.Fatal(err)
		}
		return act
	}
	noSign := func(t *testing.T, fn func() error, want error, op, text string, hashes [][]byte) {
		t.Helper()
		before := f.keys.signs.Load()
		sigEvents := len(f.events("remote.signature"))
		err := fn()
		if !errors.Is(err, want) {
			t.Fatalf("error %v, want %v", err, want)
		}
		if f.keys.signs.Load() != before || len(f.events("remote.signature")) != sigEvents {
			t.Fatal("something was signed")
		}
		if !f.refusedWith(op, hashes, text) {
			t.Fatalf("no remote.refused event for %s %q with the hashes", op, text)
		}
	}

	t.Run("assertion for other hashes", func(t *testing.T) {
		hashes, other := randomHashes(3), randomHashes(3)
		req, err := f.svc.BeginActivation(ctx, drA.caller(), credA.ID, hashes)
		if err != nil {
			t.Fatal(err)
		}
		// The authenticator signs a challenge computed over other hashes with the same nonce.
		asn, err := authA.AssertChallenge(base64.RawURLEncoding.EncodeToString(remote.Challenge(credA.ID, mustHex(t, req.ID), other)))
		if err != nil {
			t.Fatal(err)
		}
		noSign(t, func() error { _, err := f.svc.Activate(ctx, drA.caller(), credA.ID, req.ID, asn); return err },
			remote.ErrAssertion, "activate", "", hashes)
	})
	t.Run("replayed assertion", func(t *testing.T) {
		hashes := randomHashes(2)
		req, _ := f.svc.BeginActivation(ctx, drA.caller(), credA.ID, hashes)
		asn, _ := authA.Assert(mustJSON(t, req.Options))
		if _, err := f.svc.Activate(ctx, drA.caller(), credA.ID, req.ID, asn); err != nil {
			t.Fatal(err)
		}
		// The same assertion again for the same request: the nonce is used.
		noSign(t, func() error { _, err := f.svc.Activate(ctx, drA.caller(), credA.ID, req.ID, asn); return err },
			remote.ErrUsed, "activate", "already used", hashes)
		// The same assertion for a new request over the same hashes: another nonce, another challenge.
		req2, _ := f.svc.BeginActivation(ctx, drA.caller(), credA.ID, hashes)
		noSign(t, func() error { _, err := f.svc.Activate(ctx, drA.caller(), credA.ID, req2.ID, asn); return err },
			remote.ErrAssertion, "activate", "", hashes)
	})
	t.Run("expired activation request", func(t *testing.T) {
		hashes := randomHashes(1)
		req, _ := f.svc.BeginActivation(ctx, drA.caller(), credA.ID, hashes)
		asn, _ := authA.Assert(mustJSON(t, req.Options))
		f.clock.Advance(2*time.Minute + time.Second)
		noSign(t, func() error { _, err := f.svc.Activate(ctx, drA.caller(), credA.ID, req.ID, asn); return err },
			remote.ErrExpired, "activate", "expired", hashes)
	})
	t.Run("expired SAD", func(t *testing.T) {
		hashes := randomHashes(2)
		act := activate(hashes)
		f.clock.Advance(61 * time.Second)
		noSign(t, func() error { _, err := f.svc.SignHash(ctx, drA.caller(), credA.ID, act.SAD, hashes); return err },
			remote.ErrExpired, "signHash", "expired", hashes)
	})
	t.Run("reused SAD", func(t *testing.T) {
		hashes := randomHashes(2)
		act := activate(hashes)
		if _, err := f.svc.SignHash(ctx, drA.caller(), credA.ID, act.SAD, hashes[:1]); err != nil {
			t.Fatal(err)
		}
		noSign(t, func() error { _, err := f.svc.SignHash(ctx, drA.caller(), credA.ID, act.SAD, hashes[:1]); return err },
			remote.ErrUsed, "signHash", "signed already", hashes[:1])
		// All or none: the used hash with the unused one signs neither, and the unused one stays usable.
		noSign(t, func() error { _, err := f.svc.SignHash(ctx, drA.caller(), credA.ID, act.SAD, hashes); return err },
			remote.ErrUsed, "signHash", "signed already", hashes)
		if _, err := f.svc.SignHash(ctx, drA.caller(), credA.ID, act.SAD, hashes[1:]); err != nil {
			t.Fatalf("the unused hash: %v", err)
		}
	})
	t.Run("hash not covered by the SAD", func(t *testing.T) {
		hashes := randomHashes(2)
		act := activate(hashes)
		other := randomHashes(1)
		noSign(t, func() error { _, err := f.svc.SignHash(ctx, drA.caller(), credA.ID, act.SAD, other); return err },
			remote.ErrNotAuthorized, "signHash", "", other)
	})
	t.Run("another physician's passkey", func(t *testing.T) {
		hashes := randomHashes(2)
		req, _ := f.svc.BeginActivation(ctx, drA.caller(), credA.ID, hashes)
		asn, _ := authB.Assert(mustJSON(t, req.Options)) // Dr B's authenticator answers Dr A's request
		noSign(t, func() error { _, err := f.svc.Activate(ctx, drA.caller(), credA.ID, req.ID, asn); return err },
			remote.ErrAssertion, "activate", "", hashes)
	})
	t.Run("another physician using the credential", func(t *testing.T) {
		hashes := randomHashes(1)
		noSign(t, func() error { _, err := f.svc.BeginActivation(ctx, drB.caller(), credA.ID, hashes); return err },
			remote.ErrNotFound, "authorize", "", hashes)
		act := activate(hashes)
		noSign(t, func() error { _, err := f.svc.SignHash(ctx, drB.caller(), credA.ID, act.SAD, hashes); return err },
			remote.ErrNotFound, "signHash", "", hashes)
		// Dr B's SAD for Dr A's hashes on Dr B's own credential: not covered.
		noSign(t, func() error { _, err := f.svc.SignHash(ctx, drB.caller(), credB.ID, act.SAD, hashes); return err },
			remote.ErrNotAuthorized, "signHash", "another credential", hashes)
	})
	t.Run("operator and RA officer cannot sign", func(t *testing.T) {
		hashes := randomHashes(1)
		act := activate(hashes)
		for _, c := range []remote.Caller{
			{Role: remote.RoleOperator, Actor: "admin:local"},
			{Role: remote.RoleRAOfficer, Actor: "api:ra-officer:ra1"},
			{Role: remote.RoleOperator, CouncilNumber: drA.council, Actor: "forged"},
		} {
			noSign(t, func() error { _, err := f.svc.SignHash(ctx, c, credA.ID, act.SAD, hashes); return err },
				remote.ErrForbidden, "signHash", "only the physician", hashes)
			noSign(t, func() error { _, err := f.svc.BeginActivation(ctx, c, credA.ID, hashes); return err },
				remote.ErrForbidden, "authorize", "only the physician", hashes)
		}
	})
	t.Run("no user verification", func(t *testing.T) {
		hashes := randomHashes(1)
		req, _ := f.svc.BeginActivation(ctx, drA.caller(), credA.ID, hashes)
		authA.UserVerified = false
		asn, _ := authA.Assert(mustJSON(t, req.Options))
		authA.UserVerified = true
		noSign(t, func() error { _, err := f.svc.Activate(ctx, drA.caller(), credA.ID, req.ID, asn); return err },
			remote.ErrAssertion, "activate", "", hashes)
	})
	t.Run("bad hash lists", func(t *testing.T) {
		dup := randomHashes(1)
		for _, hs := range [][][]byte{nil, randomHashes(21), {make([]byte, 31)}, {dup[0], dup[0]}} {
			noSign(t, func() error { _, err := f.svc.BeginActivation(ctx, drA.caller(), credA.ID, hs); return err },
				remote.ErrBadRequest, "authorize", "", nil)
		}
	})
	t.Run("suspended credential", func(t *testing.T) {
		hashes := randomHashes(2)
		act := activate(hashes)
		if err := f.svc.Suspend(ctx, f.ra, credA.ID, "test"); err != nil {
			t.Fatal(err)
		}
		noSign(t, func() error { _, err := f.svc.SignHash(ctx, drA.caller(), credA.ID, act.SAD, hashes); return err },
			remote.ErrCredentialStatus, "signHash", "suspended", hashes)
		noSign(t, func() error { _, err := f.svc.BeginActivation(ctx, drA.caller(), credA.ID, hashes); return err },
			remote.ErrCredentialStatus, "authorize", "suspended", hashes)
		if err := f.svc.Resume(ctx, f.ra, credA.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.SignHash(ctx, drA.caller(), credA.ID, act.SAD, hashes); err != nil {
			t.Fatalf("after resume: %v", err)
		}
	})
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hexDecode(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOneUseUnderConcurrency: two concurrent calls on PostgreSQL answer the same activation
// request and redeem the same SAD at once; exactly one of each wins.
func TestOneUseUnderConcurrency(t *testing.T) {
	f := newFixture(t, "postgres")
	cred, a := f.enrol(drA)
	ctx := context.Background()
	hashes := randomHashes(4)
	req, err := f.svc.BeginActivation(ctx, drA.caller(), cred.ID, hashes)
	if err != nil {
		t.Fatal(err)
	}
	asn, _ := a.Assert(mustJSON(t, req.Options))
	type res struct {
		act remote.Activation
		err error
	}
	out := make(chan res, 2)
	for i := 0; i < 2; i++ {
		go func() {
			act, err := f.svc.Activate(ctx, drA.caller(), cred.ID, req.ID, asn)
			out <- res{act, err}
		}()
	}
	var act remote.Activation
	wins := 0
	for i := 0; i < 2; i++ {
		r := <-out
		if r.err == nil {
			wins++
			act = r.act
		} else if !errors.Is(r.err, remote.ErrUsed) {
			t.Errorf("loser: %v", r.err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d activations won", wins)
	}
	sigs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { _, err := f.svc.SignHash(ctx, drA.caller(), cred.ID, act.SAD, hashes); sigs <- err }()
	}
	wins = 0
	for i := 0; i < 2; i++ {
		if err := <-sigs; err == nil {
			wins++
		} else if !errors.Is(err, remote.ErrUsed) {
			t.Errorf("loser: %v", err)
		}
	}
	if wins != 1 || len(f.events("remote.signature")) != 1 {
		t.Fatalf("%d signHash calls won, %d signature events", wins, len(f.events("remote.signature")))
	}
}
