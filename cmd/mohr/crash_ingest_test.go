package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/store/storetest"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// TestCrashConsistencyIngest kills the server with SIGKILL in the middle of a loop of ingestions
// (POST /v1/prescriptions from four concurrent facility connections, so stored prescriptions share group
// commits), several times. After the last kill every prescription a client got a 201 for is stored and readable,
// and the audit log verifies.
func TestCrashConsistencyIngest(t *testing.T) { crashConsistencyIngest(t, "") }

// TestCrashConsistencyIngestPostgres is TestCrashConsistencyIngest with the store on PostgreSQL.
func TestCrashConsistencyIngestPostgres(t *testing.T) {
	crashConsistencyIngest(t, fmt.Sprintf("database: {driver: postgres, dsn: %q}\n", storetest.FreshPostgres(t)))
}

func crashConsistencyIngest(t *testing.T, extraConfig string) {
	if testing.Short() {
		t.Skip("starts and kills the server several times")
	}
	dd, work := t.TempDir(), t.TempDir()
	apiPort, pubPort := freePort(t), freePort(t)
	// No request-rate limit: the read-back after the last kill asks for every acknowledged prescription (hundreds)
	// from one client, which the default per-client limit answers with 429.
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte(fmt.Sprintf("listen: 127.0.0.1:%d\npublic_listen: 127.0.0.1:%d\n", apiPort, pubPort)+
		"api: {rate_limit: 100000000, public_rate_limit: 100000000}\n"+extraConfig), 0o600)
	mustMohr(t, dd, "ca", "init", "--dev")

	// A registered facility (its adapter certificate is the API credential) and a registered physician.
	fac := filepath.Join(work, "fac.csv")
	os.WriteFile(fac, []byte("siam_id,name,licence_number,licence_status,licence_from,licence_until,system_id,system_status,system_from,system_until\n"+
		"SIAM-10001,Crash Hospital,LIC/1402/77,active,2024-01-01,2035-06-30,SYS-42,active,2024-01-01,2035-06-30\n"), 0o600)
	mustMohr(t, dd, "facility", "import", fac)
	gen := rxgen.New(7)
	phy := gen.Physician()
	phyCSV := filepath.Join(work, "phy.csv")
	os.WriteFile(phyCSV, []byte("national_code,council_no,name,specialty,status,valid_from,valid_until\n"+
		phy.NationalCode+","+phy.CouncilNumber+",Dr Crash,General Practice,active,2020-01-01,2035-12-31\n"), 0o600)
	mustMohr(t, dd, "physician", "import", phyCSV)
	parse := func(out string) *x509.Certificate {
		t.Helper()
		b, _ := pem.Decode([]byte(out))
		if b == nil {
			t.Fatalf("no certificate in %q", out)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	docKey := newP256(t)
	docCert := parse(mustMohr(t, dd, "cert", "issue", "--profile", "physician-signing", "--csr", writeCSR(t, work, "doc", docKey),
		"--name", "Dr Crash", "--national-code", phy.NationalCode, "--council-no", phy.CouncilNumber))
	facKey := newP256(t)
	facCert := parse(mustMohr(t, dd, "cert", "issue", "--profile", "facility-adapter", "--csr", writeCSR(t, work, "fac", facKey),
		"--siam-id", "SIAM-10001", "--licence", "LIC/1402/77", "--system-cert", "SYS-42"))
	interPEM, err := os.ReadFile(filepath.Join(dd, "ca", "intermediate.pem"))
	if err != nil {
		t.Fatal(err)
	}
	inter := parse(string(interPEM))
	var genMu sync.Mutex
	signRx := func() []byte {
		genMu.Lock()
		body, err := gen.Prescription(phy)
		genMu.Unlock()
		if err != nil {
			t.Error(err)
			return nil
		}
		der, err := signing.Sign(context.Background(), body, signing.SignOptions{Signer: docKey, Chain: []*x509.Certificate{docCert, inter}})
		if err != nil {
			t.Error(err)
		}
		return der
	}
	client := func() *http.Client {
		c := apiClient(t, dd)
		c.Timeout = time.Minute
		tr := c.Transport.(*http.Transport)
		tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{facCert.Raw}, PrivateKey: crypto.Signer(facKey)}}
		return c
	}

	received := map[string]bool{}
	var mu sync.Mutex
	const rounds = 3
	for round := 0; round < rounds; round++ {
		srv := startServe(t, dd, apiPort)
		c := client()
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Go(func() {
				for ctx.Err() == nil {
					der := signRx()
					if der == nil {
						return
					}
					req, _ := http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("https://127.0.0.1:%d/v1/prescriptions", apiPort), bytes.NewReader(der))
					req.Header.Set("Content-Type", "application/cms")
					resp, err := c.Do(req)
					if err != nil {
						return // the server is gone
					}
					var out struct {
						Report struct {
							ContentSHA256 string `json:"contentSha256"`
						} `json:"report"`
					}
					derr := json.NewDecoder(resp.Body).Decode(&out)
					resp.Body.Close()
					if derr != nil && resp.StatusCode/100 == 2 {
						return // killed while the answer was being sent: the client did not get it
					}
					if resp.StatusCode/100 == 2 {
						if out.Report.ContentSHA256 == "" {
							t.Errorf("%d without a report", resp.StatusCode)
							return
						}
						mu.Lock()
						received[out.Report.ContentSHA256] = true
						mu.Unlock()
					} else if resp.StatusCode != http.StatusServiceUnavailable {
						t.Errorf("ingest answered %d", resp.StatusCode)
						return
					}
				}
			})
		}
		d, _ := rand.Int(rand.Reader, big.NewInt(1500))
		time.Sleep(800*time.Millisecond + time.Duration(d.Int64())*time.Millisecond)
		srv.Process.Signal(syscall.SIGKILL)
		srv.Wait()
		cancel()
		wg.Wait()
	}
	if len(received) == 0 {
		log, _ := os.ReadFile(filepath.Join(dd, "serve.log"))
		t.Fatalf("no prescription was accepted in %d rounds:\n%s", rounds, log)
	}
	// After the last kill: every accepted prescription is stored (read back through the API by its submitter)
	// and the audit log verifies.
	mustMohr(t, dd, "audit", "verify")
	srv := startServe(t, dd, apiPort)
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	c := client()
	for id := range received {
		resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/v1/prescriptions/%s", apiPort, id))
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Signature []byte `json:"signature"`
		}
		json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(p.Signature) == 0 {
			t.Errorf("prescription %s was acknowledged but reads back %d", id, resp.StatusCode)
		}
	}
	t.Logf("%d rounds, %d prescriptions acknowledged, all stored", rounds, len(received))
}
