package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/adapter"
	"github.com/mohr-hix/mohr/tokens"
)

// syncBuffer is a bytes.Buffer safe for a child process writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gatewayFixture is a running `mohr serve` and `mohr gateway run` in front of an upstream that echoes the
// verified SIAM ID.
type gatewayFixture struct {
	dd, hix, pub, gwURL string
	roots               *x509.CertPool
	serve, gw           *exec.Cmd
	gwOut               *syncBuffer
}

// issueGatewayCert makes the gateway's tls-server certificate the documented way (cert issue --chain-out).
func issueGatewayCert(t *testing.T, dd string) (chain, key string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	key = filepath.Join(dd, "gateway.key")
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	csr := writeCSR(t, dd, "gateway", k)
	chain = filepath.Join(dd, "gateway-chain.pem")
	mustMohr(t, dd, "cert", "issue", "--profile", "tls-server", "--name", "localhost", "--dns", "localhost", "--ip", "127.0.0.1",
		"--csr", csr, "--chain-out", chain)
	return chain, key
}

func startGatewayFixture(t *testing.T, extra ...string) *gatewayFixture {
	t.Helper()
	dd := t.TempDir()
	apiPort, pubPort, gwPort := freePort(t), freePort(t), freePort(t)
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte(fmt.Sprintf("listen: 127.0.0.1:%d\npublic_listen: 127.0.0.1:%d\napi:\n  rate_limit: 1000000\n", apiPort, pubPort)), 0o600)
	mustMohr(t, dd, "ca", "init", "--dev")
	f := &gatewayFixture{dd: dd, hix: fmt.Sprintf("https://127.0.0.1:%d", apiPort), pub: fmt.Sprintf("http://127.0.0.1:%d", pubPort),
		gwURL: fmt.Sprintf("https://127.0.0.1:%d", gwPort)}
	f.serve = startServe(t, dd, apiPort)
	t.Cleanup(func() { f.serve.Process.Signal(syscall.SIGTERM); f.serve.Wait() })
	f.roots = x509.NewCertPool()
	rootPEM, _ := os.ReadFile(filepath.Join(dd, "ca", "root.pem"))
	f.roots.AppendCertsFromPEM(rootPEM)

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream saw "+r.Header.Get(adapter.HeaderSIAMID))
	}))
	t.Cleanup(up.Close)
	chain, key := issueGatewayCert(t, dd)
	args := append([]string{"--data-dir", dd, "gateway", "run", "--listen", fmt.Sprintf("127.0.0.1:%d", gwPort), "--upstream", up.URL,
		"--tls-cert", chain, "--tls-key", key, "--roots", filepath.Join(dd, "ca", "root.pem"),
		"--intermediate", filepath.Join(dd, "ca", "intermediate.pem"), "--revocation-feed", f.hix + "/v1/revocations"}, extra...)
	f.gw = exec.Command(mohrBin, args...)
	f.gw.Env = append(os.Environ(), "MOHR_DATA_DIR=", "MOHR_CONFIG=")
	f.gwOut = &syncBuffer{}
	f.gw.Stdout, f.gw.Stderr = f.gwOut, f.gwOut
	if err := f.gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.gw.Process.Signal(syscall.SIGTERM)
		f.gw.Wait()
		if t.Failed() {
			t.Logf("gateway output:\n%s", f.gwOut.String())
		}
	})
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(f.gwOut.String(), "gateway on https://"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not start:\n%s", f.gwOut.String())
		}
	}
	return f
}

// client presents cred to the gateway.
func (f *gatewayFixture) client(cred *adapter.Credential) *http.Client {
	tc := tls.Certificate{PrivateKey: cred.Key}
	for _, c := range cred.Chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: f.roots, Certificates: []tls.Certificate{tc}, MinVersion: tls.VersionTLS13}}}
}

func (f *gatewayFixture) get(c *http.Client) (int, string) {
	resp, err := c.Get(f.gwURL + "/anything")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitStatus asks through the gateway until it answers want (bounded), and returns how long that took.
func (f *gatewayFixture) waitStatus(t *testing.T, c *http.Client, want int, what string) time.Duration {
	t.Helper()
	start := time.Now()
	for deadline := start.Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, body := f.get(c)
		if code == want {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the gateway still answers %d %q, want %d\n%s", what, code, body, want, f.gwOut.String())
		}
	}
}

// waitLog waits (bounded) until the gateway's output holds want: the child's output arrives through a pipe,
// after the answer the test already has.
func (f *gatewayFixture) waitLog(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(f.gwOut.String(), want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway's output does not say %q:\n%s", want, f.gwOut.String())
		}
	}
}

