package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"crypto/x509"

	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// TestOfflineQREndToEnd: a physician signs with `mohr sign --qr-out` (one file key for CAdES and COSE); a
// pharmacy fetches the trust bundle from the public listener with the pinned seal key and checks the QR image
// offline: passes. After the certificate is revoked, a newly fetched bundle makes the same QR fail, while the
// old bundle still passes (the limit docs/offline.md states). A bundle checked against another key is refused.
func TestOfflineQREndToEnd(t *testing.T) {
	dd, dir := t.TempDir(), t.TempDir()
	apiPort, pubPort := freePort(t), freePort(t)
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte(fmt.Sprintf("listen: 127.0.0.1:%d\npublic_listen: 127.0.0.1:%d\n", apiPort, pubPort)), 0o600)
	mustMohr(t, dd, "ca", "init", "--dev")
	phy := filepath.Join(dir, "phy.csv")
	os.WriteFile(phy, []byte("national_code,council_no,name,specialty,status,valid_from,valid_until\n"+
		"0499370899,123456,Dr Sara Ahmadi,General Practice,active,2020-01-01,2030-12-31\n"), 0o644)
	mustMohr(t, dd, "physician", "import", phy)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyFile := filepath.Join(dir, "doc.key")
	if err := keys.WritePEMKey(keyFile, key); err != nil {
		t.Fatal(err)
	}
	csr := writeCSR(t, dir, "doc", key)
	leafPEM := mustMohr(t, dd, "cert", "issue", "--profile", "physician-signing", "--csr", csr,
		"--name", "Dr Sara Ahmadi", "--national-code", "0499370899", "--council-no", "123456")
	leaf := filepath.Join(dir, "doc.pem")
	os.WriteFile(leaf, []byte(leafPEM), 0o644)
	blk, _ := pem.Decode([]byte(leafPEM))
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}

	g := rxgen.New(3)
	rx, err := g.Prescription(rxgen.Physician{NationalCode: "0499370899", CouncilNumber: "123456", Given: "Sara", Family: "Ahmadi"})
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "rx.json")
	os.WriteFile(in, rx, 0o644)
	png, txt := filepath.Join(dir, "rx.png"), filepath.Join(dir, "rx.txt")
	mustMohr(t, dd, "sign", "--key", keys.FileURI(keyFile), "--cert", leaf, "--chain", filepath.Join(dd, "ca", "intermediate.pem"),
		"--in", in, "--out", filepath.Join(dir, "rx.p7s"), "--qr-out", png, "--qr-text", txt)

	seal := filepath.Join(dd, "services", "trust-bundle-seal.pub")
	fetch := func(out string, also func()) {
		srv := startServe(t, dd, apiPort)
		defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
		mustMohr(t, dd, "trust-bundle", "fetch", "--url", fmt.Sprintf("http://127.0.0.1:%d/trust-bundle", pubPort), "--seal-key", seal, "--out", out)
		if also != nil {
			also()
		}
	}
	bundle1 := filepath.Join(dir, "bundle1.cose")
	// The verification page of both listeners checks the QR image offline against the node's own bundle.
	fetch(bundle1, func() {
		img, _ := os.ReadFile(png)
		for _, url := range []string{fmt.Sprintf("http://127.0.0.1:%d/verify", pubPort), fmt.Sprintf("https://127.0.0.1:%d/verify", apiPort)} {
			code, page := postPage(t, url, "file", "rx.png", img)
			if code != 200 || !strings.Contains(page, "<code>TOTAL_PASSED</code>") || !strings.Contains(page, "Offline check") {
				t.Errorf("POST %s: %d\n%s", url, code, page)
			}
		}
	})
	if out := mustMohr(t, dd, "trust-bundle", "show", "--seal-key", seal, bundle1); !strings.Contains(out, "0 revoked") {
		t.Fatalf("trust-bundle show: %s", out)
	}
	out := mustMohr(t, dd, "qr", "verify", "--bundle", bundle1, "--seal-key", seal, png)
	if !strings.Contains(out, "TOTAL_PASSED") || !strings.Contains(out, "offline") || !strings.Contains(out, "123456") {
		t.Fatalf("qr verify of the PNG: %s", out)
	}
	if out := mustMohr(t, dd, "qr", "verify", "--bundle", bundle1, "--seal-key", seal, "--format", "json", txt); !strings.Contains(out, `"indication": "TOTAL_PASSED"`) {
		t.Fatalf("qr verify of the text: %s", out)
	}

	// A bundle checked against a key that is not the pinned seal: refused.
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	spki, _ := x509.MarshalPKIXPublicKey(otherKey.Public())
	other := filepath.Join(dir, "other.pub")
	os.WriteFile(other, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o644)
	if _, e, code := mohr(t, dd, "qr", "verify", "--bundle", bundle1, "--seal-key", other, png); code == 0 || !strings.Contains(e, "not signed by the pinned seal key") {
		t.Fatalf("bundle accepted with another seal key: exit %d: %s", code, e)
	}

	// Revoke the physician's certificate; the next bundle carries it and the QR fails.
	mustMohr(t, dd, "cert", "revoke", fmt.Sprintf("%x", cert.SerialNumber), "--reason", "keyCompromise")
	bundle2 := filepath.Join(dir, "bundle2.cose")
	fetch(bundle2, nil)
	out, _, code := mohr(t, dd, "qr", "verify", "--bundle", bundle2, "--seal-key", seal, png)
	if code == 0 || !strings.Contains(out, "REVOKED_NO_POE") {
		t.Fatalf("revoked physician passed: exit %d: %s", code, out)
	}
	if out := mustMohr(t, dd, "qr", "verify", "--bundle", bundle1, "--seal-key", seal, png); !strings.Contains(out, "TOTAL_PASSED") {
		t.Fatalf("old bundle: %s", out)
	}
}

// postPage posts one file as field to the verification page at url (plain HTTP or TLS without a client
// certificate) in English and returns the status and the page.
func postPage(t *testing.T, url, field, name string, data []byte) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("lang", "en")
	fw, _ := mw.CreateFormFile(field, name)
	fw.Write(data)
	mw.Close()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Post(url, mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
