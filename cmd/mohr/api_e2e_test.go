package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// operatorClient issues an operator certificate with the CLI and returns an mTLS client holding it.
func operatorClient(t *testing.T, dd, name, role string) *http.Client {
	t.Helper()
	dir := t.TempDir()
	key := newP256(t)
	out := mustMohr(t, dd, "cert", "issue", "--profile", "operator", "--csr", writeCSR(t, dir, name, key), "--name", name, "--role", role)
	blk, _ := pem.Decode([]byte(out))
	c := apiClient(t, dd)
	c.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{blk.Bytes}, PrivateKey: key.(*ecdsa.PrivateKey)}}
	return c
}

func call(t *testing.T, c *http.Client, method, url string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestServeEndToEnd runs the real server and checks, over real mTLS: operator certificates from the
// intermediate get the operator role and an auditor's does not; dual control for re-keying and revoking the
// intermediate (two different operators, the same one twice refused); revocation seen by openssl ocsp against
// the running responder and by openssl crl/verify against the served CRL shard.
func TestServeEndToEnd(t *testing.T) {
	dd := t.TempDir()
	apiPort, pubPort := freePort(t), freePort(t)
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte(fmt.Sprintf("listen: 127.0.0.1:%d\npublic_listen: 127.0.0.1:%d\n", apiPort, pubPort)), 0o600)
	mustMohr(t, dd, "ca", "init", "--dev")
	op1 := operatorClient(t, dd, "Operator One", "operator")
	op2 := operatorClient(t, dd, "Operator Two", "operator")
	aud := operatorClient(t, dd, "Auditor", "auditor")
	srv := startServe(t, dd, apiPort)
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	base := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	pub := fmt.Sprintf("http://127.0.0.1:%d", pubPort)

	if code, m := call(t, op1, "GET", base+"/v1/whoami", nil); code != 200 || m["role"] != "operator" {
		t.Fatalf("whoami op1: %d %v", code, m)
	}
	// The server certificate names localhost as well as the listen address (README's curl lines).
	if code, m := call(t, op1, "GET", fmt.Sprintf("https://localhost:%d/v1/whoami", apiPort), nil); code != 200 || m["role"] != "operator" {
		t.Fatalf("whoami at localhost: %d %v", code, m)
	}
	// No credential, and an auditor, cannot issue.
	csr, _ := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{}, newP256(t))
	issue := map[string]any{"profile": "organisation-auth", "csr": csr, "subject": map[string]any{"commonName": "Razi Pharmacy", "role": "pharmacy"}}

	// Service certificates are not RA business: an RA officer is refused a TSA certificate; an operator gets a
	// pending approval that a second operator executes; the certificate then exists once.
	ra := operatorClient(t, dd, "RA Officer", "ra-officer")
	tsaCSR, _ := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{}, newP256(t))
	tsaReq := map[string]any{"profile": "tsa", "csr": tsaCSR, "subject": map[string]any{"commonName": "Rogue TSA"}}
	if code, m := call(t, ra, "POST", base+"/v1/certificates", tsaReq); code != 403 {
		t.Fatalf("RA officer issued a TSA certificate: %d %v", code, m)
	}
	code, m := call(t, op1, "POST", base+"/v1/certificates", tsaReq)
	if code != 202 {
		t.Fatalf("operator TSA request: %d %v", code, m)
	}
	code, m = call(t, op2, "POST", base+"/v1/approvals/"+m["id"].(string)+"/approve", nil)
	if code != 200 {
		t.Fatalf("approve TSA issuance: %d %v", code, m)
	}
	// A signing certificate never logs in, whatever role policy it carries: the seal CLI refuses a staff role,
	// and a physician's non-repudiation certificate is refused at login.
	if _, e, code := mohr(t, dd, "cert", "issue", "--profile", "organisation-seal", "--csr", writeCSR(t, t.TempDir(), "seal", newP256(t)),
		"--name", "Seal", "--role", "operator"); code == 0 {
		t.Fatalf("organisation-seal with role operator issued: %s", e)
	}
	if code, _ := call(t, apiClient(t, dd), "POST", base+"/v1/certificates", issue); code != 401 {
		t.Fatalf("issue without credential: %d", code)
	}
	if code, _ := call(t, aud, "POST", base+"/v1/certificates", issue); code != 403 {
		t.Fatalf("issue as auditor: %d", code)
	}
	code, cert := call(t, op1, "POST", base+"/v1/certificates", issue)
	if code != 201 {
		t.Fatalf("issue as operator: %d %v", code, cert)
	}
	serial := cert["serial"].(string)
	// A CSR whose self-signature does not verify is refused, issued at once (the CA checks it) and under dual
	// control (checked before the approval is stored), and no serial is reserved for it.
	for _, profile := range []string{"organisation-auth", "tsa"} {
		bad, _ := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{}, newP256(t))
		bad[len(bad)-3] ^= 0x01 // inside the signature's last INTEGER
		req := map[string]any{"profile": profile, "csr": bad, "subject": map[string]any{"commonName": "Forged Pharmacy", "role": "pharmacy"}}
		if code, m := call(t, op1, "POST", base+"/v1/certificates", req); code != 422 || !strings.Contains(fmt.Sprint(m), "signature") {
			t.Fatalf("%s with a forged CSR signature: %d %v", profile, code, m)
		}
	}

	// Revoke it through the API, then ask the running responder with openssl, and check the served CRL.
	if code, m := call(t, op1, "POST", base+"/v1/certificates/"+serial+"/revoke", map[string]any{"reason": 1}); code != 200 {
		t.Fatalf("revoke: %d %v", code, m)
	}
	dir := t.TempDir()
	der, _ := jsonBytes(cert["certificate"])
	leaf := filepath.Join(dir, "leaf.pem")
	os.WriteFile(leaf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	root, inter := filepath.Join(dd, "ca", "root.pem"), filepath.Join(dd, "ca", "intermediate.pem")
	out, err := exec.Command("openssl", "ocsp", "-issuer", inter, "-sha256", "-cert", leaf, "-url", pub+"/ocsp", "-CAfile", root).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "revoked") || !strings.Contains(string(out), "keyCompromise") {
		t.Fatalf("openssl ocsp: %v\n%s", err, out)
	}
	var shard int
	fmt.Sscan(fmt.Sprint(cert["shard"]), &shard)
	var crlDER []byte
	for i := 0; i < 50; i++ { // the shard is re-signed right after the revocation
		resp, err := http.Get(fmt.Sprintf("%s/crl/%d.crl", pub, shard))
		if err == nil {
			crlDER, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if l, err := x509.ParseRevocationList(crlDER); err == nil && len(l.RevokedCertificateEntries) > 0 {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	crl := filepath.Join(dir, "shard.crl")
	os.WriteFile(crl, crlDER, 0o644)
	if out, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", crl, "-CAfile", inter, "-noout", "-verify").CombinedOutput(); err != nil {
		t.Fatalf("openssl crl -verify: %v\n%s", err, out)
	}
	crlPEM := filepath.Join(dir, "shard.pem")
	exec.Command("openssl", "crl", "-inform", "DER", "-in", crl, "-out", crlPEM).Run()
	if out, err := exec.Command("openssl", "verify", "-crl_check", "-CAfile", root, "-untrusted", inter, "-CRLfile", crlPEM, leaf).CombinedOutput(); err == nil || !strings.Contains(string(out), "revoked") {
		t.Fatalf("openssl verify -crl_check accepted a revoked certificate: %s", out)
	}

	// Dual control: re-key the intermediate.
	code, m = call(t, op1, "POST", base+"/v1/ca/intermediate/rekey", map[string]any{})
	if code != 202 {
		t.Fatalf("rekey request: %d %v", code, m)
	}
	id := m["id"].(string)
	if code, _ := call(t, op1, "POST", base+"/v1/approvals/"+id+"/approve", nil); code < 400 {
		t.Fatalf("the requesting operator approved its own request: %d", code)
	}
	code, m = call(t, op2, "POST", base+"/v1/approvals/"+id+"/approve", nil)
	if code != 200 {
		t.Fatalf("second operator's approval: %d %v", code, m)
	}
	if _, err := os.Stat(filepath.Join(dd, "ca", "next-key-uri")); err != nil {
		t.Fatalf("no next key after re-key: %v", err)
	}

	// Dual control: revoke the intermediate; issuance stops.
	code, m = call(t, op1, "POST", base+"/v1/ca/intermediate/revoke", map[string]any{"reason": 4})
	if code != 202 {
		t.Fatalf("revoke intermediate request: %d %v", code, m)
	}
	if code, m := call(t, op2, "POST", base+"/v1/approvals/"+m["id"].(string)+"/approve", nil); code != 200 {
		t.Fatalf("approve revoke: %d %v", code, m)
	}
	if code, _ := call(t, op1, "POST", base+"/v1/certificates", issue); code < 400 {
		t.Fatalf("issuance went on after the intermediate was revoked: %d", code)
	}
	srv.Process.Signal(syscall.SIGTERM)
	srv.Wait()
	mustMohr(t, dd, "audit", "verify")
	log := mustMohr(t, dd, "cert", "list", "--json")
	_ = log
}

// jsonBytes decodes a base64 []byte field of a JSON object.
func jsonBytes(v any) ([]byte, error) {
	var b []byte
	raw, _ := json.Marshal(v)
	return b, json.Unmarshal(raw, &b)
}