// TestGatewayRevocationEndToEnd runs `mohr serve` and `mohr gateway run` as a facility's adapter meets them:
// the gateway states where it reads standing, revocations and renewals from; an adapter token passes; it
// renews through the gateway's POST /v1/renewal and the new certificate passes at once; a revocation by the RA
// (`mohr token revoke --reason 1`) is refused by the gateway within seconds (measured, logged); and when the
// exchange stops answering, the gateway refuses every adapter (503) instead of admitting what it cannot check.
func TestGatewayRevocationEndToEnd(t *testing.T) {
	f := startGatewayFixture(t)
	for _, want := range []string{"standing: from the facility registry in " + f.dd, "revocation: following " + f.hix + "/v1/revocations",
		"renewal: POST /v1/renewal, issued by the CA in " + f.dd} {
		if !strings.Contains(f.gwOut.String(), want) {
			t.Fatalf("the gateway does not say %q at start:\n%s", want, f.gwOut.String())
		}
	}
	ks := enrolSoftwareToken(t, f.dd, f.hix, f.pub)
	cred := &adapter.Credential{Key: ks.Key, Chain: append([]*x509.Certificate{ks.Cert}, ks.Chain...)}
	c := f.client(cred)
	if code, body := f.get(c); code != 200 || body != "upstream saw SIAM-10001" {
		t.Fatalf("token through the gateway: %d %q", code, body)
	}

	// Renewal through the gateway: the new certificate passes on the very next request.
	pcsr, _ := tokens.NewCSR(rand.Reader, ks.Key, "SIAM-10001", "adapter")
	r := &adapter.HTTPRenewer{URL: f.gwURL + "/v1/renewal", RootCAs: f.roots}
	chain, err := r.Renew(context.Background(), cred, pcsr)
	if err != nil {
		t.Fatalf("renewal through the gateway: %v\n%s", err, f.gwOut.String())
	}
	if len(chain) != 3 || chain[0].Subject.SerialNumber != "SIAM-10001" || chain[0].SerialNumber.Cmp(ks.Cert.SerialNumber) == 0 {
		t.Fatalf("renewal answered %d certificates, leaf for %q", len(chain), chain[0].Subject.SerialNumber)
	}
	renewed := &adapter.Credential{Key: ks.Key, Chain: chain}
	nc := f.client(renewed)
	if code, body := f.get(nc); code != 200 {
		t.Fatalf("renewed token, first request: %d %q", code, body)
	}
	// The superseded token cannot renew again (fail closed), through the gateway as at the exchange.
	if _, err := r.Renew(context.Background(), cred, pcsr); err == nil {
		t.Fatal("the superseded token renewed again through the gateway")
	}

	// Revocation: the gateway has the renewed token's "good" cached; the RA revokes it for key compromise.
	serial := fmt.Sprintf("%x", chain[0].SerialNumber)
	start := time.Now()
	out := mustMohr(t, f.dd, "token", "revoke", serial, "--reason", "1")
	committed := time.Since(start)
	took := f.waitStatus(t, nc, http.StatusForbidden, "revoked token")
	t.Logf("revoked token refused by the gateway %v after `mohr token revoke` started (the command itself took %v): %s",
		(committed + took).Round(time.Millisecond), committed.Round(time.Millisecond), strings.TrimSpace(out))
	if took > 30*time.Second {
		t.Fatalf("the gateway took %v to refuse a revoked token", took)
	}
	f.waitLog(t, "certificate revoked (reason 1)")

	// Fail closed: the exchange stops; the feed is silent; the gateway refuses the still-valid old token.
	f.serve.Process.Signal(syscall.SIGTERM)
	f.serve.Wait()
	f.waitStatus(t, c, http.StatusServiceUnavailable, "exchange down")
	f.waitLog(t, "cannot read the revocation feed")
}

