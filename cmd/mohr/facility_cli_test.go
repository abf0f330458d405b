package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mohr-hix/mohr/internal/testenv"
)

// mohrEnv runs the binary in dir with extra environment and returns stdout, stderr and the exit code.
func mohrEnv(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(mohrBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "MOHR_CONFIG="), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return so.String(), se.String(), code
}

const facilityCSV = "siam_id,name,licence_number,licence_status,licence_from,licence_until,system_id,system_status,system_from,system_until\n" +
	"SIAM-10001,Imam Khomeini Hospital,LIC/1402/77,%s,2024-01-01,2030-03-20,SYS-HIS-42,active,2024-01-01,2030-03-20\n"

// TestFacilitySmallerPoints covers what a facility's IT person and the RA meet around a token's life: the
// sync says in words what it did to which token and why; token revoke takes a reason by name (keyCompromise)
// or code and a certificate file, and refuses a hold or a made-up reason with what to give; re-keying a
// hardware token on a label that is taken says what to do.
func TestFacilitySmallerPoints(t *testing.T) {
	testenv.Tool(t, "softhsm2-util")
	dd, work := t.TempDir(), t.TempDir()
	mustMohr(t, dd, "ca", "init", "--dev")
	csv := filepath.Join(work, "f.csv")
	os.WriteFile(csv, []byte(fmt.Sprintf(facilityCSV, "active")), 0o600)
	mustMohr(t, dd, "facility", "import", csv)

	// A hardware token on SoftHSM, enrolled on the RA's side.
	os.MkdirAll(filepath.Join(work, "tok"), 0o700)
	conf := filepath.Join(work, "softhsm2.conf")
	os.WriteFile(conf, []byte("directories.tokendir = "+filepath.Join(work, "tok")+"\nobjectstore.backend = file\n"), 0o600)
	env := []string{"SOFTHSM2_CONF=" + conf, "MOHR_DATA_DIR=" + dd}
	os.WriteFile(filepath.Join(work, "pin"), []byte("4711-2025\n"), 0o600)
	initTok := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "HIX", "--so-pin", "9911-2233", "--pin", "4711-2025")
	initTok.Env = append(os.Environ(), env...)
	if out, err := initTok.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	key := "pkcs11:token=HIX;object=adapter?pin-source=file:" + filepath.Join(work, "pin")
	code := strings.SplitN(mustMohr(t, dd, "token", "code", "--siam", "SIAM-10001"), "\n", 2)[0]
	so, se, rc := mohrEnv(t, work, env, "token", "keygen", "--siam", "SIAM-10001", "--pkcs11", key, "--csr-out", "a.csr")
	if rc != 0 || !strings.Contains(so, "generated an EC P-256 key") {
		t.Fatalf("keygen: %d\n%s%s", rc, so, se)
	}
	so, se, rc = mohrEnv(t, work, env, "token", "enrol", "--code", code, "--csr", "a.csr", "--kind", "pkcs11", "--chain-out", "chain.pem")
	if rc != 0 {
		t.Fatalf("enrol: %d\n%s%s", rc, so, se)
	}

	// Sync: a suspended licence holds the token, restored it releases it; each line says what and why.
	os.WriteFile(csv, []byte(fmt.Sprintf(facilityCSV, "suspended")), 0o600)
	mustMohr(t, dd, "facility", "import", csv)
	out := mustMohr(t, dd, "facility", "sync")
	if !strings.Contains(out, "checked 1 facilities") || !strings.Contains(out, "1 token changes") ||
		!strings.Contains(out, "on hold (certificateHold): licence-not-active") || strings.Contains(out, "(, reason") {
		t.Fatalf("sync after a suspension:\n%s", out)
	}
	os.WriteFile(csv, []byte(fmt.Sprintf(facilityCSV, "active")), 0o600)
	mustMohr(t, dd, "facility", "import", csv)
	if out := mustMohr(t, dd, "facility", "sync"); !strings.Contains(out, "released token") || !strings.Contains(out, "good standing again") {
		t.Fatalf("sync after the licence came back:\n%s", out)
	}

	// Revoke: reasons by name, refusals that say what to give.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cert", "chain.pem", "--reason", "certificateHold"}, "give keyCompromise"},
		{[]string{"--cert", "chain.pem", "--reason", "stolen"}, "give keyCompromise"},
		{[]string{"--cert", "none.pem"}, "give the token's certificate or chain file"},
		{[]string{"abc123"}, "no token with serial abc123"},
		{[]string{}, "give the token's serial"},
	} {
		_, se, rc := mohrEnv(t, work, env, append([]string{"token", "revoke"}, c.args...)...)
		if rc == 0 || !strings.Contains(se, c.want) || goErrorChain.MatchString(se) {
			t.Errorf("token revoke %v: exit %d, want %q:\n%s", c.args, rc, c.want, se)
		}
	}
	so, se, rc = mohrEnv(t, work, env, "token", "revoke", "--cert", "chain.pem", "--reason", "keyCompromise")
	if rc != 0 || !strings.Contains(so, "(keyCompromise)") {
		t.Fatalf("revoke: %d\n%s%s", rc, so, se)
	}
	if list := mustMohr(t, dd, "token", "list"); !strings.Contains(list, "revoked") {
		t.Fatalf("token list after revoke:\n%s", list)
	}

	// Re-key after the revocation: the label is taken; the message says how to go on, and that works.
	_, se, rc = mohrEnv(t, work, env, "token", "keygen", "--siam", "SIAM-10001", "--pkcs11", key, "--csr-out", "b.csr")
	if rc == 0 || !strings.Contains(se, "object=adapter-2") || strings.Contains(se, "4711") || goErrorChain.MatchString(se) {
		t.Fatalf("re-keygen on a taken label: exit %d\n%s", rc, se)
	}
	key2 := strings.Replace(key, "object=adapter", "object=adapter-2", 1)
	if so, se, rc := mohrEnv(t, work, env, "token", "keygen", "--siam", "SIAM-10001", "--pkcs11", key2, "--csr-out", "b.csr"); rc != 0 {
		t.Fatalf("keygen on a new label: %d\n%s%s", rc, so, se)
	}
}
