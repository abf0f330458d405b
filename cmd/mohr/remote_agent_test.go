package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/internal/testenv/browser"
)

// trustingBrowser starts Chromium with an NSS database (in its own HOME) that trusts the exchange's root, so
// that https://localhost:<port> of `mohr serve` is a secure origin without certificate errors (Chromium
// refuses WebAuthn on a page with a TLS error), and a virtual platform authenticator that verifies the user.
func trustingBrowser(t *testing.T, rootPEM string) *browser.Browser {
	t.Helper()
	certutil := testenv.Tool(t, "certutil")
	home := t.TempDir()
	db := filepath.Join(home, ".pki", "nssdb")
	os.MkdirAll(db, 0o700)
	for _, args := range [][]string{{"-N", "-d", "sql:" + db, "--empty-password"},
		{"-A", "-d", "sql:" + db, "-n", "mohr-test-root", "-t", "C,,", "-i", rootPEM}} {
		if out, err := exec.Command(certutil, args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v\n%s", args, err, out)
		}
	}
	b := browser.Start(t, chromedp.Env("HOME="+home))
	if _, err := chromedp.Call(b.Context(), webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(b.Context(), webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
		Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21, Transport: webauthn.AuthenticatorTransportInternal,
		HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
	}}); err != nil {
		t.Fatal(err)
	}
	return b
}

var activationURL = regexp.MustCompile(`url="?(https://[^"\s]+/remote/activate\?h=[0-9a-f]{64})`)

