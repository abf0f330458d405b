package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testenv"
)

// TestCAKeyInSoftHSM creates the intermediate's key in a SoftHSM2 token with mohr ca init --key pkcs11:...,
// issues under it, and checks that mohr serve refuses to start when the configured certificate does not
// belong to the HSM key.
func TestCAKeyInSoftHSM(t *testing.T) {
	_, pin := testenv.SoftHSM(t, "MohrCLI")
	dd := t.TempDir()
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	os.WriteFile(pinFile, []byte(pin), 0o600)
	uri := "pkcs11:token=MohrCLI;object=intermediate-" + time.Now().Format("150405.000000") + ";pin-source=file:" + pinFile
	mustMohr(t, dd, "ca", "init", "--dev", "--key", uri)
	if b, _ := os.ReadFile(filepath.Join(dd, "ca", "intermediate.key")); b != nil {
		t.Fatal("a file key was written although the key lives in the HSM")
	}
	out := mustMohr(t, dd, "cert", "issue", "--profile", "tsa", "--csr", writeCSR(t, dir, "tsa", newP256(t)), "--name", "TSA")
	leaf := filepath.Join(dir, "tsa.pem")
	os.WriteFile(leaf, []byte(out), 0o644)
	if o, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(dd, "ca", "root.pem"),
		"-untrusted", filepath.Join(dd, "ca", "intermediate.pem"), leaf).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify of a certificate signed in the HSM: %v\n%s", err, o)
	}
	// The key is on the token and not extractable.
	o, err := exec.Command("pkcs11-tool", "--module", testenv.SoftHSMModule, "--token-label", "MohrCLI", "--login", "--pin", pin, "-O").CombinedOutput()
	if err != nil || !strings.Contains(string(o), "never extractable") {
		t.Fatalf("pkcs11-tool -O: %v\n%s", err, o)
	}

	// Swap in another CA's intermediate: serve must refuse the mismatch.
	other := t.TempDir()
	mustMohr(t, other, "ca", "init", "--dev")
	b, _ := os.ReadFile(filepath.Join(other, "ca", "intermediate.pem"))
	os.WriteFile(filepath.Join(dd, "ca", "intermediate.pem"), b, 0o644)
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte("listen: 127.0.0.1:0\npublic_listen: 127.0.0.1:0\n"), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mohrBin, "--data-dir", dd, "serve")
	cmd.Env = append(os.Environ(), "MOHR_DATA_DIR=", "MOHR_CONFIG=")
	o, err = cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(o), "does not match") {
		t.Fatalf("serve with a mismatched intermediate: err %v\n%s", err, o)
	}
}
