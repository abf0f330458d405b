package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/rxgen"
	"github.com/mohr-hix/mohr/tokens"
)

// insurerEnv is a node on a fake clock with its API served over mTLS, a physician and an insurer client.
type insurerEnv struct {
	clk      *fakeClock
	n        *node
	gen      *rxgen.Generator
	doc      *rxDoctor
	url      string
	physC    *http.Client
	insurerC *http.Client
	insCert  *x509.Certificate
	insKey   *ecdsa.PrivateKey
	tlsRoot  *x509.Certificate // the test server's TLS certificate (self-signed by httptest)
}

func newInsurerEnv(t *testing.T) *insurerEnv {
	t.Helper()
	e := &insurerEnv{clk: &fakeClock{t: time.Now().UTC().Truncate(time.Second)}}
	// The public listener (OCSP, CRLs) on a port of its own, named in the certificates, so that mohr verify
	// --ocsp reaches it as a relying party would.
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.n = clockNodeWith(t, e.clk, func(c *Config) { c.PublicListen = pub.Addr().String() })
	ps := &http.Server{Handler: publicOnly(e.n.caFiles(func() http.Handler {
		srv, err := e.n.apiServer()
		if err != nil {
			t.Fatal(err)
		}
		return srv.Handler()
	}()))}
	go ps.Serve(pub)
	t.Cleanup(func() { ps.Close() })
	e.gen = rxgen.New(20)
	e.gen.Now = e.clk.Now
	e.doc = newDoctor(t, e.n, e.gen, e.clk.Now())
	srv, err := e.n.apiServer()
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.TLS = srv.TLSConfig()
	hs.StartTLS()
	t.Cleanup(hs.Close)
	e.url = hs.URL
	e.tlsRoot = hs.Certificate()
	client := func(req ca.Request) (*http.Client, *x509.Certificate, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		cert, err := issueFor(context.Background(), e.n.ca, key, req)
		if err != nil {
			t.Fatal(err)
		}
		tr := hs.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}
		return &http.Client{Transport: tr, Timeout: 5 * time.Minute}, cert, key
	}
	e.physC, _, _ = client(ca.Request{Profile: ca.ProfilePhysicianAuth, CommonName: "Dr " + e.doc.phy.Family,
		NationalCode: e.doc.phy.NationalCode, CouncilNumber: e.doc.phy.CouncilNumber})
	e.insurerC, e.insCert, e.insKey = client(ca.Request{Profile: ca.ProfileOrganisationAuth, CommonName: "Salamat Insurance API", Role: "insurer"})
	return e
}

