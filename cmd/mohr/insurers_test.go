package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testenv"
)

// docScript returns the `sh` code blocks under the "## " heading starting with title in docs/<file>, joined in
// order: exactly what a person copies and pastes.
func docScript(t *testing.T, file, title string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", file))
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
		t.Fatalf("docs/%s: no sh blocks under %q", file, title)
	}
	return b.String()
}

// TestInsurerJourney runs the insurer journey of docs/insurers.md verbatim with the built binary against a
// running `mohr serve`, then checks what each step left behind.
func TestInsurerJourney(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "openssl", "grep", "base64"} {
		testenv.Tool(t, tool)
	}
	dd := t.TempDir()
	apiPort, pubPort := freePort(t), freePort(t)
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte(fmt.Sprintf("listen: 127.0.0.1:%d\npublic_listen: 127.0.0.1:%d\n", apiPort, pubPort)), 0o600)
	mustMohr(t, dd, "ca", "init", "--dev")
	srv := startServe(t, dd, apiPort)
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()

	work := t.TempDir()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", docScript(t, "insurers.md", "Insurer journey"))
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(mohrBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"MOHR_DATA_DIR="+dd, "MOHR_CONFIG=", fmt.Sprintf("HIX=https://127.0.0.1:%d", apiPort),
		fmt.Sprintf("HIX_PUBLIC=http://127.0.0.1:%d", pubPort))
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			csvOut, _ := os.ReadFile(filepath.Join(work, "claims.csv"))
			t.Fatalf("insurer journey: %v\nstdout:\n%s\nstderr:\n%s\nclaims.csv:\n%.2000s", err, so.String(), se.String(), csvOut)
		}
	case <-time.After(5 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("insurer journey hung\nstdout:\n%s\nstderr:\n%s", so.String(), se.String())
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(work, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	out := so.String()
	if !strings.Contains(out, `"role":"insurer"`) || !strings.Contains(out, `"organisation":"Salamat Insurance"`) {
		t.Errorf("whoami did not answer as the insurer:\n%s", out)
	}
	lastLine := func(s string) string {
		s = strings.TrimSpace(s)
		return s[strings.LastIndexByte(s, '\n')+1:]
	}
	if l := lastLine(read("results.ndjson")); !strings.Contains(l, `"lines":20`) || !strings.Contains(l, `"TOTAL_PASSED":20`) {
		t.Errorf("results summary: %s", l)
	}
	if n := strings.Count(read("after.ndjson"), `"registrationNow":"suspended"`); n != 20 {
		t.Errorf("%d claims active when signed and suspended now, want 20", n)
	}
	if late := read("late.ndjson"); !strings.Contains(late, `"indication":"INDETERMINATE"`) || !strings.Contains(late, "not valid at the signing time") ||
		!strings.Contains(out, "not paid:") {
		t.Errorf("the claim signed after the suspension:\n%s\n%s", late, out)
	}
	rows, err := csv.NewReader(strings.NewReader(read("claims.csv"))).ReadAll()
	if err != nil || len(rows) != 21 {
		t.Fatalf("claims.csv: %d rows, %v", len(rows), err)
	}
	if strings.Join(rows[0], ",") != strings.Join(csvColumns, ",") {
		t.Errorf("CSV header %v", rows[0])
	}
	for _, r := range rows[1:] {
		if r[1] != "TOTAL_PASSED" || len(r[8]) != 64 || r[9] == "" || r[10] == "" || r[11] == "" || r[12] == "" || r[13] != "active" {
			t.Errorf("CSV row %v", r)
		}
	}
	for _, f := range []string{"rx-000003.report.json", "ingestion.report.json"} {
		if s := read(f); !strings.Contains(s, `"indication":"TOTAL_PASSED"`) {
			t.Errorf("%s: %.300s", f, s)
		}
	}
	if s := read("openapi.json"); !strings.Contains(s, `"openapi"`) || !strings.Contains(s, "/v1/verify/sealed") || !strings.Contains(s, "from_line") {
		t.Errorf("openapi.json from the public listener: %.200s", s)
	}
	if b, _ := os.ReadFile(filepath.Join(work, "stored.p7s")); len(b) < 1000 || b[0] != 0x30 {
		t.Errorf("stored prescription: %d bytes", len(b))
	}
}
