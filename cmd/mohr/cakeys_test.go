package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/store"
	"github.com/mohr-hix/mohr/keys"
)

// newIntermediateUnder makes a second intermediate (a new P-256 key) under the development root of dd, as a
// key rollover does, and returns its directory (intermediate.key, intermediate.pem).
func newIntermediateUnder(t *testing.T, dd string) string {
	t.Helper()
	rootKey, err := keys.ParsePEMSigner(mustRead(t, filepath.Join(dd, "ca", "root.key")))
	if err != nil {
		t.Fatal(err)
	}
	root, err := readOneCert(filepath.Join(dd, "ca", "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	k := newP256(t)
	inter, err := ca.SignIntermediate(root, rootKey, k.Public(), ca.DevIntermediateName, time.Now().Add(-time.Minute), 5*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := keys.WritePEMKey(filepath.Join(dir, "intermediate.key"), k); err != nil {
		t.Fatal(err)
	}
	if err := writeCertPEM(filepath.Join(dir, "intermediate.pem"), inter); err != nil {
		t.Fatal(err)
	}
	return dir
}

// caConfig writes a configuration naming the intermediate in dir (under root) and returns its path.
func caConfig(t *testing.T, dir, root string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mohr.yaml")
	os.WriteFile(p, []byte(fmt.Sprintf("ca:\n  key: file:%s\n  cert: %s\n  root: %s\n",
		filepath.Join(dir, "intermediate.key"), filepath.Join(dir, "intermediate.pem"), root)), 0o600)
	return p
}

// TestCAKeyRolloverAndRetire: after a rollover to a new intermediate key (under the same root) the old key
// issues nothing more, but signs the CRLs of what it issued; `mohr ca retire-key` refuses the key in use and,
// without --force and a reason, a key whose certificates have not expired; a retired key signs nothing, not
// even CRLs; a rollover to an intermediate of another hierarchy is refused; every step is in the audit log,
// which verifies.
func TestCAKeyRolloverAndRetire(t *testing.T) {
	dd := t.TempDir()
	mustMohr(t, dd, "ca", "init", "--dev")
	root := filepath.Join(dd, "ca", "root.pem")
	oldCfg := caConfig(t, filepath.Join(dd, "ca"), root)
	oldPEM := filepath.Join(dd, "ca", "intermediate.pem")
	newDir := newIntermediateUnder(t, dd)
	newCfg := caConfig(t, newDir, root)
	issue := func(cfg, name string) (string, string, int) {
		return mohr(t, dd, "--config", cfg, "cert", "issue", "--profile", "tsa", "--csr", writeCSR(t, t.TempDir(), "tsa", newP256(t)), "--name", name)
	}
	if _, errOut, code := issue(oldCfg, "TSA under the old key"); code != 0 {
		t.Fatalf("issue under the old key: %s", errOut)
	}

	// Rollover: the first issuance with the new key records it.
	out, errOut, code := issue(newCfg, "TSA under the new key")
	if code != 0 {
		t.Fatalf("issue under the new key: %s", errOut)
	}
	newInter, _ := readOneCert(filepath.Join(newDir, "intermediate.pem"))
	oldInter, _ := readOneCert(oldPEM)
	leaf, err := x509.ParseCertificate(pemBlock(t, out))
	if err != nil || leaf.CheckSignatureFrom(newInter) != nil {
		t.Fatalf("the certificate issued after the rollover is not signed by the new key: %v", err)
	}
	// The old key never issues again; it still signs its CRLs.
	if _, errOut, code := issue(oldCfg, "TSA under the superseded key"); code == 0 || !strings.Contains(errOut, "superseded") {
		t.Fatalf("the superseded key issued: exit %d %s", code, errOut)
	}
	crlDir := t.TempDir()
	mustMohr(t, dd, "--config", oldCfg, "crl", "generate", "--out", crlDir)
	crl, err := x509.ParseRevocationList(mustRead(t, filepath.Join(crlDir, "0.crl")))
	if err != nil || crl.CheckSignatureFrom(oldInter) != nil {
		t.Fatalf("the superseded key's CRL: %v", err)
	}
	// A rollover to another hierarchy is refused, and changes nothing.
	other := t.TempDir()
	mustMohr(t, other, "ca", "init", "--dev")
	if _, errOut, code := issue(caConfig(t, filepath.Join(other, "ca"), filepath.Join(other, "ca", "root.pem")), "TSA elsewhere"); code == 0 || !strings.Contains(errOut, "another root") {
		t.Fatalf("rollover to another root: exit %d %s", code, errOut)
	}

	// Retirement: not the key in use; not while its certificates are valid, unless forced with a reason.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{filepath.Join(newDir, "intermediate.pem")}, "in use"},
		{[]string{oldPEM}, "have not expired"},
		{[]string{oldPEM, "--force"}, "--reason"},
	} {
		if _, errOut, code := mohr(t, dd, append([]string{"--config", newCfg, "ca", "retire-key"}, tc.args...)...); code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("retire-key %v: exit %d %s (want %q)", tc.args, code, errOut, tc.want)
		}
	}
	if out := mustMohr(t, dd, "--config", newCfg, "ca", "retire-key", oldPEM, "--force", "--reason", "drill: the old HSM is decommissioned"); !strings.Contains(out, "retired") {
		t.Fatalf("retire-key --force: %s", out)
	}
	if _, errOut, code := mohr(t, dd, "--config", oldCfg, "crl", "generate", "--out", t.TempDir()); code == 0 || !strings.Contains(errOut, "retired") {
		t.Fatalf("CRLs by the retired key: exit %d %s", code, errOut)
	}
	if _, errOut, code := issue(oldCfg, "TSA under the retired key"); code == 0 || !strings.Contains(errOut, "retired") {
		t.Fatalf("the retired key issued: exit %d %s", code, errOut)
	}
	if _, errOut, code := issue(newCfg, "TSA after the retirement"); code != 0 {
		t.Fatalf("the new key after the retirement: %s", errOut)
	}

	// The audit log has each step, once, and verifies.
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dd, "mohr.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ents, err := st.AuditEntries(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range ents {
		kinds[e.Event.Kind]++
		if e.Event.Kind == eventCAKeyRetired {
			var d map[string]any
			json.Unmarshal(e.Event.Data, &d)
			if d["forced"] != true || d["reason"] == "" || d["unexpired"] != float64(1) || d["key"] != caKeyID(oldInter) {
				t.Errorf("ca.key.retired data %s", e.Event.Data)
			}
		}
	}
	if kinds[eventCAKeyActivated] != 2 || kinds[eventCAKeySuperseded] != 1 || kinds[eventCAKeyRetired] != 1 {
		t.Errorf("key events in the log: %v", kinds)
	}
	if out := mustMohr(t, dd, "--config", newCfg, "audit", "verify"); !strings.Contains(out, "intact") {
		t.Fatalf("audit verify: %s", out)
	}
}

