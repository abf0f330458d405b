package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/testenv"
)

// mohrBin is the binary under test, built once by TestMain: these tests run the CLI as an operator would.
var mohrBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mohr-cli-test")
	if err != nil {
		panic(err)
	}
	mohrBin = filepath.Join(dir, "mohr")
	out, err := exec.Command("go", "build", "-o", mohrBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build mohr: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mohr runs the binary with data dir dd and returns stdout, stderr and the exit code.
func mohr(t *testing.T, dd string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(mohrBin, append([]string{"--data-dir", dd}, args...)...)
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

func mustMohr(t *testing.T, dd string, args ...string) string {
	t.Helper()
	out, errOut, code := mohr(t, dd, args...)
	if code != 0 {
		t.Fatalf("mohr %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func writeCSR(t *testing.T, dir, name string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".csr")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newP256(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// state is what a refused command must leave unchanged: the certificates and the audit log.
func state(t *testing.T, dd string) (int, string) {
	t.Helper()
	var certs []json.RawMessage
	if err := json.Unmarshal([]byte(mustMohr(t, dd, "cert", "list", "--json")), &certs); err != nil {
		t.Fatal(err)
	}
	v := mustMohr(t, dd, "audit", "verify")
	return len(certs), v
}

func TestCLIIssueAndRefuse(t *testing.T) {
	dd := t.TempDir()
	dir := t.TempDir()
	mustMohr(t, dd, "ca", "init", "--dev")
	// The audit log verifies right after the CA's setup, before any mohr serve (issue 13 item 7).
	if out := mustMohr(t, dd, "audit", "verify"); !strings.Contains(out, "audit log intact") {
		t.Fatalf("audit verify after ca init: %s", out)
	}
	chain := mustMohr(t, dd, "ca", "chain")
	if strings.Count(chain, "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("ca chain: %q", chain)
	}
	// A second init refuses to overwrite.
	if _, e, code := mohr(t, dd, "ca", "init", "--dev"); code == 0 || !strings.Contains(e, "already exists") {
		t.Fatalf("second init: exit %d: %s", code, e)
	}

	// Registries: a facility and a physician in good standing.
	fac := filepath.Join(dir, "fac.csv")
	os.WriteFile(fac, []byte("siam_id,name,licence_number,licence_status,licence_from,licence_until,system_id,system_status,system_from,system_until\n"+
		"SIAM-10001,Imam Hospital,LIC/1402/77,active,2024-01-01,2027-06-30,SYS-42,active,2024-01-01,2027-03-20\n"), 0o644)
	if out, e, code := mohr(t, dd, "facility", "import", fac); code != 0 {
		t.Fatalf("facility import: %s %s", out, e)
	}
	phy := filepath.Join(dir, "phy.csv")
	os.WriteFile(phy, []byte("national_code,council_no,name,specialty,status,valid_from,valid_until\n"+
		"0499370899,123456,Dr Sara Ahmadi,General Practice,active,2020-01-01,2027-12-31\n"), 0o644)
	if out, e, code := mohr(t, dd, "physician", "import", phy); code != 0 {
		t.Fatalf("physician import: %s %s", out, e)
	}

	issue := map[string][]string{
		"facility-adapter":  {"--siam-id", "SIAM-10001", "--licence", "LIC/1402/77", "--system-cert", "SYS-42"},
		"physician-signing": {"--name", "Dr Sara Ahmadi", "--national-code", "0499370899", "--council-no", "123456"},
		"physician-auth":    {"--name", "Dr Sara Ahmadi", "--national-code", "۰۴۹۹۳۷۰۸۹۹", "--council-no", "123456"},
		"organisation-seal": {"--name", "Razi Pharmacy", "--role", "pharmacy"},
		"tsa":               {"--name", "Test TSA"},
		"ocsp-responder":    {"--name", "Test OCSP"},
		"tls-server":        {"--dns", "hix.example", "--ip", "127.0.0.1"},
		"operator":          {"--name", "Operator One", "--role", "operator"},
		"organisation-auth": {"--name", "Salamat Insurance", "--role", "insurer"},
	}
	root := filepath.Join(dd, "ca", "root.pem")
	inter := filepath.Join(dd, "ca", "intermediate.pem")
	for profile, args := range issue {
		csr := writeCSR(t, dir, profile, newP256(t))
		out := mustMohr(t, dd, append([]string{"cert", "issue", "--profile", profile, "--csr", csr}, args...)...)
		leaf := filepath.Join(dir, profile+".pem")
		os.WriteFile(leaf, []byte(out), 0o644)
		if o, err := exec.Command("openssl", "verify", "-CAfile", root, "-untrusted", inter, leaf).CombinedOutput(); err != nil {
			t.Errorf("%s: openssl verify: %v\n%s", profile, err, o)
		}
		blk, _ := pem.Decode([]byte(out))
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if profile == "facility-adapter" && cert.NotAfter.Format("2006-01-02") != "2027-03-20" {
			t.Errorf("facility certificate ends %v, want the system certificate's end 2027-03-20", cert.NotAfter)
		}
	}
	n0, v0 := state(t, dd)
	if n0 != len(issue) {
		t.Fatalf("%d certificates listed, want %d", n0, len(issue))
	}

	// Refusals: each exits non-zero with a message and changes nothing.
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	garbage := filepath.Join(dir, "garbage.csr")
	os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), 0o644)
	good := writeCSR(t, dir, "good", newP256(t))
	tampered := filepath.Join(dir, "tampered.csr")
	b, _ := os.ReadFile(good)
	blk, _ := pem.Decode(b)
	blk.Bytes[len(blk.Bytes)-3] ^= 0x55
	os.WriteFile(tampered, pem.EncodeToMemory(blk), 0o644)
	refusals := []struct {
		name string
		args []string
		want string
	}{
		{"bad national code", []string{"--profile", "physician-signing", "--csr", good, "--name", "Dr X", "--national-code", "0499370898", "--council-no", "123456"}, "checksum"},
		{"unregistered physician", []string{"--profile", "physician-signing", "--csr", good, "--name", "Dr X", "--national-code", "0012345679", "--council-no", "999"}, "not eligible"},
		{"unknown facility", []string{"--profile", "facility-adapter", "--csr", good, "--siam-id", "SIAM-99999", "--licence", "L1"}, "not eligible"},
		{"wrong licence", []string{"--profile", "facility-adapter", "--csr", good, "--siam-id", "SIAM-10001", "--licence", "L1"}, "licence"},
		{"malformed CSR", []string{"--profile", "tsa", "--csr", garbage, "--name", "x"}, "malformed"},
		{"bad signature", []string{"--profile", "tsa", "--csr", tampered, "--name", "x"}, "signature"},
		{"weak key", []string{"--profile", "tsa", "--csr", writeCSR(t, dir, "weak", rsa1024), "--name", "x"}, "weak"},
		{"unknown profile", []string{"--profile", "root-ca", "--csr", good, "--name", "x"}, "unknown profile"},
		{"missing CSR file", []string{"--profile", "tsa", "--csr", filepath.Join(dir, "nope.csr"), "--name", "x"}, "no such file"},
		// Role/profile pairs the help does not list (issue 13 item 2).
		{"seal with a staff role", []string{"--profile", "organisation-seal", "--csr", good, "--name", "Seal", "--role", "operator"}, "role"},
		{"operator credential as pharmacy", []string{"--profile", "operator", "--csr", good, "--name", "Op", "--role", "pharmacy"}, "role"},
		{"organisation-auth as auditor", []string{"--profile", "organisation-auth", "--csr", good, "--name", "Org", "--role", "auditor"}, "role"},
		{"role on a tsa", []string{"--profile", "tsa", "--csr", good, "--name", "TSA", "--role", "operator"}, "role"},
		// The physician's signing key may not become their authentication key.
		{"signing key as auth key", []string{"--profile", "physician-auth", "--csr", filepath.Join(dir, "physician-signing.csr"),
			"--name", "Dr Sara Ahmadi", "--national-code", "0499370899", "--council-no", "123456"}, "another purpose"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			_, e, code := mohr(t, dd, append([]string{"cert", "issue"}, r.args...)...)
			if code == 0 || !strings.Contains(strings.ToLower(e), r.want) {
				t.Fatalf("exit %d, stderr %q; want non-zero and %q", code, e, r.want)
			}
			if n, v := state(t, dd); n != n0 || v != v0 {
				t.Fatalf("state changed: %d certificates (was %d); audit %q (was %q)", n, n0, v, v0)
			}
		})
	}

	// Revocation from the CLI, idempotent, and visible in cert show.
	var list []struct{ Serial, Profile string }
	json.Unmarshal([]byte(mustMohr(t, dd, "cert", "list", "--json", "--profile", "tsa")), &list)
	if len(list) != 1 {
		t.Fatalf("tsa list: %+v", list)
	}
	s := list[0].Serial
	mustMohr(t, dd, "cert", "revoke", s, "--reason", "keyCompromise")
	out := mustMohr(t, dd, "cert", "revoke", s, "--reason", "keyCompromise")
	if !strings.Contains(out, `"changed": false`) {
		t.Fatalf("second revoke should change nothing: %s", out)
	}
	if out := mustMohr(t, dd, "cert", "show", s); !strings.Contains(out, `"status": "revoked"`) {
		t.Fatalf("show: %s", out)
	}
	if _, e, code := mohr(t, dd, "cert", "revoke", s, "--reason", "removeFromCRL"); code == 0 {
		t.Fatalf("removeFromCRL accepted: %s", e)
	}
	mustMohr(t, dd, "audit", "checkpoint")
	mustMohr(t, dd, "audit", "verify")
}

func TestConfigStrict(t *testing.T) {
	dd := t.TempDir()
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte("listen: 127.0.0.1:9443\nlisten_typo: x\n"), 0o644)
	if _, e, code := mohr(t, dd, "ca", "chain"); code == 0 || !strings.Contains(e, "listen_typo") {
		t.Fatalf("unknown key accepted: exit %d %s", code, e)
	}
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte("database:\n  driver: oracle\n"), 0o644)
	if _, e, code := mohr(t, dd, "ca", "chain"); code == 0 || !strings.Contains(e, "driver") {
		t.Fatalf("bad driver accepted: exit %d %s", code, e)
	}
}

