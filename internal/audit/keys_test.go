package audit_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mohr-hix/mohr/internal/audit"
)

// keyEvent is the audit event that activates or retires vkey.
func keyEvent(kind, vkey string) audit.Event {
	data, _ := json.Marshal(audit.KeyEventData{VKey: vkey})
	return audit.Event{Time: t0, Kind: kind, Actor: "system:test", Subject: "mohr.audit/hix", Data: data}
}

// TestVerifyKeyHistory checks VerifyKeys against the key history a log records: a rotation verifies with every
// key of the history (and not with one alone); a checkpoint by a key the log never activated is refused, even
// when the auditor trusts that key, before and after the log's first key event; a retired key's later
// checkpoints are refused and its earlier ones still verify; a log that records no key verifies with the
// trusted keys.
func TestVerifyKeyHistory(t *testing.T) {
	ctx := context.Background()
	k1, v1 := newCheckpointer(t, "hix")
	k2, v2 := newCheckpointer(t, "hix")
	k3, v3 := newCheckpointer(t, "hix") // trusted by the auditor, never activated by the log
	type step struct {
		ev *audit.Event
		cp *audit.Checkpointer
	}
	act := func(v string) step { e := keyEvent(audit.EventKeyActivated, v); return step{ev: &e} }
	ret := func(v string) step { e := keyEvent(audit.EventKeyRetired, v); return step{ev: &e} }
	ev := func(i int) step { e := event(i); return step{ev: &e} }
	cp := func(c *audit.Checkpointer) step { return step{cp: c} }
	build := func(steps ...step) *memLog {
		m := &memLog{}
		for _, s := range steps {
			if s.ev != nil {
				m.append(t, *s.ev)
			} else {
				m.checkpoint(t, s.cp)
			}
		}
		return m
	}
	all := []string{v1, v2, v3}
	for _, tc := range []struct {
		name   string
		log    *memLog
		vkeys  []string
		reason string // "" if the log verifies
		seq    int64
	}{
		{"rotation", build(act(v1), ev(1), cp(k1), act(v2), ev(2), cp(k1), cp(k2), ev(3), cp(k2)), all, "", 0},
		{"rotation, old key only", build(act(v1), ev(1), cp(k1), act(v2), ev(2), cp(k2)), []string{v1}, "checkpoint of size 4", 3},
		{"rotation, new key only", build(act(v1), ev(1), cp(k1), act(v2), ev(2), cp(k2)), []string{v2}, "checkpoint of size 2", 1},
		{"never activated, after the first key event", build(act(v1), ev(1), cp(k1), ev(2), cp(k3)), all, "had not activated", 2},
		{"never activated, at the first key event", build(act(v1), cp(k3)), all, "had not activated", 0},
		{"never activated, before the first key event", build(ev(1), cp(k3), ev(2), act(v1), ev(3), cp(k1)), all, "other than the first", 0},
		{"legacy checkpoints by the first key", build(ev(1), cp(k1), ev(2), act(v1), ev(3), cp(k1), act(v2), cp(k2)), all, "", 0},
		{"first key event a retirement", build(ev(1), cp(k1), ret(v3), act(v1), cp(k1)), all, "other than the first", 0},
		{"retired key signs later", build(act(v1), cp(k1), act(v2), cp(k2), ret(v1), ev(1), cp(k2), ev(2), cp(k1)), all, "had not activated or had retired", 4},
		{"retired key's earlier checkpoints", build(act(v1), ev(1), cp(k1), act(v2), cp(k2), ret(v1), ev(2), cp(k2)), all, "", 0},
		{"re-activated after retirement", build(act(v1), cp(k1), act(v2), ret(v1), cp(k2), act(v1), cp(k1)), all, "", 0},
		{"no key events", build(ev(1), cp(k1), ev(2), cp(k3)), all, "", 0},
		{"no key events, untrusted key", build(ev(1), cp(k1), ev(2), cp(k3)), []string{v1, v2}, "checkpoint of size 2", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := audit.VerifyKeys(ctx, tc.log, tc.vkeys)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("VerifyKeys: %v", err)
				}
				if res.Checkpoints != len(tc.log.cps) {
					t.Fatalf("%d checkpoints verified, the log has %d", res.Checkpoints, len(tc.log.cps))
				}
				return
			}
			var bad *audit.BadEntryError
			if !errors.As(err, &bad) || !strings.Contains(bad.Reason, tc.reason) || bad.Seq != tc.seq {
				t.Fatalf("VerifyKeys: %v, want entry %d (%s)", err, tc.seq, tc.reason)
			}
		})
	}
}

// TestSignerEd25519Only: the note signer over a crypto.Signer takes Ed25519 keys only, and its checkpoints
// verify with the verifier key of that public key.
func TestSignerEd25519Only(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	s, err := audit.NewSigner("hix", priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.NewSigner("hix", notEd25519{priv}); err == nil {
		t.Fatal("NewSigner took a key whose public half is not Ed25519")
	}
	msg := []byte("mohr.audit/hix\n1\nAAAA\n")
	sig, err := s.Sign(msg)
	if err != nil || !ed25519.Verify(pub, msg, sig) {
		t.Fatalf("Sign: %v", err)
	}
}

type notEd25519 struct{ ed25519.PrivateKey }

func (notEd25519) Public() crypto.PublicKey { return "not a key" }
