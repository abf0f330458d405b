package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/signing"
	"golang.org/x/mod/sumdb/note"
)

// pgProxy forwards TCP connections to PostgreSQL until cut, so a test can take the database away from the
// nodes and give it back.
type pgProxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newPGProxy(t *testing.T, target string) *pgProxy {
	p := &pgProxy{t: t, target: target, conns: map[net.Conn]bool{}}
	p.up("127.0.0.1:0")
	t.Cleanup(p.cut)
	return p
}

func (p *pgProxy) up(addr string) {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after a cut
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[u] = true, true
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

// cut closes the listener and every forwarded connection: the database is unreachable.
func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// testCluster is one shared configuration directory (CA, audit key, mohr.yaml) and the nodes started on it.
type testCluster struct {
	t      *testing.T
	shared string // data dir of the CLI: mohr.yaml, ca/, audit keys
	dsn    string // DSN of the test database (direct)
	admin  string // DSN of the cluster's postgres database
	db     string
	proxy  *pgProxy
	nodes  []*testNode
}

type testNode struct {
	dir              string
	apiPort, pubPort int
	cmd              *exec.Cmd
}

func (n *testNode) api() string { return fmt.Sprintf("https://127.0.0.1:%d", n.apiPort) }
func (n *testNode) pub() string { return fmt.Sprintf("http://127.0.0.1:%d", n.pubPort) }

// newTestCluster creates a database, a development CA and one audit key in a shared directory, and a
// configuration every node uses (the database through a proxy the test can cut).
func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	db := "mohr_cluster_" + fmt.Sprint(time.Now().UnixNano())
	if out, err := exec.Command("psql", dsn, "-c", "CREATE DATABASE "+db).CombinedOutput(); err != nil {
		t.Fatalf("create database: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("psql", dsn, "-c", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)").Run() })
	u, _ := url.Parse(dsn)
	proxy := newPGProxy(t, u.Host)
	direct := *u
	direct.Path = "/" + db
	u.Host, u.Path = proxy.addr, "/"+db
	c := &testCluster{t: t, shared: t.TempDir(), dsn: direct.String(), admin: dsn, db: db, proxy: proxy}
	ca := filepath.Join(c.shared, "ca")
	cfg := fmt.Sprintf(`database:
  driver: postgres
  dsn: %s
ca:
  key: file:%s
  cert: %s
  root: %s
audit:
  key: file:%s
  vkeys: %s
  checkpoint_interval: 1s
`, u.String(), filepath.Join(ca, "intermediate.key"), filepath.Join(ca, "intermediate.pem"), filepath.Join(ca, "root.pem"),
		filepath.Join(c.shared, "audit.skey"), filepath.Join(c.shared, "audit.vkey"))
	os.WriteFile(filepath.Join(c.shared, "mohr.yaml"), []byte(cfg), 0o600)
	mustMohr(t, c.shared, "ca", "init", "--dev")
	mustMohr(t, c.shared, "audit", "keygen")
	return c
}

// start runs a node: its own data directory, the shared configuration, its own ports.
func (c *testCluster) start(n *testNode) {
	t := c.t
	t.Helper()
	if n.dir == "" {
		n.dir, n.apiPort, n.pubPort = t.TempDir(), freePort(t), freePort(t)
		c.nodes = append(c.nodes, n)
	}
	cmd := exec.Command(mohrBin, "--data-dir", n.dir, "--config", filepath.Join(c.shared, "mohr.yaml"), "serve",
		"--listen", fmt.Sprintf("127.0.0.1:%d", n.apiPort), "--public-listen", fmt.Sprintf("127.0.0.1:%d", n.pubPort))
	cmd.Env = append(os.Environ(), "MOHR_DATA_DIR=", "MOHR_CONFIG=")
	logf, _ := os.OpenFile(filepath.Join(n.dir, "serve.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd = cmd
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(n.dir, "serve.log"))
			t.Logf("log of the node on %s (pid %d):\n%s", n.pub(), cmd.Process.Pid, log)
		}
	})
	if !waitFor(clusterWait, func() bool { return status(n.pub()+"/readyz") == 200 }) {
		log, _ := os.ReadFile(filepath.Join(n.dir, "serve.log"))
		t.Fatalf("node did not come up:\n%s", log)
	}
}

func (c *testCluster) kill(n *testNode) {
	n.cmd.Process.Signal(syscall.SIGKILL)
	n.cmd.Wait()
}