// TestCAInitCSRAndImport plays the production hierarchy: the intermediate key and its CSR come from Mohr, the
// "national root" (here an outside key) signs it, and mohr ca import takes it back only if the key matches.
func TestCAInitCSRAndImport(t *testing.T) {
	dd := t.TempDir()
	dir := t.TempDir()
	csrPath := filepath.Join(dir, "intermediate.csr")
	mustMohr(t, dd, "ca", "init", "--csr-out", csrPath, "--subject", "CN=Health Intermediate CA,O=Ministry of Health,C=IR")
	b, _ := os.ReadFile(csrPath)
	blk, _ := pem.Decode(b)
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("CSR: %v", err)
	}
	// The national root, outside Mohr.
	rk := newP256(t)
	root, _ := ca.NewRoot(rk, pkix.Name{CommonName: "National Government Root CA (test)", Country: []string{"IR"}}, time.Now(), 24*time.Hour*3650)
	inter, err := ca.SignIntermediate(root, rk, csr.PublicKey, csr.Subject, time.Now(), 24*time.Hour*1000)
	if err != nil {
		t.Fatal(err)
	}
	rootPath, interPath := filepath.Join(dir, "root.pem"), filepath.Join(dir, "inter.pem")
	os.WriteFile(rootPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o644)
	os.WriteFile(interPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.Raw}), 0o644)
	// A certificate for another key is refused.
	other, _ := ca.SignIntermediate(root, rk, newP256(t).Public(), csr.Subject, time.Now(), 24*time.Hour*1000)
	otherPath := filepath.Join(dir, "other.pem")
	os.WriteFile(otherPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Raw}), 0o644)
	if _, e, code := mohr(t, dd, "ca", "import", "--cert", otherPath, "--root", rootPath); code == 0 || !strings.Contains(e, "not the intermediate key") {
		t.Fatalf("import of another key's certificate: exit %d %s", code, e)
	}
	mustMohr(t, dd, "ca", "import", "--cert", interPath, "--root", rootPath)
	out := mustMohr(t, dd, "cert", "issue", "--profile", "tsa", "--csr", writeCSR(t, dir, "tsa", newP256(t)), "--name", "TSA")
	leaf := filepath.Join(dir, "tsa.pem")
	os.WriteFile(leaf, []byte(out), 0o644)
	if o, err := exec.Command("openssl", "verify", "-CAfile", rootPath, "-untrusted", interPath, leaf).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify under the imported intermediate: %v\n%s", err, o)
	}
	crlDir := filepath.Join(dir, "crl")
	mustMohr(t, dd, "crl", "generate", "--out", crlDir)
	if o, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", filepath.Join(crlDir, "0.crl"), "-CAfile", interPath, "-noout", "-verify").CombinedOutput(); err != nil {
		t.Fatalf("openssl crl -verify: %v\n%s", err, o)
	}
}

