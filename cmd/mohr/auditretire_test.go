package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditRetireKey: after a rotation the old checkpoint key is retired with `mohr audit retire-key`; the
// key in use cannot be retired; the old key's earlier checkpoints still verify; and a checkpoint the retired
// key signs afterwards (a stolen key, or a node never reconfigured that does not record itself) is refused,
// and Mohr itself refuses to sign with it.
func TestAuditRetireKey(t *testing.T) {
	if testing.Short() {
		t.Skip("uses PostgreSQL and the CLI")
	}
	c := newTestCluster(t)
	oldV := strings.TrimSpace(string(mustRead(t, filepath.Join(c.shared, "audit.vkey"))))
	mustMohr(t, c.shared, "audit", "checkpoint") // activates the first key, checkpoint by it
	if _, _, code := mohr(t, c.shared, "audit", "retire-key", oldV); code == 0 {
		t.Fatal("the key in use was retired")
	}

	// Rotation to a new key, recorded by its first checkpoint.
	rot := t.TempDir()
	mustMohr(t, rot, "audit", "keygen")
	cfg2 := strings.Replace(string(mustRead(t, filepath.Join(c.shared, "mohr.yaml"))), filepath.Join(c.shared, "audit.skey"), filepath.Join(rot, "audit.skey"), 1)
	os.WriteFile(filepath.Join(rot, "mohr.yaml"), []byte(cfg2), 0o600)
	mustMohr(t, rot, "--config", filepath.Join(rot, "mohr.yaml"), "audit", "checkpoint")
	newV := filepath.Join(rot, "audit.vkey")
	if _, _, code := mohr(t, rot, "--config", filepath.Join(rot, "mohr.yaml"), "audit", "retire-key", newV); code == 0 {
		t.Fatal("the new key in use was retired")
	}
	for _, bad := range []string{"not a key", "PRIVATE+KEY+mohr.audit/x+00000000+AQ"} {
		if _, _, code := mohr(t, c.shared, "audit", "retire-key", bad); code == 0 {
			t.Errorf("retire-key %q accepted", bad)
		}
	}
	if out := mustMohr(t, c.shared, "audit", "retire-key", oldV); !strings.Contains(out, "retired") {
		t.Fatalf("retire-key: %s", out)
	}
	if !strings.Contains(c.psql(`SELECT string_agg(event, ' ') FROM audit_log WHERE event LIKE '%audit.key.retired%'`), oldV) {
		t.Fatal("the retirement is not in the audit log")
	}
	both := filepath.Join(rot, "both.vkeys")
	os.WriteFile(both, append(mustRead(t, filepath.Join(c.shared, "audit.vkey")), mustRead(t, newV)...), 0o644)
	if out := mustMohr(t, c.shared, "audit", "verify", "--vkey", both); !strings.Contains(out, "signed checkpoints verified") {
		t.Fatalf("verify after the retirement: %s", out)
	}

	// Mohr refuses to sign with the retired key.
	mustMohr(t, c.shared, "cert", "issue", "--profile", "tsa", "--csr", writeCSR(t, t.TempDir(), "tsa", newP256(t)), "--name", "TSA after retirement")
	if _, errOut, code := mohr(t, c.shared, "audit", "checkpoint"); code == 0 || !strings.Contains(errOut, "retired") {
		t.Fatalf("audit checkpoint with the retired key: exit %d %s", code, errOut)
	}
	// The retired key signs anyway, behind Mohr's back (its retirement marker removed and the log's record of
	// the key in use set back to it, so `audit checkpoint` appends no activation): verify refuses that checkpoint.
	c.psql(`DELETE FROM blobs WHERE name LIKE 'audit/retired/%'`)
	c.psql(`UPDATE blobs SET data = convert_to('` + oldV + `', 'UTF8') WHERE name = 'audit/active-vkey'`)
	mustMohr(t, c.shared, "audit", "checkpoint")
	out, errOut, code := mohr(t, c.shared, "audit", "verify", "--vkey", both)
	if code == 0 || !strings.Contains(errOut, "retired") {
		t.Fatalf("verify accepted a checkpoint by a retired key: exit %d %s %s", code, out, errOut)
	}
}
