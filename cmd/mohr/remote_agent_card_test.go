package main

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/internal/testenv"
)

// TestRemoteAgentCard: the real binaries with the national ID card as the activation factor. `mohr serve`
// with remote signing on SoftHSM2 trusts a national ID card issuer (remote_signing.id_card_issuers); the RA
// enrols the physician with `mohr remote enrol --card-factor` (the card, in vpcd reader 1 of the real pcscd,
// signs the exchange's enrolment challenge after its PIN; the exchange verifies it and registers the card);
// `mohr agent` with key csc:credential=<id>;factor=card and pin_entry: web signs a batch of 10
// prescriptions for the EMR: the physician types the card's PIN on the agent's PIN page once, the card signs
// the activation challenge over the batch's hashes, the HSM signs through signatures/signHash, and the
// exchange stores all ten: TOTAL_PASSED, each report naming the remote-signing policy.
func TestRemoteAgentCard(t *testing.T) {
	testenv.LockPCSCD(t)
	const pin = "97531864" // the card's PIN: typed at the RA desk (env here) and on the agent's PIN page
	t.Setenv("MOHR_ID_CARD_PIN", pin)
	work := t.TempDir()
	id := newVirtualCard(t, virtualcard.Config{Profile: virtualcard.ProfileNationalID, PIN: []byte(pin)})
	issuers, err := id.Issuer().WriteDir(filepath.Join(work, "id-issuer"))
	if err != nil {
		t.Fatal(err)
	}
	dd, base, _, ra, _ := remoteDeskCards(t, issuers)
	root := filepath.Join(dd, "ca", "root.pem")
	insertVirtualCard(t, id, 1)

	out := mustMohr(t, dd, append(append([]string{"remote"}, ra...), "enrol", "--id-issuers", issuers, "--council-no", "123456", "--card-factor", "--json")...)
	var enr struct {
		Credential struct{ ID, Status string }
	}
	if err := json.Unmarshal([]byte(out), &enr); err != nil || enr.Credential.Status != "active" {
		t.Fatalf("enrol --card-factor: %v\n%s", err, out)
	}
	credID := enr.Credential.ID

	// The physician's authentication certificate (the CSC service authorisation and the submission's mTLS).
	key := newP256(t)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(work, "dr.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	out = mustMohr(t, dd, "cert", "issue", "--profile", "physician-auth", "--csr", writeCSR(t, work, "dr", key),
		"--name", "Dr Sara Ahmadi", "--national-code", "0499370899", "--council-no", "123456")
	os.WriteFile(filepath.Join(work, "dr.pem"), []byte(out), 0o644)
	mustMohr(t, dd, "rx", "generate", "--count", "10", "--out", filepath.Join(work, "rx"), "--national-code", "0499370899", "--council", "123456")

	agentPort := freePort(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
key: "csc:credential=%s;factor=card"
roots: %s
token_file: %s
audit_file: %s
pin_entry: web
submit:
  url: %s/v1/prescriptions
  ca_file: %s
  client_cert: %s
  client_key: file:%s
csc:
  url: %s/csc/v2
  ca_file: %s
  client_cert: %s
  client_key: file:%s
  card_reader: "Virtual PCD 00 01"
`, agentPort, credID, root, filepath.Join(work, "agent", "token"), filepath.Join(work, "agent", "audit.jsonl"), base, root,
		filepath.Join(work, "dr.pem"), filepath.Join(work, "dr.key"), base, root, filepath.Join(work, "dr.pem"), filepath.Join(work, "dr.key"))
	os.WriteFile(filepath.Join(work, "agent.yaml"), []byte(cfg), 0o600)
	agentCmd := exec.Command(mohrBin, "--data-dir", dd, "agent", "--agent-config", filepath.Join(work, "agent.yaml"))
	agentCmd.Env = append(os.Environ(), "MOHR_DATA_DIR=", "MOHR_CONFIG=", "MOHR_ID_CARD_PIN=", "MOHR_CARD_PIN=")
	var agentLog syncBuffer
	agentCmd.Stdout, agentCmd.Stderr = &agentLog, &agentLog
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentCmd.Process.Signal(syscall.SIGTERM); agentCmd.Wait() })
	var token []byte
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if token, _ = os.ReadFile(filepath.Join(work, "agent", "token")); len(token) > 0 && strings.Contains(agentLog.String(), "signing agent listening") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not start:\n%s", agentLog.String())
		}
	}
	agentURL := fmt.Sprintf("http://127.0.0.1:%d", agentPort)
	emr := func(method, path string, body []byte) (*http.Response, error) {
		req, _ := http.NewRequest(method, agentURL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		req.Header.Set("X-Mohr-Agent", "emr")
		req.Header.Set("Content-Type", "application/json")
		return (&http.Client{Timeout: 4 * time.Minute}).Do(req)
	}

	files, _ := filepath.Glob(filepath.Join(work, "rx", "*.json"))
	var docs []map[string]any
	for i, f := range files {
		c, _ := os.ReadFile(f)
		docs = append(docs, map[string]any{"id": fmt.Sprintf("rx-%d", i), "document": c})
	}
	body, _ := json.Marshal(map[string]any{"documents": docs})
	type answer struct {
		lines []string
		err   error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := emr("POST", "/v1/batch", body)
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var a answer
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 8<<20)
		for sc.Scan() {
			a.lines = append(a.lines, sc.Text())
		}
		if resp.StatusCode != 200 {
			a.err = fmt.Errorf("batch: HTTP %d", resp.StatusCode)
		}
		done <- a
	}()

	// The physician types the national ID card's PIN on the agent's PIN page (the EMR learns its address
	// from GET /v1/pin).
	var pinURL string
	for deadline := time.Now().Add(2 * time.Minute); pinURL == ""; time.Sleep(100 * time.Millisecond) {
		if resp, err := emr("GET", "/v1/pin", nil); err == nil {
			var p struct {
				URL string `json:"url"`
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			json.Unmarshal(b, &p)
			pinURL = p.URL
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent asked for no PIN:\n%s", agentLog.String())
		}
	}
	req, _ := http.NewRequest("POST", pinURL, strings.NewReader(url.Values{"action": {"sign"}, "pin": {pin}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", agentURL)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	var a answer
	select {
	case a = <-done:
	case <-time.After(4 * time.Minute):
		t.Fatalf("the batch did not finish:\n%s", agentLog.String())
	}
	if a.err != nil {
		t.Fatalf("%v\n%s\nagent:\n%s", a.err, strings.Join(a.lines, "\n"), agentLog.String())
	}
	passed := 0
	for _, l := range a.lines {
		var r struct {
			Status, Indication string
			Report             struct {
				Prescriber struct {
					RemoteSigningPolicy string `json:"remoteSigningPolicy"`
				} `json:"prescriber"`
			} `json:"report"`
		}
		if json.Unmarshal([]byte(l), &r) != nil || r.Status == "" {
			continue
		}
		if r.Status == "submitted" && r.Indication == "TOTAL_PASSED" && r.Report.Prescriber.RemoteSigningPolicy == "2.999.1742.6.1" {
			passed++
		} else {
			t.Errorf("result: %s", l)
		}
	}
	if passed != 10 {
		t.Fatalf("%d of 10 prescriptions stored with TOTAL_PASSED and the remote-signing policy:\n%s\nagent:\n%s", passed, strings.Join(a.lines, "\n"), agentLog.String())
	}
	if strings.Contains(agentLog.String(), pin) {
		t.Error("the agent's log holds the PIN")
	}
	if id.TriesLeft() != 3 {
		t.Errorf("the card's PIN tries: %d", id.TriesLeft())
	}
}