// TestPostgresConfig runs the CLI on PostgreSQL selected by the configuration file.
func TestPostgresConfig(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	db := "mohr_cli_" + fmt.Sprint(time.Now().UnixNano())
	if out, err := exec.Command("psql", dsn, "-c", "CREATE DATABASE "+db).CombinedOutput(); err != nil {
		t.Fatalf("create database: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("psql", dsn, "-c", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)").Run() })
	u, _ := url.Parse(dsn)
	u.Path = "/" + db
	dd := t.TempDir()
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte("database:\n  driver: postgres\n  dsn: "+u.String()+"\n"), 0o600)
	mustMohr(t, dd, "ca", "init", "--dev")
	mustMohr(t, dd, "audit", "verify")
	mustMohr(t, dd, "cert", "issue", "--profile", "tsa", "--csr", writeCSR(t, t.TempDir(), "tsa", newP256(t)), "--name", "TSA")
	if out := mustMohr(t, dd, "cert", "list"); !strings.Contains(out, "tsa") {
		t.Fatalf("list: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dd, "mohr.db")); err == nil {
		t.Fatal("a SQLite file was created although PostgreSQL is configured")
	}
	mustMohr(t, dd, "audit", "checkpoint")
	mustMohr(t, dd, "audit", "verify")
}