func (c *testCluster) psql(sql string) string { return c.psqlOn(c.dsn, sql) }

func (c *testCluster) psqlOn(dsn, sql string) string {
	out, err := exec.Command("psql", dsn, "-At", "-c", sql).CombinedOutput()
	if err != nil {
		c.t.Fatalf("psql %s: %v %s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

func status(u string) int {
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func fetch(t *testing.T, u string) []byte {
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// clusterWait bounds every wait of the cluster tests for something the nodes do by themselves (start, the
// change feed, a checkpoint, readiness following the database). It is generous: on two loaded cores a node
// can take many times its usual time, and a wait that holds returns as soon as it does.
const clusterWait = 2 * time.Minute

// waitFor polls cond every 100 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	return waitEvery(d, 100*time.Millisecond, cond)
}

// waitEvery polls cond every step until it holds or d passes (a slower step for conditions that run a
// process).
func waitEvery(d, step time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(step) {
		if cond() {
			return true
		}
	}
	return cond()
}

// foreignSigned returns a root that is not Mohr's and a CMS signature by a leaf under it.
func foreignSigned(t *testing.T) (*x509.Certificate, []byte) {
	t.Helper()
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Other Root"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rder, _ := x509.CreateCertificate(rand.Reader, rt, rt, &rk.PublicKey, rk)
	root, _ := x509.ParseCertificate(rder)
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Other Signer"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment}
	lder, _ := x509.CreateCertificate(rand.Reader, lt, root, &lk.PublicKey, rk)
	leaf, _ := x509.ParseCertificate(lder)
	der, err := signing.Sign(context.Background(), []byte(`{"resourceType":"Bundle"}`), signing.SignOptions{Signer: lk, Chain: []*x509.Certificate{leaf}})
	if err != nil {
		t.Fatal(err)
	}
	return root, der
}

func postDER(t *testing.T, c *http.Client, u string, der []byte) string {
	req, _ := http.NewRequest("POST", u, bytes.NewReader(der))
	req.Header.Set("Content-Type", "application/pkcs7-mime")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// TestClusterTwoNodes runs two `mohr serve` nodes (own data directories, one configuration) on one PostgreSQL
// database and checks what used to be per node: one audit identity with checkpoints written once per
// interval and a recorded key rotation that `mohr audit verify` follows; dual-control approvals requested on
// one node, which is then killed and restarted, and approved on the other, once; trust anchors changed that
// way applying on both nodes through the change feed; CRLs served byte-identically by both; and /readyz
// following the database (unreachable, read-only, back).
func TestClusterTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two servers")
	}
	c := newTestCluster(t)
	op1 := operatorClient(t, c.shared, "Operator One", "operator")
	op2 := operatorClient(t, c.shared, "Operator Two", "operator")
	a, b := &testNode{}, &testNode{}
	c.start(a)
	c.start(b)

	// Activity on both nodes: issuance from the CLI, revocations through each node's API.
	var serials []string
	for i := 0; i < 4; i++ {
		out := mustMohr(t, c.shared, "cert", "issue", "--profile", "tsa", "--csr", writeCSR(t, t.TempDir(), "tsa", newP256(t)), "--name", fmt.Sprint("TSA ", i))
		blk := pemBlock(t, out)
		cert, _ := x509.ParseCertificate(blk)
		serials = append(serials, fmt.Sprintf("%x", cert.SerialNumber))
	}
	for i, s := range serials[:2] {
		n := []*testNode{a, b}[i]
		if code, m := call(t, op1, "POST", n.api()+"/v1/certificates/"+s+"/revoke", map[string]any{"reason": 1}); code != 200 {
			t.Fatalf("revoke on node %d: %d %v", i, code, m)
		}
	}

	// (2) CRLs: both nodes serve the same bytes, within the change feed's period.
	for shard := 0; shard < 2; shard++ {
		path := fmt.Sprintf("/crl/%d.crl", shard)
		if !waitFor(clusterWait, func() bool {
			x, y := fetch(t, a.pub()+path), fetch(t, b.pub()+path)
			return len(x) > 0 && bytes.Equal(x, y)
		}) {
			t.Errorf("shard %d: the nodes serve different CRLs", shard)
		}
	}
	if n := c.psql(`SELECT count(*) FROM (SELECT shard, number FROM crls GROUP BY shard, number HAVING count(*) > 1) d`); n != "0" {
		t.Errorf("%s CRL numbers repeated", n)
	}

	// (1) One audit identity: checkpoints by the deployment's key, at most one per interval cluster-wide.
	// A checkpoint covering the whole log (the lease holder signs one within an interval of the log growing).
	if !waitFor(clusterWait, func() bool {
		return c.psql(`SELECT COALESCE(MAX(size), 0) FROM audit_checkpoints`) == c.psql(`SELECT size FROM audit_head`)
	}) {
		t.Fatal("no checkpoint covers the audit log")
	}
	out := mustMohr(t, c.shared, "audit", "verify")
	if !strings.Contains(out, "signed checkpoints verified") {
		t.Fatalf("audit verify: %s", out)
	}
	gaps := c.psql(`SELECT count(*) FROM (SELECT created_us - lag(created_us) OVER (ORDER BY created_us) AS gap FROM audit_checkpoints) g WHERE gap < 850000`)
	if gaps != "0" {
		t.Errorf("%s checkpoints written less than an interval after the previous one", gaps)
	}
	// Rotation: a new key, recorded in the log; verify needs every key of the history, and only those.
	rot := t.TempDir()
	mustMohr(t, rot, "audit", "keygen")
	cfg2 := strings.Replace(string(mustRead(t, filepath.Join(c.shared, "mohr.yaml"))), filepath.Join(c.shared, "audit.skey"), filepath.Join(rot, "audit.skey"), 1)
	os.WriteFile(filepath.Join(rot, "mohr.yaml"), []byte(cfg2), 0o600)
	// The nodes keep checkpointing with the old key, and a checkpoint of a size already stored is kept (ON
	// CONFLICT DO NOTHING): a node may take the size the CLI signs (the size after the activation event) first.
	// Grow the log and sign again until a checkpoint of the new key is stored.
	rotV, err := note.NewVerifier(strings.TrimSpace(string(mustRead(t, filepath.Join(rot, "audit.vkey")))))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		out := mustMohr(t, rot, "--config", filepath.Join(rot, "mohr.yaml"), "audit", "checkpoint")
		if _, err := note.Open([]byte(out), note.VerifierList(rotV)); err == nil {
			break
		}
		if i == 10 {
			t.Fatalf("no checkpoint of the new key stored after %d tries (the nodes took every size first)", i+1)
		}
		mustMohr(t, c.shared, "cert", "issue", "--profile", "tsa", "--csr", writeCSR(t, t.TempDir(), "tsa", newP256(t)), "--name", fmt.Sprintf("TSA during rotation %d", i))
	}
	if !strings.Contains(c.psql(`SELECT string_agg(event, ' ') FROM audit_log WHERE event LIKE '%audit.key.activated%'`), strings.TrimSpace(string(mustRead(t, filepath.Join(rot, "audit.vkey"))))) {
		t.Error("the key rotation is not in the audit log")
	}
	both := filepath.Join(rot, "both.vkeys")
	os.WriteFile(both, append(mustRead(t, filepath.Join(c.shared, "audit.vkey")), mustRead(t, filepath.Join(rot, "audit.vkey"))...), 0o644)
	// The nodes still checkpoint with the old key (a rolling rotation): the log grows, and a node signs a
	// checkpoint beyond the one of the new key.
	rotSize := c.psql(`SELECT MAX(size) FROM audit_checkpoints`)
	mustMohr(t, c.shared, "cert", "issue", "--profile", "tsa", "--csr", writeCSR(t, t.TempDir(), "tsa", newP256(t)), "--name", "TSA after rotation")
	if !waitFor(clusterWait, func() bool {
		return c.psql(`SELECT count(*) FROM audit_checkpoints WHERE size > `+rotSize) != "0"
	}) {
		t.Fatal("no node checkpointed after the rotation")
	}
	if out := mustMohr(t, c.shared, "audit", "verify", "--vkey", both); !strings.Contains(out, "signed checkpoints verified") {
		t.Fatalf("audit verify with both keys: %s", out)
	}
	for _, only := range []string{filepath.Join(c.shared, "audit.vkey"), filepath.Join(rot, "audit.vkey")} {
		if _, _, code := mohr(t, c.shared, "audit", "verify", "--vkey", only); code == 0 {
			t.Errorf("audit verify with only %s passed", only)
		}
	}

	// (6) and (4): a foreign signature is untrusted on both nodes; op1 asks on node a to trust its root.
	other, cms := foreignSigned(t)
	for _, n := range []*testNode{a, b} {
		if r := postDER(t, op1, n.api()+"/v1/verify", cms); !strings.Contains(r, "NO_CERTIFICATE_CHAIN_FOUND") {
			t.Fatalf("foreign signature before the change: %s", r)
		}
	}
	code, m := call(t, op1, "PUT", a.api()+"/v1/ca/trust-anchors", map[string]any{"roots": [][]byte{other.Raw}})
	if code != 202 {
		t.Fatalf("request: %d %v", code, m)
	}
	id, _ := m["id"].(string)
	c.kill(a) // the approval survives the node that took it
	c.start(a)
	code, m = call(t, op2, "GET", b.api()+"/v1/approvals", nil)
	if code != 200 || !strings.Contains(fmt.Sprint(m), id) {
		t.Fatalf("approvals on node b: %d %v", code, m)
	}
	if code, _ := call(t, op1, "POST", b.api()+"/v1/approvals/"+id+"/approve", nil); code != 409 {
		t.Fatalf("the requester approved: %d", code)
	}
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, n := range []*testNode{a, b} { // both nodes at once: one grant
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = call(t, op2, "POST", n.api()+"/v1/approvals/"+id+"/approve", nil)
		}()
	}
	wg.Wait()
	if !(codes[0] == 200 && codes[1] == 404 || codes[0] == 404 && codes[1] == 200) {
		t.Fatalf("concurrent approvals: %v, want one 200 and one 404", codes)
	}
	for _, n := range []*testNode{a, b} {
		var last string
		if !waitEvery(clusterWait, 250*time.Millisecond, func() bool {
			last = postDER(t, op1, n.api()+"/v1/verify", cms)
			return !strings.Contains(last, "NO_CERTIFICATE_CHAIN_FOUND")
		}) {
			t.Errorf("node %s: the new trust anchors do not apply: %s", n.api(), last)
		}
	}

	// /readyz follows the database: unreachable, then read-only, then back.
	c.proxy.cut()
	for _, n := range []*testNode{a, b} {
		if !waitFor(clusterWait, func() bool { return status(n.pub()+"/readyz") == 503 }) {
			t.Errorf("%s ready without a database", n.pub())
		}
	}
	c.proxy.up(c.proxy.addr)
	for _, n := range []*testNode{a, b} {
		if !waitFor(clusterWait, func() bool { return status(n.pub()+"/readyz") == 200 }) {
			t.Errorf("%s not ready after the database came back", n.pub())
		}
	}
	c.psqlOn(c.admin, `ALTER DATABASE `+c.db+` SET default_transaction_read_only = on`)
	c.psqlOn(c.admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '`+c.db+`' `)
	for _, n := range []*testNode{a, b} {
		if !waitFor(clusterWait, func() bool { return status(n.pub()+"/readyz") == 503 }) {
			t.Errorf("%s ready on a read-only database", n.pub())
		}
	}
	// A token-store write on a read-only database is a 503 with Retry-After, as for the other stores.
	req, _ := http.NewRequest("POST", a.api()+"/v1/registry/facilities", strings.NewReader(`{"facilities":[{"siamId":"SIAM-1001",`+
		`"name":"Clinic","licenceNumber":"L-1","licenceNotAfter":"2099-01-01T00:00:00Z","licenceStatus":"active"}]}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := op1.Do(req); err != nil {
		t.Errorf("registry import on a read-only database: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Errorf("registry import on a read-only database: %d (Retry-After %q) %s, want 503 with Retry-After",
				resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	c.psqlOn(c.admin, `ALTER DATABASE `+c.db+` SET default_transaction_read_only = off`)
	c.psqlOn(c.admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '`+c.db+`' `)
	for _, n := range []*testNode{a, b} {
		if !waitFor(clusterWait, func() bool { return status(n.pub()+"/readyz") == 200 }) {
			t.Errorf("%s not ready after the database became writable", n.pub())
		}
	}
	if out := mustMohr(t, c.shared, "audit", "verify", "--vkey", both); !strings.Contains(out, "intact") {
		t.Fatalf("audit verify at the end: %s", out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pemBlock(t *testing.T, s string) []byte {
	blk, _ := pem.Decode([]byte(s))
	if blk == nil {
		t.Fatalf("no PEM in %q", s)
	}
	return blk.Bytes
}