// signRx signs a new prescription by the doctor at the clock's time (B-B).
func (e *insurerEnv) signRx(t *testing.T) []byte {
	t.Helper()
	body, err := e.gen.Prescription(e.doc.phy)
	if err != nil {
		t.Fatal(err)
	}
	chain := e.n.ca.Issuer().Chain
	der, err := signing.Sign(context.Background(), body, signing.SignOptions{Signer: e.doc.key,
		Chain: append([]*x509.Certificate{e.doc.cert}, chain[:len(chain)-1]...), Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// ingest submits der as the physician and returns the stored signature (B-LT) as an insurer reads it back.
func (e *insurerEnv) ingest(t *testing.T, der []byte) (id string, stored []byte) {
	t.Helper()
	e.clk.Add(3 * time.Second)
	resp, err := e.physC.Post(e.url+"/v1/prescriptions", "application/cms", bytes.NewReader(der))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Report map[string]any `json:"report"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("ingest: %d %v %v", resp.StatusCode, err, m.Report)
	}
	id, _ = m.Report["contentSha256"].(string)
	var p struct {
		Signature []byte `json:"signature"`
	}
	e.getJSON(t, e.insurerC, "/v1/prescriptions/"+id, http.StatusOK, &p)
	return id, p.Signature
}

func (e *insurerEnv) getJSON(t *testing.T, c *http.Client, path string, want int, v any) {
	t.Helper()
	resp, err := c.Get(e.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d: %s", path, resp.StatusCode, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
}

// suspend records the doctor's suspension in the registry as an RA import does, effective now.
func (e *insurerEnv) suspend(t *testing.T) {
	t.Helper()
	now := e.clk.Now()
	if err := e.n.tokens.ImportPhysicians(context.Background(), []tokens.Physician{{NationalCode: e.doc.phy.NationalCode,
		CouncilNo: e.doc.phy.CouncilNumber, Name: e.doc.phy.Given + " " + e.doc.phy.Family, Specialty: e.doc.phy.Specialty,
		Status: tokens.StatusSuspended, ValidFrom: now.AddDate(-5, 0, 0), ValidUntil: now.AddDate(3, 0, 0)}}, "test:ra"); err != nil {
		t.Fatal(err)
	}
}

type verdict struct {
	Indication    string `json:"indication"`
	SubIndication string `json:"subIndication"`
	Reason        string `json:"reason"`
	Name          string `json:"name"`
	Line          int    `json:"line"`
	Prescriber    *struct {
		Registration    string `json:"registration"`
		RegistrationNow string `json:"registrationNow"`
	} `json:"prescriber"`
}

func (e *insurerEnv) verifyAPI(t *testing.T, der []byte) verdict {
	t.Helper()
	resp, err := e.insurerC.Post(e.url+"/v1/verify", "application/cms", bytes.NewReader(der))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v verdict
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("verify: %d %v", resp.StatusCode, err)
	}
	return v
}

// batchAPI posts NDJSON lines to /v1/verify/batch and returns the result lines by name (summary lines apart).
func (e *insurerEnv) batchAPI(t *testing.T, query, body string) (map[string]verdict, []map[string]any) {
	t.Helper()
	resp, err := e.insurerC.Post(e.url+"/v1/verify/batch"+query, "application/x-ndjson", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("batch: %d %s", resp.StatusCode, b)
	}
	out := map[string]verdict{}
	var summaries []map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var probe map[string]any
		if err := json.Unmarshal(sc.Bytes(), &probe); err != nil {
			t.Fatalf("batch line %q: %v", sc.Text(), err)
		}
		if _, ok := probe["summary"]; ok {
			summaries = append(summaries, probe)
			continue
		}
		var v verdict
		json.Unmarshal(sc.Bytes(), &v)
		out[v.Name] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out, summaries
}

func ndjsonLine(name string, der []byte) string {
	b, _ := json.Marshal(map[string]any{"name": name, "cms": der})
	return string(b) + "\n"
}

// TestSuspensionJudgedAtSigningTime is issue 20's first finding: prescriptions signed and time-stamped before a
// physician's suspension still pass after it; those signed after it fail; through /v1/verify and
// /v1/verify/batch as an insurer.
func TestSuspensionJudgedAtSigningTime(t *testing.T) {
	e := newInsurerEnv(t)
	var before, after [][]byte
	for i := 0; i < 3; i++ {
		_, stored := e.ingest(t, e.signRx(t)) // B-LT, timestamped now
		before = append(before, stored)
		e.clk.Add(10 * time.Minute)
	}
	if v := e.verifyAPI(t, before[0]); v.Indication != "TOTAL_PASSED" {
		t.Fatalf("before the suspension: %+v", v)
	}
	e.clk.Add(time.Hour)
	e.suspend(t)
	e.clk.Add(time.Hour)
	for i := 0; i < 2; i++ {
		der, err := signing.AddSignatureTimestamp(context.Background(), e.signRx(t), e.n.tsa) // B-T after the suspension
		if err != nil {
			t.Fatal(err)
		}
		after = append(after, der)
		e.clk.Add(time.Minute)
	}
	e.clk.Add(24 * time.Hour)
	for i, der := range before {
		v := e.verifyAPI(t, der)
		if v.Indication != "TOTAL_PASSED" || v.Prescriber == nil || v.Prescriber.Registration != "active" || v.Prescriber.RegistrationNow != "suspended" {
			t.Errorf("signed before the suspension %d: %+v %+v", i, v, v.Prescriber)
		}
	}
	for i, der := range after {
		v := e.verifyAPI(t, der)
		if v.Indication != "INDETERMINATE" || v.SubIndication != "SIG_CONSTRAINTS_FAILURE" || !strings.Contains(v.Prescriber.Registration, "suspended") {
			t.Errorf("signed after the suspension %d: %+v", i, v)
		}
	}
	var body strings.Builder
	for i, der := range before {
		body.WriteString(ndjsonLine(fmt.Sprintf("before-%d", i), der))
	}
	for i, der := range after {
		body.WriteString(ndjsonLine(fmt.Sprintf("after-%d", i), der))
	}
	got, _ := e.batchAPI(t, "", body.String())
	for name, v := range got {
		want := "TOTAL_PASSED"
		if strings.HasPrefix(name, "after") {
			want = "INDETERMINATE"
		}
		if v.Indication != want {
			t.Errorf("batch %s: %+v", name, v)
		}
	}
	if len(got) != len(before)+len(after) {
		t.Errorf("batch gave %d results", len(got))
	}
	// The CLI, consulting the exchange's registry with the insurer's credential, agrees with the server.
	e.cliAgrees(t, map[string][]byte{"before-0.p7s": before[0], "before-1.p7s": before[1], "before-2.p7s": before[2],
		"after-0.p7s": after[0], "after-1.p7s": after[1]})
	// The history is in the database and the change in the audit log.
	hist, err := e.n.ts.PhysicianHistory(context.Background(), e.doc.phy.NationalCode)
	if err != nil || len(hist) != 2 || hist[1].Status != tokens.StatusSuspended {
		t.Fatalf("history %+v %v", hist, err)
	}
}

// credFiles writes the insurer's credential and the server's TLS root for the CLI.
func (e *insurerEnv) credFiles(t *testing.T) (dir, cert, key, bundle string) {
	t.Helper()
	dir = t.TempDir()
	cert, key, bundle = filepath.Join(dir, "insurer.pem"), filepath.Join(dir, "insurer.key"), filepath.Join(dir, "root.pem")
	writePEM(t, cert, "CERTIFICATE", e.insCert.Raw)
	der, err := x509.MarshalPKCS8PrivateKey(e.insKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, key, "PRIVATE KEY", der)
	writePEM(t, bundle, "CERTIFICATE", e.tlsRoot.Raw)
	return dir, cert, key, bundle
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// cliAgrees runs mohr verify on docs (file name -> DER) with the exchange's registry, without a registry, and
// with --no-registry, and compares with /v1/verify.
func (e *insurerEnv) cliAgrees(t *testing.T, docs map[string][]byte) {
	t.Helper()
	dir, cert, key, bundle := e.credFiles(t)
	rxDir := filepath.Join(dir, "rx")
	os.Mkdir(rxDir, 0o700)
	for name, der := range docs {
		if err := os.WriteFile(filepath.Join(rxDir, name), der, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dd := e.n.cfg.dataDir
	at := e.clk.Now().Format(time.RFC3339)
	parse := func(out string) map[string]verdict {
		got := map[string]verdict{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var v verdict
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Fatalf("CLI line %q: %v", line, err)
			}
			got[filepath.Base(v.Name)] = v
		}
		return got
	}
	// With the registry: the same verdict as the server for every document.
	out, errOut, code := mohr(t, dd, "verify", "--ocsp", "--registry", e.url, "--cert", cert, "--key", key, "--ca-bundle", bundle,
		"--at", at, "--format", "json", rxDir)
	if code != 2 {
		t.Fatalf("verify --registry: exit %d\n%s\n%s", code, out, errOut)
	}
	got := parse(out)
	for name, der := range docs {
		api := e.verifyAPI(t, der)
		cli := got[name]
		if cli.Indication != api.Indication || cli.SubIndication != api.SubIndication || cli.Prescriber == nil ||
			cli.Prescriber.Registration != api.Prescriber.Registration {
			t.Errorf("%s: CLI %+v %+v, server %+v %+v", name, cli, cli.Prescriber, api, api.Prescriber)
		}
	}
	// Without a registry: incomplete, never TOTAL_PASSED, and said so.
	out, errOut, code = mohr(t, dd, "verify", "--ocsp", "--at", at, "--format", "json", rxDir)
	if code != 2 || !strings.Contains(errOut, "--registry") {
		t.Fatalf("verify without registry: exit %d\n%s", code, errOut)
	}
	for name, v := range parse(out) {
		if v.Indication != "INDETERMINATE" || v.SubIndication != "TRY_LATER" || v.Prescriber.Registration != "not consulted" {
			t.Errorf("%s without registry: %+v %+v", name, v, v.Prescriber)
		}
	}
	// --no-registry: the user accepts an unchecked registration, and the report says "not checked".
	out, errOut, _ = mohr(t, dd, "verify", "--ocsp", "--no-registry", "--at", at, "--format", "json", rxDir)
	if !strings.Contains(errOut, "NOT checked") {
		t.Errorf("--no-registry gave no warning: %s", errOut)
	}
	for name, v := range parse(out) {
		if v.Prescriber == nil || v.Prescriber.Registration != "not checked" {
			t.Errorf("%s --no-registry: %+v", name, v)
		}
	}
	// A credential the exchange refuses fails the command; it does not turn into TRY_LATER documents.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	self := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "not an insurer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	sd, _ := x509.CreateCertificate(rand.Reader, self, self, &other.PublicKey, other)
	kd, _ := x509.MarshalPKCS8PrivateKey(other)
	writePEM(t, filepath.Join(dir, "bad.pem"), "CERTIFICATE", sd)
	writePEM(t, filepath.Join(dir, "bad.key"), "PRIVATE KEY", kd)
	_, errOut, code = mohr(t, dd, "verify", "--registry", e.url, "--cert", filepath.Join(dir, "bad.pem"), "--key", filepath.Join(dir, "bad.key"),
		"--ca-bundle", bundle, "--at", at, rxDir)
	if code == 0 || code == 2 || !strings.Contains(errOut, "refused the credential") {
		t.Errorf("refused credential: exit %d %s", code, errOut)
	}
}

// TestInsurerBatchResume is issue 20's batch: 10,000 prescriptions (B-B and B-LT) with a few bad lines go
// through mohr verify --server (POST /v1/verify/batch as an insurer); the client is killed mid-batch and run
// again with --resume: the result file then holds every input line exactly once, in order, numbered, with
// its own reason for each bad line, the duplicate flagged, and a closing summary.
func TestInsurerBatchResume(t *testing.T) {
	e := newInsurerEnv(t)
	const total = 10_000
	var blt [][]byte
	for i := 0; i < 20; i++ {
		_, stored := e.ingest(t, e.signRx(t))
		blt = append(blt, stored)
	}
	dir, cert, key, bundle := e.credFiles(t)
	in := filepath.Join(dir, "claims.ndjson")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	special := map[int]string{500: "", 1500: "{not json", 2500: `{"name":"no signature"}`}
	dupLine, dupOf := 7000, 0
	var dupDER []byte
	for n := 1; n <= total; n++ {
		if s, ok := special[n]; ok {
			bw.WriteString(s + "\n")
			continue
		}
		var der []byte
		switch {
		case n == dupLine:
			der = dupDER
		case n%10 == 0:
			der = blt[(n/10)%len(blt)]
			if n > 200 { // each stored prescription once; later B-LT lines are fresh B-B
				der = e.signRx(t)
			}
		default:
			der = e.signRx(t)
		}
		if n == 42 {
			dupDER, dupOf = der, n
		}
		bw.WriteString(ndjsonLine(fmt.Sprintf("claim-%05d", n), der))
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out := filepath.Join(dir, "results.ndjson")
	args := []string{"--data-dir", e.n.cfg.dataDir, "verify", "--server", e.url, "--cert", cert, "--key", key, "--ca-bundle", bundle,
		"--out", out, in}

	// First run, killed once a third of the results are in.
	cmd := exec.Command(mohrBin, args...)
	cmd.Env = append(os.Environ(), "MOHR_DATA_DIR=", "MOHR_CONFIG=")
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		b, _ := os.ReadFile(out)
		if bytes.Count(b, []byte("\n")) >= total/3 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no progress: %d lines\n%s", bytes.Count(b, []byte("\n")), errBuf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	partial, _ := os.ReadFile(out)
	if bytes.Contains(partial, []byte(`"summary"`)) {
		t.Fatal("the interrupted run finished before it was killed; nothing to resume")
	}
	whole := partial[:bytes.LastIndexByte(partial, '\n')+1]

	// Resumed.
	stdout, errOut, code := mohr(t, e.n.cfg.dataDir, append(args[2:], "--resume")...)
	if code != 2 { // three bad lines: not everything passed
		t.Fatalf("resume: exit %d\n%s\n%s", code, stdout, errOut)
	}
	res, _ := os.ReadFile(out)
	if !bytes.HasPrefix(res, whole) {
		t.Fatal("the resumed run rewrote results of the first run")
	}
	var kept int
	fmt.Sscanf(errOut[strings.Index(errOut, "resuming after line ")+len("resuming after line "):], "%d", &kept)
	if kept != bytes.Count(whole, []byte("\n")) || kept < total/3 {
		t.Fatalf("resumed after %d, the file held %d whole lines: %s", kept, bytes.Count(whole, []byte("\n")), errOut)
	}
	lines := strings.Split(strings.TrimSuffix(string(res), "\n"), "\n")
	if len(lines) != total+1 {
		t.Fatalf("%d lines in the result file, want %d and a summary", len(lines), total)
	}
	for i, l := range lines[:total] {
		var r struct {
			verdict
			InputError  string `json:"inputError"`
			DuplicateOf int    `json:"duplicateOf"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		n := i + 1
		if r.Line != n {
			t.Fatalf("result %d is for line %d", n, r.Line)
		}
		switch {
		case n == 500:
			if r.InputError != "empty-line" {
				t.Errorf("line 500: %s", l)
			}
		case n == 1500:
			if r.InputError != "not-json" || r.Indication != "TOTAL_FAILED" {
				t.Errorf("line 1500: %s", l)
			}
		case n == 2500:
			if r.InputError != "no-cms" {
				t.Errorf("line 2500: %s", l)
			}
		case r.Indication != "TOTAL_PASSED" || r.Name != fmt.Sprintf("claim-%05d", n):
			t.Errorf("line %d: %.300s", n, l)
		case n == dupLine && r.DuplicateOf != dupOf:
			t.Errorf("line %d: not flagged as a duplicate of %d", n, dupOf)
		}
	}
	var s struct {
		Summary struct {
			FromLine, LastLine, Lines, Documents, Duplicates int
			ByIndication                                     map[string]int
			InputErrors                                      map[string]int
		}
	}
	if err := json.Unmarshal([]byte(lines[total]), &s); err != nil {
		t.Fatal(err)
	}
	if s.Summary.FromLine != 1 || s.Summary.LastLine != total || s.Summary.Lines != total || s.Summary.Documents != total-3 ||
		s.Summary.Duplicates != 1 || s.Summary.ByIndication["TOTAL_PASSED"] != total-3 || s.Summary.ByIndication["TOTAL_FAILED"] != 2 ||
		s.Summary.InputErrors["empty-line"] != 1 {
		t.Errorf("summary %s", lines[total])
	}
}

// TestInsurerEvidence: an insurer gets a sealed validation report per document (POST /v1/verify/sealed) and the
// stored prescription with its sealed ingestion report (GET /v1/prescriptions/{id}); both seals verify with
// openssl against the exchange's root. Roles without the right are refused.
func TestInsurerEvidence(t *testing.T) {
	e := newInsurerEnv(t)
	id, stored := e.ingest(t, e.signRx(t))
	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	writePEM(t, root, "CERTIFICATE", e.n.ca.Issuer().Root().Raw)
	opensslContent := func(name string, der []byte) map[string]any {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, der, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("openssl", "cms", "-verify", "-inform", "DER", "-in", p, "-CAfile", root, "-purpose", "any").Output()
		if err != nil {
			t.Fatalf("openssl cms -verify %s: %v", name, err)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s content: %v %q", name, err, out)
		}
		return m
	}
	resp, err := e.insurerC.Post(e.url+"/v1/verify/sealed", "application/cms", bytes.NewReader(stored))
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/cms" {
		t.Fatalf("sealed verify: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if m := opensslContent("verify-sealed.der", sealed); m["indication"] != "TOTAL_PASSED" || m["contentSha256"] != id {
		t.Fatalf("sealed report %v", m)
	}
	// A tampered seal does not verify.
	bad := bytes.Clone(sealed)
	bad[len(bad)-10] ^= 1
	os.WriteFile(filepath.Join(dir, "bad.der"), bad, 0o600)
	if exec.Command("openssl", "cms", "-verify", "-inform", "DER", "-in", filepath.Join(dir, "bad.der"), "-CAfile", root, "-purpose", "any").Run() == nil {
		t.Fatal("a tampered sealed report verified")
	}
	var p struct {
		Signature    []byte `json:"signature"`
		SealedReport []byte `json:"sealedReport"`
		Indication   string `json:"indication"`
	}
	e.getJSON(t, e.insurerC, "/v1/prescriptions/"+id, http.StatusOK, &p)
	if m := opensslContent("ingest-sealed.der", p.SealedReport); m["indication"] != "TOTAL_PASSED" || m["level"] != "B-T" && m["level"] != "B-LT" {
		t.Fatalf("ingestion report %v", m)
	}
	if !bytes.Equal(p.Signature, stored) || p.Indication != "TOTAL_PASSED" {
		t.Fatal("stored prescription differs")
	}
	// Refusals: an RA officer may neither verify nor read prescriptions; an auditor may verify but not read them.
	staff := func(role string) *http.Client {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		cert, err := issueFor(context.Background(), e.n.ca, key, ca.Request{Profile: ca.ProfileOperator, CommonName: role, Role: role})
		if err != nil {
			t.Fatal(err)
		}
		tr := e.insurerC.Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}
		return &http.Client{Transport: tr}
	}
	ra, aud := staff("ra-officer"), staff("auditor")
	for _, c := range []struct {
		name string
		cl   *http.Client
		want int
	}{{"ra-officer", ra, 403}, {"auditor", aud, 200}} {
		resp, err := c.cl.Post(e.url+"/v1/verify/sealed", "application/cms", bytes.NewReader(stored))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s sealed verify: %d, want %d", c.name, resp.StatusCode, c.want)
		}
		e.getJSON(t, c.cl, "/v1/prescriptions/"+id, http.StatusForbidden, nil)
	}
}
