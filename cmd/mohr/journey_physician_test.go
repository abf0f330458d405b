package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/internal/testenv"
)

// TestJourneyPhysician runs the physician journey of docs/journeys.md, exactly its sh blocks in one shell, with
// the built binary against a running `mohr serve` and two virtual cards (`mohr card simulate`) in the real
// pcscd's vpcd readers: a new council card is enrolled at the RA desk (national ID card checked), the agent
// opens a comfort session with the PIN typed into its PIN page, and three prescriptions signed on the card are
// stored by the exchange with TOTAL_PASSED.
func TestJourneyPhysician(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "openssl", "base64", "sed", "grep"} {
		testenv.Tool(t, tool)
	}
	testenv.LockPCSCD(t)
	waitReadersEmpty(t)
	t.Cleanup(func() { waitReadersEmpty(t) })
	dd := t.TempDir()
	apiPort, pubPort, agentPort := freePort(t), freePort(t), freePort(t)
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte(fmt.Sprintf("listen: 127.0.0.1:%d\npublic_listen: 127.0.0.1:%d\n", apiPort, pubPort)), 0o600)
	mustMohr(t, dd, "ca", "init", "--dev")
	srv := startServe(t, dd, apiPort)
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()

	work := t.TempDir()
	// The prelude ends whatever the journey started in the background (the simulated cards, the agent) when
	// the shell ends, also when it is terminated: the shell gets SIGTERM if this test binary dies (Pdeathsig,
	// e.g. on a test time-out, when no cleanup runs), so no orphaned card keeps a vpcd reader from other tests.
	prelude := "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT; trap 'exit 143' TERM INT\n"
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", prelude+journeyScript(t, "Physician journey"))
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(mohrBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"MOHR_DATA_DIR="+dd, "MOHR_CONFIG=", "MOHR_CARD_PIN=", "MOHR_CARD_PIN_FILE=", fmt.Sprintf("HIX=https://127.0.0.1:%d", apiPort),
		fmt.Sprintf("HIX_PUBLIC=http://127.0.0.1:%d", pubPort), fmt.Sprintf("AGENT_LISTEN=127.0.0.1:%d", agentPort))
	// Its own process group: whatever the journey leaves running (the simulated cards, the agent) is ended
	// with it, even when a step fails.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(4 * time.Minute):
		err = fmt.Errorf("journey hung")
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	if err != nil {
		agentLog, _ := os.ReadFile(filepath.Join(work, "agent.log"))
		t.Fatalf("physician journey: %v\nstdout:\n%s\nstderr:\n%s\nagent.log:\n%s", err, so.String(), se.String(), agentLog)
	}
	out := so.String()
	if !strings.Contains(out, "factory certificate") {
		t.Errorf("card show before enrolment does not say factory certificate:\n%s", out)
	}
	if !strings.Contains(out, "sign key:        signing (non-repudiation), physician-signing policy") ||
		!strings.Contains(out, "sign key: physician-signing certificate serial") {
		t.Errorf("the card was not enrolled:\n%s", out)
	}
	if !strings.Contains(out, `"comfort":true`) {
		t.Errorf("no comfort session opened:\n%s", out)
	}
	if n := strings.Count(out, `"status":"submitted" "indication":"TOTAL_PASSED"`); n != 3 {
		t.Fatalf("%d of 3 prescriptions submitted with TOTAL_PASSED:\n%s", n, out)
	}
	// Each result carries the offline QR, and the exchange's own time from its Server-Timing header.
	results, _ := filepath.Glob(filepath.Join(work, "rx", "*.result"))
	if len(results) != 3 {
		t.Fatalf("%d result files", len(results))
	}
	for _, f := range results {
		b, _ := os.ReadFile(f)
		var l struct {
			QR      string `json:"qr"`
			Timings struct {
				IngestionMs float64 `json:"ingestionMs"`
			} `json:"timings"`
		}
		if err := json.Unmarshal(b, &l); err != nil || !strings.HasPrefix(l.QR, "RX1:") || l.Timings.IngestionMs <= 0 {
			t.Fatalf("%s: no QR or no ingestion time from the real server (%v):\n%s", f, err, b)
		}
	}
	// The agent's audit file records three stored prescriptions; its hash chain is intact.
	audit := filepath.Join(work, "agent", "audit.jsonl")
	b, _ := os.ReadFile(audit)
	if n := bytes.Count(b, []byte(`"event":"submit"`)); n != 3 {
		t.Fatalf("agent audit: %d submit records", n)
	}
	if v := mustMohr(t, dd, "agent", "audit-verify", audit); !strings.Contains(v, "chain intact") {
		t.Fatalf("audit-verify: %s", v)
	}
}

// waitReadersEmpty waits (bounded) until no card is in the vpcd readers, so that cards of an earlier test or
// of a finished journey are gone.
func waitReadersEmpty(t *testing.T) {
	t.Helper()
	pc, err := cardreader.Establish(context.Background())
	if err != nil {
		testenv.Missing(t, "pcscd: "+err.Error())
	}
	defer pc.Release()
	for _, r := range vpcdSlots {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := pc.WaitForRemoval(ctx, r.reader)
		cancel()
		if err != nil {
			t.Fatalf("reader %s not empty: %v", r.reader, err)
		}
	}
}