// mohrIn runs the binary in dir with no --data-dir and no MOHR_DATA_DIR: as a person who forgot them.
func mohrIn(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(mohrBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MOHR_DATA_DIR=", "MOHR_CONFIG=")
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

// TestCommandsNeedAnInitialisedDataDir: commands that need the exchange's CA or registry, run without
// --data-dir / MOHR_DATA_DIR where there is no ./mohr-data, say so and point at both, and create nothing;
// the same with a --data-dir that holds nothing. The gateway refuses to start without a registry to read
// standing from.
func TestCommandsNeedAnInitialisedDataDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "facilities.csv"), []byte("siam_id,name,licence_number,licence_status,licence_from,licence_until\nSIAM-10001,H,LIC/1,active,2024-01-01,2030-01-01\n"), 0o600)
	cmds := [][]string{
		{"token", "code", "--siam", "SIAM-10001"},
		{"token", "list"},
		{"token", "revoke", "0a"},
		{"facility", "import", "facilities.csv"},
		{"facility", "sync"},
		{"cert", "list"},
		{"crl", "generate", "--out", "crl"},
		{"gateway", "run", "--upstream", "http://127.0.0.1:9", "--tls-cert", "x.pem", "--tls-key", "x.key", "--roots", "r.pem", "--intermediate", "i.pem"},
	}
	for _, args := range cmds {
		for _, dd := range []string{"", filepath.Join(dir, "empty")} {
			a := args
			if dd != "" {
				a = append([]string{"--data-dir", dd}, args...)
			}
			_, se, code := mohrIn(t, dir, a...)
			name := strings.Join(a, " ")
			if code == 0 {
				t.Errorf("%s: succeeded without the exchange's data", name)
				continue
			}
			if args[0] == "gateway" {
				// The gateway first wants files it can load; each message names the flag and what to give.
				if !strings.Contains(se, "--roots r.pem") || !strings.Contains(se, "root.pem") || goErrorChain.MatchString(se) {
					t.Errorf("%s: %s", name, se)
				}
				continue
			}
			if !strings.Contains(se, "no Mohr data in") || !strings.Contains(se, "--data-dir") || !strings.Contains(se, "MOHR_DATA_DIR") ||
				!strings.Contains(se, "mohr ca init") || goErrorChain.MatchString(se) {
				t.Errorf("%s: does not say where the data is missing and what to do:\n%s", name, se)
			}
			if dd == "" && !strings.Contains(se, "no --data-dir or MOHR_DATA_DIR was given") {
				t.Errorf("%s: does not say that no data directory was given:\n%s", name, se)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "mohr-data")); err == nil {
			t.Fatalf("%s created ./mohr-data", strings.Join(args, " "))
		}
		if _, err := os.Stat(filepath.Join(dir, "empty")); err == nil {
			t.Fatalf("%s created the empty --data-dir", strings.Join(args, " "))
		}
	}

	// With loadable files, the gateway gets to its standing source and says the same.
	dd := t.TempDir()
	mustMohr(t, dd, "ca", "init", "--dev")
	chain, key := issueGatewayCert(t, dd)
	base := []string{"gateway", "run", "--upstream", "http://127.0.0.1:9", "--tls-cert", chain, "--tls-key", key,
		"--roots", filepath.Join(dd, "ca", "root.pem"), "--intermediate", filepath.Join(dd, "ca", "intermediate.pem")}
	_, se, code := mohrIn(t, dir, base...)
	if code == 0 || !strings.Contains(se, "standing") || !strings.Contains(se, "--registry-url") || !strings.Contains(se, "MOHR_DATA_DIR") {
		t.Fatalf("gateway without a registry: exit %d\n%s", code, se)
	}
	// The gateway's certificate: --chain-out writes leaf, intermediate and root; a common name that is not one
	// of the names is refused with why; the default listen address is loopback and not serve's.
	if b, _ := os.ReadFile(chain); bytes.Count(b, []byte("BEGIN CERTIFICATE")) != 3 {
		t.Fatalf("cert issue --chain-out wrote %d certificates, want 3", bytes.Count(b, []byte("BEGIN CERTIFICATE")))
	}
	csr := writeCSR(t, dd, "gw2", mustKey(t))
	_, se, code = mohr(t, dd, "cert", "issue", "--profile", "tls-server", "--name", "gateway", "--dns", "localhost", "--csr", csr)
	if code == 0 || !strings.Contains(se, "must repeat one of them") || !strings.Contains(se, "--dns") {
		t.Fatalf("tls-server with a CN not among its names: exit %d\n%s", code, se)
	}
	if help, _, _ := mohr(t, dd, "gateway", "run", "--help"); !strings.Contains(help, `"127.0.0.1:9443"`) || defaultGatewayListen == defaultListen || defaultGatewayListen == defaultPublicListen {
		t.Fatalf("gateway default listen: %s\n%s", defaultGatewayListen, help)
	}
	// Every refusal of the gateway's set-up reads as an instruction.
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--revocation-feed", "https://127.0.0.1:1/v1/revocations", "--tls-key", filepath.Join(dd, "ca", "root.pem")}, "mohr cert issue --profile tls-server"},
		{[]string{"--revocation-feed", "http://192.0.2.1:8080/v1/revocations"}, "plain HTTP only on loopback"},
		{[]string{"--revocation-feed", "ftp://x/v1/revocations"}, "https://EXCHANGE:8443/v1/revocations"},
		{[]string{}, "--revocation-feed off relies on OCSP alone"},
		{[]string{"--revocation-feed", "off", "--renewal", "sometimes"}, "give auto"},
		{[]string{"--revocation-feed", "off", "--upstream", "127.0.0.1:9000"}, "is not an http(s):// address"},
		{[]string{"--revocation-feed", "off", "--feed-max-lag", "1s", "--feed-interval", "2s"}, "must be longer than"},
	}
	for _, c := range cases {
		_, se, code := mohr(t, dd, append(base, c.args...)...)
		if code == 0 || !strings.Contains(se, c.want) || goErrorChain.MatchString(se) || !strings.HasPrefix(se, "mohr: ") {
			t.Errorf("gateway %v: exit %d, want %q:\n%s", c.args, code, c.want, se)
		}
	}
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
