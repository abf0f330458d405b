package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/adapter"
	"github.com/mohr-hix/mohr/tokens"
	"github.com/mohr-hix/mohr/tokens/tokentest"
)

// enrolSoftwareToken enrols a software token for SIAM-10001 with the CLI over the network (token redeem) and
// returns the decoded keystore.
func enrolSoftwareToken(t *testing.T, dd, hix, pub string) *tokens.SoftwareToken {
	t.Helper()
	work := t.TempDir()
	os.WriteFile(filepath.Join(work, "facilities.csv"), []byte("siam_id,name,licence_number,licence_status,licence_from,licence_until,system_id,system_status,system_from,system_until\n"+
		"SIAM-10001,Imam Khomeini Hospital,LIC/1402/77,active,2024-01-01,2030-03-20,SYS-HIS-42,active,2024-01-01,2030-03-20\n"), 0o600)
	mustMohr(t, dd, "facility", "import", filepath.Join(work, "facilities.csv"))
	code := strings.SplitN(mustMohr(t, dd, "token", "code", "--siam", "SIAM-10001"), "\n", 2)[0]
	os.WriteFile(filepath.Join(work, "pw"), []byte("correct horse battery"), 0o600)
	script := fmt.Sprintf(`set -e
curl -fsS -o root.pem %s/ca/root.pem
mohr token keygen --siam SIAM-10001 --key-out a.key --password-file pw --csr-out a.csr
mohr token redeem --server %s --ca-bundle root.pem --code %s --csr a.csr --kind software --chain-out chain.pem
mohr token install --chain chain.pem --key a.key --password-file pw --out token.pem`, pub, hix, code)
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(mohrBin)+string(os.PathListSeparator)+os.Getenv("PATH"), "MOHR_DATA_DIR=", "MOHR_CONFIG=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("enrol: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(filepath.Join(work, "token.pem"))
	ks, err := tokens.DecodeKeystore(b, []byte("correct horse battery"))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestRenewalEndToEnd: an adapter with a token from `mohr serve` runs with an injected clock that moves across
// the renewal point (two thirds of the token's life); it renews through the exchange's POST /v1/renewal,
// authenticated by its current token, while the facility's requests keep flowing through it without a
// failure; afterwards it presents the new certificate, the old token is superseded, and the old certificate
// can no longer renew.
func TestRenewalEndToEnd(t *testing.T) {
	dd := t.TempDir()
	apiPort, pubPort := freePort(t), freePort(t)
	// The facility's system below asks without pause: lift the per-client rate limit for it.
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte(fmt.Sprintf("listen: 127.0.0.1:%d\npublic_listen: 127.0.0.1:%d\napi:\n  rate_limit: 1000000\n", apiPort, pubPort)), 0o600)
	mustMohr(t, dd, "ca", "init", "--dev")
	srv := startServe(t, dd, apiPort)
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	hix, pub := fmt.Sprintf("https://127.0.0.1:%d", apiPort), fmt.Sprintf("http://127.0.0.1:%d", pubPort)
	ks := enrolSoftwareToken(t, dd, hix, pub)
	roots := x509.NewCertPool()
	rootPEM, _ := os.ReadFile(filepath.Join(dd, "ca", "root.pem"))
	roots.AppendCertsFromPEM(rootPEM)

	old := &adapter.Credential{Key: ks.Key, Chain: append([]*x509.Certificate{ks.Cert}, ks.Chain...)}
	u, _ := url.Parse(hix)
	a, err := adapter.NewAdapter(u, old)
	if err != nil {
		t.Fatal(err)
	}
	a.RootCAs = roots
	a.Renewer = &adapter.HTTPRenewer{URL: hix + "/v1/renewal", RootCAs: roots}
	clk := tokentest.NewClock(ks.Cert.NotBefore)
	a.Clock = clk.Now
	renewAt := a.RenewalTime()
	if want := ks.Cert.NotBefore.Add(ks.Cert.NotAfter.Sub(ks.Cert.NotBefore) * 2 / 3); renewAt.Sub(want).Abs() > time.Second {
		t.Fatalf("renewal time %v, want two thirds of the life %v", renewAt, want)
	}
	var crossed atomic.Bool
	a.Sleep = func(ctx context.Context, d time.Duration) error {
		if crossed.Load() {
			<-ctx.Done()
			return ctx.Err()
		}
		// Before the renewal point nothing happens: the clock moves to one second short of it, then across.
		if clk.Now().Before(renewAt.Add(-time.Second)) {
			clk.Advance(renewAt.Add(-time.Second).Sub(clk.Now()))
		} else {
			clk.Advance(2 * time.Second)
		}
		time.Sleep(100 * time.Millisecond) // let the facility's requests run on the old certificate meanwhile
		return ctx.Err()
	}
	renewed := make(chan *adapter.Credential, 1)
	a.OnRenew = func(_ context.Context, c *adapter.Credential) error { crossed.Store(true); renewed <- c; return nil }
	a.OnError = func(err error) { t.Logf("renewal attempt: %v", err) }

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Serve(ctx, l)

	// The facility's system, asking all the time.
	var ok, failed atomic.Int64
	var mu sync.Mutex
	subjects := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("http://" + l.Addr().String() + "/v1/whoami")
				if err != nil {
					failed.Add(1)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					t.Logf("whoami through the adapter: %d %s", resp.StatusCode, b)
					continue
				}
				ok.Add(1)
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				subjects[string(b)]++
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	go a.RunRenewal(ctx)
	var next *adapter.Credential
	select {
	case next = <-renewed:
	case <-time.After(60 * time.Second):
		t.Fatal("no renewal within 60 s")
	}
	// Connections opened after the renewal carry the new certificate; kept-alive ones finish on the old one.
	// Wait (bounded) until the facility's requests are answered as the new token.
	newWant := fmt.Sprintf("cert:%x", next.Leaf().SerialNumber)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		seen := false
		for s := range subjects {
			seen = seen || strings.Contains(s, newWant)
		}
		mu.Unlock()
		if seen {
			break
		}
	}
	close(stop)
	wg.Wait()

	if next.Leaf().SerialNumber.Cmp(old.Leaf().SerialNumber) == 0 || next.Leaf().Subject.SerialNumber != "SIAM-10001" {
		t.Fatalf("renewed certificate %x for %q", next.Leaf().SerialNumber, next.Leaf().Subject.SerialNumber)
	}
	if n := len(next.Chain); n != 3 {
		t.Fatalf("renewal answered %d certificates, want leaf, intermediate and root", n)
	}
	newSubj := fmt.Sprintf("cert:%x", next.Leaf().SerialNumber)
	oldSubj := fmt.Sprintf("cert:%x", old.Leaf().SerialNumber)
	var sawOld, sawNew bool
	for s := range subjects {
		sawOld = sawOld || strings.Contains(s, oldSubj)
		sawNew = sawNew || strings.Contains(s, newSubj)
	}
	if failed.Load() != 0 || !sawOld || !sawNew {
		t.Fatalf("through the renewal: %d ok, %d failed; answered as the old token %v, as the new %v", ok.Load(), failed.Load(), sawOld, sawNew)
	}
	t.Logf("%d requests through the adapter across the renewal, none failed", ok.Load())
	list := mustMohr(t, dd, "token", "list", "--siam", "SIAM-10001")
	if !strings.Contains(list, fmt.Sprintf("%x", old.Leaf().SerialNumber)) || !strings.Contains(list, "superseded") || !strings.Contains(list, "active") {
		t.Fatalf("token list after renewal:\n%s", list)
	}
	// Fail closed: the superseded certificate cannot renew again, and a request for another facility is refused.
	csr, _ := tokens.NewCSR(rand.Reader, ks.Key, "SIAM-10001", "adapter")
	if _, err := (&adapter.HTTPRenewer{URL: hix + "/v1/renewal", RootCAs: roots}).Renew(ctx, old, csr); err == nil {
		t.Fatal("the superseded token renewed again")
	}
	other, _ := tokens.NewCSR(rand.Reader, next.Key, "SIAM-20002", "adapter")
	if _, err := (&adapter.HTTPRenewer{URL: hix + "/v1/renewal", RootCAs: roots}).Renew(ctx, next, other); err == nil {
		t.Fatal("renewal for another facility accepted")
	}
}
