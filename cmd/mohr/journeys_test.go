package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testenv"
)

// journeyScript returns the `sh` code blocks of section (a "## " heading of docs/journeys.md that starts
// with title), joined in order: exactly what a person copies and pastes.
func journeyScript(t *testing.T, title string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "journeys.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	in, code, blocks := false, false, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case !code && strings.HasPrefix(l, "## "):
			in = strings.HasPrefix(l, "## "+title)
		case in && !code && strings.TrimSpace(l) == "```sh":
			code = true
			blocks++
			fmt.Fprintf(&b, "# --- block %d\n", blocks)
		case code && strings.TrimSpace(l) == "```":
			code = false
		case code:
			b.WriteString(l + "\n")
		}
	}
	if blocks == 0 {
		t.Fatalf("docs/journeys.md: no sh blocks under %q", title)
	}
	return b.String()
}

// goErrorChain matches what a person must never see: Go error chains and internal detail.
var goErrorChain = regexp.MustCompile(`(?i)(x509: |tls: |dial tcp|open [^ ]+: no such|%!|\bpanic\b|goroutine |: EOF\b|pkcs11: 0x|sqlite|unexpected status)`)

// TestJourneyFacility runs the facility journey of docs/journeys.md with the built binary against a running
// `mohr serve` (SoftHSM for the hardware token, and a software token), then tries the refusals a facility
// meets first and checks each reads as an instruction, not a Go error chain.
func TestJourneyFacility(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "openssl", "softhsm2-util"} {
		testenv.Tool(t, tool)
	}
	dd := t.TempDir()
	apiPort, pubPort, adPort, gwPort := freePort(t), freePort(t), freePort(t), freePort(t)
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte(fmt.Sprintf("listen: 127.0.0.1:%d\npublic_listen: 127.0.0.1:%d\n", apiPort, pubPort)), 0o600)
	mustMohr(t, dd, "ca", "init", "--dev")
	srv := startServe(t, dd, apiPort)
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()

	work := t.TempDir()
	env := append(os.Environ(), "PATH="+filepath.Dir(mohrBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"MOHR_DATA_DIR="+dd, "MOHR_CONFIG=", fmt.Sprintf("HIX=https://127.0.0.1:%d", apiPort),
		fmt.Sprintf("HIX_PUBLIC=http://127.0.0.1:%d", pubPort), fmt.Sprintf("ADAPTER_LISTEN=127.0.0.1:%d", adPort),
		fmt.Sprintf("GATEWAY_LISTEN=127.0.0.1:%d", gwPort))
	run := func(script string) (string, string, error) {
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir, cmd.Env = work, env
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			return so.String(), se.String(), err
		case <-time.After(3 * time.Minute):
			cmd.Process.Kill()
			t.Fatalf("journey hung\nstdout:\n%s\nstderr:\n%s", so.String(), se.String())
		}
		return "", "", nil
	}
	out, errOut, err := run(journeyScript(t, "Facility journey"))
	if err != nil {
		t.Fatalf("facility journey: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	if n := strings.Count(out, `"siamId":"SIAM-10001"`); n != 2 {
		t.Fatalf("the two adapters answered whoami %d times as the facility:\n%s", n, out)
	}
	if strings.Count(out, "active") < 2 || !strings.Contains(out, "pkcs11") || !strings.Contains(out, "software") {
		t.Fatalf("token list does not show both tokens active:\n%s", out)
	}
	// The gateway said where it reads from, passed the token, and refused it after the RA revoked it.
	for _, want := range []string{"standing: from the facility registry in " + dd, "revocation: following https://127.0.0.1:",
		"renewal: POST /v1/renewal", `"status":"ok"`, "revoked token", "(keyCompromise)", "after the revocation the gateway answers 403"} {
		if !strings.Contains(out, want) {
			t.Fatalf("facility journey through the gateway: no %q in\n%s", want, out)
		}
	}
	for _, f := range []string{"chain.pem", "chain-sw.pem"} {
		b, _ := os.ReadFile(filepath.Join(work, f))
		if n := bytes.Count(b, []byte("BEGIN CERTIFICATE")); n != 3 {
			t.Fatalf("%s holds %d certificates, want leaf, intermediate and root", f, n)
		}
	}

	// The refusals a facility meets first, each tried once: the message says what is wrong and what to do.
	hix := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	redeem := "mohr token redeem --csr adapter-sw.csr --kind software --chain-out x.pem "
	cases := []struct{ name, script, want string }{
		{"used code", redeem + `--server "$HIX" --ca-bundle root.pem --code-file code.txt`, "already been used"},
		{"unknown code", redeem + `--server "$HIX" --ca-bundle root.pem --code HIX-AAAAAAAA-BBBBBBBBBBBBBBBBBBBBBBBBBB`, "not accepted"},
		{"not a code", redeem + `--server "$HIX" --ca-bundle root.pem --code hello`, "not accepted"},
		{"no code", redeem + `--server "$HIX" --ca-bundle root.pem`, "--code"},
		{"no ca-bundle", redeem + `--server "$HIX" --code-file code.txt`, "/ca/root.pem"},
		{"ca-bundle missing", redeem + `--server "$HIX" --ca-bundle nothere.pem --code-file code.txt`, "no such file"},
		{"wrong root", redeem + `--server "$HIX" --ca-bundle softhsm2.conf --code-file code.txt`, "no PEM certificate"},
		{"public port", redeem + `--server "http://127.0.0.1:` + fmt.Sprint(pubPort) + `" --ca-bundle root.pem --code-file code.txt`, "https://"},
		{"nothing there", redeem + `--server https://127.0.0.1:` + fmt.Sprint(freePort(t)) + ` --ca-bundle root.pem --code-file code.txt`, "nothing answers"},
		{"no csr", `mohr token redeem --server "$HIX" --ca-bundle root.pem --code-file code.txt --csr none.csr`, "mohr token keygen"},
		{"wrong facility", `mohr token code --siam SIAM-10001 | head -n 1 > code3.txt && mohr token keygen --siam SIAM-20002 --key-out k3.key --password-file token-password.txt --csr-out k3.csr >/dev/null && mohr token redeem --server "$HIX" --ca-bundle root.pem --code-file code3.txt --csr k3.csr --kind software`, "another facility"},
	}
	_ = hix
	for _, c := range cases {
		_, se, err := run(c.script)
		if err == nil {
			t.Errorf("%s: succeeded", c.name)
			continue
		}
		if !strings.Contains(se, c.want) || goErrorChain.MatchString(se) || !strings.HasPrefix(se, "mohr: ") {
			t.Errorf("%s: message does not read as an instruction (want %q):\n%s", c.name, c.want, se)
		}
	}
}