// TestSupersededWhileRunning: a node that issues with a key another node supersedes (the rollover is recorded
// while it runs) refuses its next issuance at once, without a restart.
func TestSupersededWhileRunning(t *testing.T) {
	n := clockNode(t, &fakeClock{t: time.Now()})
	ctx := context.Background()
	req := ca.Request{Profile: ca.ProfileTSA, CommonName: "TSA", CSR: parseCSRFile(t, writeCSR(t, t.TempDir(), "tsa", newP256(t)))}
	if _, err := n.ca.Issue(ctx, req); err != nil {
		t.Fatalf("before the rollover: %v", err)
	}
	id := caKeyID(n.ca.Issuer().Cert)
	ev := newEvent(eventCAKeySuperseded, "system:test", id, map[string]any{"key": id})
	if err := n.st.PutBlob(ctx, caKeyStateBlob(id), []byte(caKeyStateSuperseded), ev); err != nil {
		t.Fatal(err)
	}
	req.CSR = parseCSRFile(t, writeCSR(t, t.TempDir(), "tsa2", newP256(t)))
	if _, err := n.ca.Issue(ctx, req); !errors.Is(err, ca.ErrSuspended) || !strings.Contains(err.Error(), "superseded") {
		t.Fatalf("after the rollover: %v, want ca.ErrSuspended (superseded)", err)
	}
}

func parseCSRFile(t *testing.T, path string) *x509.CertificateRequest {
	t.Helper()
	r, err := x509.ParseCertificateRequest(pemBlock(t, string(mustRead(t, path))))
	if err != nil {
		t.Fatal(err)
	}
	return r
}
