package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/store/storetest"
)

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServe runs `mohr serve` and waits until its API answers.
func startServe(t *testing.T, dd string, apiPort int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(mohrBin, "--data-dir", dd, "serve")
	cmd.Env = append(os.Environ(), "MOHR_DATA_DIR=", "MOHR_CONFIG=")
	logf, _ := os.OpenFile(filepath.Join(dd, "serve.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for i := 0; i < 300; i++ {
		resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d/healthz", apiPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	log, _ := os.ReadFile(filepath.Join(dd, "serve.log"))
	t.Fatalf("mohr serve did not come up:\n%s", log)
	return nil
}

func apiClient(t *testing.T, dd string) *http.Client {
	roots := x509.NewCertPool()
	b, err := os.ReadFile(filepath.Join(dd, "ca", "root.pem"))
	if err != nil || !roots.AppendCertsFromPEM(b) {
		t.Fatalf("root: %v", err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
}

// TestCrashConsistency kills the server with SIGKILL in the middle of a loop of issuances, several times. After
// each restart every certificate a client received is in the store as issued, no serial repeats, and the audit
// log verifies.
func TestCrashConsistency(t *testing.T) { crashConsistency(t, "") }

// TestCrashConsistencyPostgres is TestCrashConsistency with the store on PostgreSQL (fsync and
// synchronous_commit as the test cluster has them).
func TestCrashConsistencyPostgres(t *testing.T) {
	crashConsistency(t, fmt.Sprintf("database: {driver: postgres, dsn: %q}\n", storetest.FreshPostgres(t)))
}

func crashConsistency(t *testing.T, extraConfig string) {
	if testing.Short() {
		t.Skip("starts and kills the server several times")
	}
	dd := t.TempDir()
	apiPort, pubPort := freePort(t), freePort(t)
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte(fmt.Sprintf("listen: 127.0.0.1:%d\npublic_listen: 127.0.0.1:%d\n", apiPort, pubPort)+extraConfig), 0o600)

	received := map[string]bool{}
	var mu sync.Mutex
	const rounds = 4
	for round := 0; round < rounds; round++ {
		srv := startServe(t, dd, apiPort)
		token, err := os.ReadFile(filepath.Join(dd, "admin.token"))
		if err != nil {
			t.Fatal(err)
		}
		client := apiClient(t, dd)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, newP256(t))
					body, _ := json.Marshal(map[string]any{"profile": "organisation-auth", "csr": csr, "subject": map[string]any{"commonName": "Crash Test Pharmacy", "role": "pharmacy"}})
					req, _ := http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("https://127.0.0.1:%d/v1/certificates", apiPort), bytes.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						return // the server is gone
					}
					var out struct {
						Serial      string `json:"serial"`
						Certificate []byte `json:"certificate"`
					}
					json.NewDecoder(resp.Body).Decode(&out)
					resp.Body.Close()
					if resp.StatusCode == http.StatusCreated && len(out.Certificate) > 0 {
						mu.Lock()
						if received[out.Serial] {
							t.Errorf("serial %s handed out twice", out.Serial)
						}
						received[out.Serial] = true
						mu.Unlock()
					}
				}
			}()
		}
		d, _ := rand.Int(rand.Reader, big.NewInt(1200))
		time.Sleep(300*time.Millisecond + time.Duration(d.Int64())*time.Millisecond)
		srv.Process.Signal(syscall.SIGKILL)
		srv.Wait()
		cancel()
		wg.Wait()
	}
	if len(received) == 0 {
		log, _ := os.ReadFile(filepath.Join(dd, "serve.log"))
		t.Fatalf("no certificate was issued in %d rounds:\n%s", rounds, log)
	}
	// After the last kill: the store has every received certificate as issued, and the audit log verifies.
	var list []struct {
		Serial string `json:"serial"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(mustMohr(t, dd, "cert", "list", "--json", "--limit", "100000")), &list); err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, c := range list {
		if _, dup := status[c.Serial]; dup {
			t.Errorf("serial %s listed twice", c.Serial)
		}
		status[c.Serial] = c.Status
	}
	for s := range received {
		if status[s] != "issued" {
			t.Errorf("certificate %s was handed out but the store says %q", s, status[s])
		}
	}
	mustMohr(t, dd, "audit", "verify")
	t.Logf("%d rounds, %d certificates received, %d records", rounds, len(received), len(list))
}
