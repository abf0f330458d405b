package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/testenv"
)

// TestAuditKeyInHSMTwoNodes: two nodes on one PostgreSQL and one SoftHSM2 token have one audit identity. The
// deployment starts with a file checkpoint key, rotates to an Ed25519 key made in the HSM by
// `mohr audit keygen --hsm` (only the verifier key leaves the token), and both nodes sign checkpoints with it;
// the rotation is one audit.key.activated event however many nodes start with the key; `mohr audit verify`
// passes across the rotation with the keys of the history and fails with one alone. The old file key is then
// retired: a node still configured with it refuses to start and to checkpoint. A checkpoint by a key the log
// never activated is refused by `audit verify` even when the auditor trusts that key.
func TestAuditKeyInHSMTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two servers")
	}
	const token = "MohrAudit"
	_, pin := testenv.SoftHSM(t, token)
	testenv.Tool(t, "pkcs11-tool")
	c := newTestCluster(t)
	cfgPath := filepath.Join(c.shared, "mohr.yaml")
	fileCfg := string(mustRead(t, cfgPath))
	vkeys := filepath.Join(c.shared, "audit.vkey") // the cluster's audit.vkeys file
	fileV := strings.TrimSpace(string(mustRead(t, vkeys)))
	issue := func(name string) {
		mustMohr(t, c.shared, "cert", "issue", "--profile", "tsa", "--csr", writeCSR(t, t.TempDir(), "tsa", newP256(t)), "--name", name)
	}
	covered := func() bool {
		return c.psql(`SELECT COALESCE(MAX(size), 0) FROM audit_checkpoints`) == c.psql(`SELECT size FROM audit_head`)
	}
	a, b := &testNode{}, &testNode{}
	c.start(a)
	issue("TSA before the rotation")
	if !waitFor(clusterWait, covered) {
		t.Fatal("no checkpoint by the file key covers the log")
	}

	// The HSM key: generated on the token, its verifier key written out and added to audit.vkeys.
	pinFile := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(pinFile, []byte(pin+"\n"), 0o600)
	label := "audit-" + time.Now().Format("150405.000000")
	uri := "pkcs11:token=" + token + ";object=" + label + "?module-path=" + testenv.SoftHSMModule + "&pin-source=file:" + pinFile
	hsmVFile := filepath.Join(c.shared, "audit-hsm.vkey")
	out := mustMohr(t, c.shared, "audit", "keygen", "--hsm", uri, "--vkey-out", hsmVFile)
	hsmV := strings.TrimSpace(string(mustRead(t, hsmVFile)))
	if !strings.Contains(out, hsmV) || !strings.Contains(string(mustRead(t, vkeys)), hsmV) || !strings.Contains(string(mustRead(t, vkeys)), fileV) {
		t.Fatalf("keygen --hsm: the verifier key is not in %s with the file key's:\n%s", vkeys, out)
	}
	if _, _, code := mohr(t, c.shared, "audit", "keygen", "--hsm", uri, "--vkey-out", filepath.Join(t.TempDir(), "x.vkey")); code == 0 {
		t.Fatal("a second key with the same label was generated")
	}
	m := regexp.MustCompile(`(?m)^    key: '(pkcs11:[^']+)'$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keygen --hsm printed no audit.key:\n%s", out)
	}
	tool, err := exec.Command("pkcs11-tool", "--module", testenv.SoftHSMModule, "--token-label", token, "--login", "--pin", pin, "-O").CombinedOutput()
	if err != nil || !regexp.MustCompile(`Private Key Object; EC_EDWARDS\s+label:\s+`+regexp.QuoteMeta(label)+`[^\n]*\n[^\n]*\n[^\n]*\n\s+Access:\s+sensitive, always sensitive, never extractable`).Match(tool) {
		t.Fatalf("pkcs11-tool does not list the audit key as a sensitive, never-extractable Ed25519 key: %v\n%s", err, tool)
	}

	// Rolling rotation: every node gets audit.key = the HSM key and restarts; one activation in the log.
	hsmCfg := strings.Replace(fileCfg, "key: file:"+filepath.Join(c.shared, "audit.skey"), "key: '"+m[1]+"'", 1)
	if hsmCfg == fileCfg {
		t.Fatal("the configuration names no file audit key to replace")
	}
	os.WriteFile(cfgPath, []byte(hsmCfg), 0o600)
	rotSize := c.psql(`SELECT size FROM audit_head`)
	c.kill(a)
	c.start(a)
	c.start(b)
	acts := c.psql(`SELECT string_agg(event, E'\n' ORDER BY seq) FROM audit_log WHERE event LIKE '%audit.key.activated%'`)
	if n := strings.Count(acts, "audit.key.activated"); n != 2 || !strings.Contains(acts, hsmV) || !strings.Contains(acts, fileV) {
		t.Fatalf("want the file key's and the HSM key's activations, once each; the log has %d:\n%s", n, acts)
	}
	// Each node signs with the HSM key while it is the only one up (and so holds the checkpoint lease).
	for i, alone := range []*testNode{b, a} {
		other := []*testNode{a, b}[i]
		c.kill(other)
		issue(fmt.Sprint("TSA after the rotation ", i))
		if !waitFor(clusterWait, covered) {
			t.Fatalf("node %s alone: no checkpoint covers the log", alone.pub())
		}
		size := c.psql(`SELECT MAX(size) FROM audit_checkpoints`)
		note := c.psql(`SELECT note FROM audit_checkpoints WHERE size = ` + size)
		if _, err := audit.OpenCheckpoint([]byte(note+"\n"), hsmV); err != nil {
			t.Fatalf("the checkpoint of size %s by node %s is not signed by the HSM key: %v\n%s", size, alone.pub(), err, note)
		}
		c.start(other)
	}
	if n := c.psql(`SELECT count(*) >= 2 FROM audit_checkpoints WHERE size > ` + rotSize); n != "t" {
		t.Fatal("fewer than two checkpoints after the rotation")
	}
	if out := mustMohr(t, c.shared, "audit", "verify"); !strings.Contains(out, "signed checkpoints verified") {
		t.Fatalf("audit verify across the rotation: %s", out)
	}
	fileVFile := filepath.Join(t.TempDir(), "file.vkey")
	os.WriteFile(fileVFile, []byte(fileV+"\n"), 0o644)
	for _, only := range []string{hsmVFile, fileVFile} {
		if _, _, code := mohr(t, c.shared, "audit", "verify", "--vkey", only); code != exitAuditBad {
			t.Errorf("audit verify with only %s: exit %d, want %d", only, code, exitAuditBad)
		}
	}

	// The file key is retired; a node still configured with it neither starts nor checkpoints.
	if out := mustMohr(t, c.shared, "audit", "retire-key", fileV); !strings.Contains(out, "retired") {
		t.Fatalf("retire-key: %s", out)
	}
	oldDir := t.TempDir()
	os.WriteFile(filepath.Join(oldDir, "mohr.yaml"), []byte(fileCfg), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	serve := exec.CommandContext(ctx, mohrBin, "--data-dir", oldDir, "serve", "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--public-listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	serve.Env = append(os.Environ(), "MOHR_DATA_DIR=", "MOHR_CONFIG=")
	if o, err := serve.CombinedOutput(); err == nil || ctx.Err() != nil || !strings.Contains(string(o), "retired") {
		t.Fatalf("a node with the retired key: err %v\n%s", err, o)
	}
	if _, errOut, code := mohr(t, oldDir, "audit", "checkpoint"); code == 0 || !strings.Contains(errOut, "retired") {
		t.Fatalf("audit checkpoint with the retired key: exit %d %s", code, errOut)
	}
	issue("TSA after the retirement")
	if !waitFor(clusterWait, covered) {
		t.Fatal("no checkpoint after the retirement")
	}
	if out := mustMohr(t, c.shared, "audit", "verify"); !strings.Contains(out, "signed checkpoints verified") {
		t.Fatalf("audit verify after the retirement: %s", out)
	}

	// A key the auditor trusts but the log never activated: a checkpoint it signs is refused. (The log's
	// record of the key in use is set to it behind Mohr's back, so `audit checkpoint` records no activation.)
	c.kill(a)
	c.kill(b)
	rogue := t.TempDir()
	mustMohr(t, rogue, "audit", "keygen")
	rogueV := strings.TrimSpace(string(mustRead(t, filepath.Join(rogue, "audit.vkey"))))
	addVKey(vkeys, rogueV)
	os.WriteFile(filepath.Join(rogue, "mohr.yaml"), []byte(strings.Replace(fileCfg, filepath.Join(c.shared, "audit.skey"), filepath.Join(rogue, "audit.skey"), 1)), 0o600)
	issue("TSA before the rogue checkpoint")
	c.psql(`UPDATE blobs SET data = convert_to('` + rogueV + `', 'UTF8') WHERE name = 'audit/active-vkey'`)
	mustMohr(t, rogue, "audit", "checkpoint")
	if strings.Contains(c.psql(`SELECT string_agg(event, ' ') FROM audit_log WHERE event LIKE '%audit.key.activated%'`), rogueV) {
		t.Fatal("the rogue key was activated: the test does not test what it says")
	}
	out, errOut, code := mohr(t, c.shared, "audit", "verify")
	if code != exitAuditBad || !strings.Contains(errOut, "had not activated") {
		t.Fatalf("audit verify with a checkpoint by a never-activated key: exit %d\n%s%s", code, out, errOut)
	}
}

// TestCheckpointKeyRetiredWhileRunning: a node keeps running with a key that another host retires (after the
// rotation, before the node was restarted): it signs no more checkpoints and leaves the lease to the others,
// and a restart with that key is refused.
func TestCheckpointKeyRetiredWhileRunning(t *testing.T) {
	n := clockNode(t, &fakeClock{t: time.Now()})
	ctx := context.Background()
	now := time.Now()
	if ok, err := checkpointDue(ctx, n.st, n.audit, "node-1", time.Second, now); err != nil || !ok {
		t.Fatalf("first checkpoint: %v %v", ok, err)
	}
	count := func() int {
		cps, err := n.st.AuditCheckpoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(cps)
	}
	before := count()
	data, _ := json.Marshal(audit.KeyEventData{VKey: n.audit.vkey})
	retire := audit.Event{Time: now, Kind: audit.EventKeyRetired, Actor: "cli:test", Subject: "mohr.audit/mohr", Data: data}
	if err := n.st.PutBlob(ctx, auditRetiredBlob(n.audit.vkey), []byte(n.audit.vkey), retire); err != nil {
		t.Fatal(err)
	}
	ok, err := checkpointDue(ctx, n.st, n.audit, "node-1", time.Second, now.Add(5*time.Second))
	if ok || err == nil || !strings.Contains(err.Error(), "retired") {
		t.Fatalf("checkpoint by a retired key: signed %v, err %v", ok, err)
	}
	if count() != before {
		t.Fatal("a checkpoint was stored")
	}
	// The lease is left to a node with the current key: node-1 did not renew it (it expires 2 s after the
	// first checkpoint, by the database's clock), so node-2 takes it once it runs out.
	if !waitFor(clusterWait, func() bool {
		ok, err := n.st.ClaimLease(ctx, checkpointLease, "node-2", time.Minute)
		return err == nil && ok
	}) {
		t.Fatal("the node with the retired key kept the checkpoint lease")
	}
	if err := recordAuditKey(ctx, n.st, n.audit, "system:serve"); err == nil || !strings.Contains(err.Error(), "retired") {
		t.Fatalf("restart with the retired key: %v", err)
	}
}