// TestRemoteAgentChromium is the remote-signing journey with the real binaries: `mohr serve` with remote
// signing on SoftHSM2; the RA enrols the physician (POST /v1/remote/credentials); the physician registers a
// passkey on the registration page of `mohr serve` in Chromium (virtual authenticator, https://localhost
// trusted through an NSS database); `mohr agent` configured with key csc:credential=<id> signs a batch of 10
// prescriptions for the EMR: it logs the activation page's address, the physician approves there in Chromium
// (one navigator.credentials.get over exactly the challenge), the agent gets the SAD, the HSM signs through
// signatures/signHash, and the exchange ingests all ten: TOTAL_PASSED, each report naming the remote-signing
// policy.
func TestRemoteAgentChromium(t *testing.T) {
	dd, base, origin, ra, _ := remoteDesk(t)
	work := t.TempDir()
	root := filepath.Join(dd, "ca", "root.pem")

	// The RA enrols (the card check is TestRemoteEnrol's); the physician registers on the page.
	raCl := clientFrom(t, ra)
	st, m := call(t, raCl, "POST", base+"/v1/remote/credentials", map[string]any{"nationalCode": "0499370899", "councilNumber": "123456",
		"name": "Dr Sara Ahmadi", "identityCheck": map[string]string{"method": "national ID card (TestRemoteEnrol checks it through pcscd)"}})
	if st != 201 {
		t.Fatalf("enrol: %d %v", st, m)
	}
	credID := m["credential"].(map[string]any)["id"].(string)
	code := m["registration"].(map[string]any)["code"].(string)
	b := trustingBrowser(t, root)
	b.Do(t, chromedp.Navigate(origin+"/remote/register?lang=en"), chromedp.WaitVisible(chromedp.CSS(`#code`)),
		chromedp.SendKeys(chromedp.CSS(`#code`), code), chromedp.Click(chromedp.CSS(`#register button`)),
		chromedp.WaitVisible(chromedp.CSS(`#status.ok`)))

	// The physician's authentication certificate (the CSC service authorisation and the submission's mTLS).
	key := newP256(t)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(work, "dr.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	out := mustMohr(t, dd, "cert", "issue", "--profile", "physician-auth", "--csr", writeCSR(t, work, "dr", key),
		"--name", "Dr Sara Ahmadi", "--national-code", "0499370899", "--council-no", "123456")
	os.WriteFile(filepath.Join(work, "dr.pem"), []byte(out), 0o644)
	mustMohr(t, dd, "rx", "generate", "--count", "10", "--out", filepath.Join(work, "rx"), "--national-code", "0499370899", "--council", "123456")

	agentPort := freePort(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
key: "csc:credential=%s"
roots: %s
token_file: %s
audit_file: %s
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
  activation_page: %s/remote/activate
  poll: 200ms
`, agentPort, credID, root, filepath.Join(work, "agent", "token"), filepath.Join(work, "agent", "audit.jsonl"), base, root,
		filepath.Join(work, "dr.pem"), filepath.Join(work, "dr.key"), base, root, filepath.Join(work, "dr.pem"), filepath.Join(work, "dr.key"), origin)
	os.WriteFile(filepath.Join(work, "agent.yaml"), []byte(cfg), 0o600)
	agentCmd := exec.Command(mohrBin, "--data-dir", dd, "agent", "--agent-config", filepath.Join(work, "agent.yaml"))
	agentCmd.Env = append(os.Environ(), "MOHR_DATA_DIR=", "MOHR_CONFIG=")
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

	// The EMR's batch call, which waits for the physician's approval.
	files, _ := filepath.Glob(filepath.Join(work, "rx", "*.json"))
	if len(files) != 10 {
		t.Fatalf("%d prescriptions", len(files))
	}
	var docs []map[string]any
	for i, f := range files {
		c, _ := os.ReadFile(f)
		docs = append(docs, map[string]any{"id": fmt.Sprintf("rx-%d", i), "document": c})
	}
	body, _ := json.Marshal(map[string]any{"documents": docs})
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/v1/batch", agentPort), bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("X-Mohr-Agent", "emr")
	req.Header.Set("Content-Type", "application/json")
	type answer struct {
		lines []string
		err   error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 4 * time.Minute}).Do(req)
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

	// The physician approves on the activation page the agent names.
	var page string
	for deadline := time.Now().Add(2 * time.Minute); page == ""; time.Sleep(100 * time.Millisecond) {
		if m := activationURL.FindStringSubmatch(agentLog.String()); m != nil {
			page = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent named no activation page:\n%s", agentLog.String())
		}
	}
	if !strings.HasPrefix(page, origin+"/remote/activate?h=") {
		t.Fatalf("activation page %s is not on the exchange's origin %s", page, origin)
	}
	b.Do(t, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS(`#approve`)))
	if n := browser.Get(t, b, chromedp.Evaluate[string](`document.getElementById("a-count").textContent`)); n != "10" {
		t.Fatalf("the activation page shows %q documents", n)
	}
	b.Do(t, chromedp.Click(chromedp.CSS(`#approve`)), chromedp.WaitVisible(chromedp.CSS(`#status.ok`)))

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
	// One approval for the batch: the page was answered once, and nothing else could have activated the key.
	// The agent's audit file records ten stored prescriptions.
	ab, _ := os.ReadFile(filepath.Join(work, "agent", "audit.jsonl"))
	if n := bytes.Count(ab, []byte(`"event":"submit"`)); n != 10 {
		t.Errorf("agent audit: %d submit records", n)
	}
}

// clientFrom is an mTLS client from `mohr remote` flags (--ca-bundle, --ra-cert, --ra-key file:).
func clientFrom(t *testing.T, flags []string) *http.Client {
	t.Helper()
	get := func(name string) string {
		for i := range flags {
			if flags[i] == name {
				return flags[i+1]
			}
		}
		t.Fatalf("no %s", name)
		return ""
	}
	roots := x509.NewCertPool()
	rb, _ := os.ReadFile(get("--ca-bundle"))
	roots.AppendCertsFromPEM(rb)
	cb, _ := os.ReadFile(get("--ra-cert"))
	kb, _ := os.ReadFile(strings.TrimPrefix(get("--ra-key"), "file:"))
	blk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	k, err := x509.ParsePKCS8PrivateKey(kblk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots,
		Certificates: []tls.Certificate{{Certificate: [][]byte{blk.Bytes}, PrivateKey: k.(*ecdsa.PrivateKey)}}}}}
}
