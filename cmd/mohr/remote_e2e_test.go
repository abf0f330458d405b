package main

import (
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/mohr-hix/mohr/internal/testenv"
)

// TestServeRemoteSigning: `mohr serve` with a remote_signing section serves the CSC API v2 routes (the
// wiring of remotewire.go): info to anyone, credentials/list to a physician, signHash refused to an operator.
func TestServeRemoteSigning(t *testing.T) {
	_, pin := testenv.SoftHSM(t, "MohrCLI")
	dd := t.TempDir()
	pinFile := filepath.Join(dd, "remote.pin")
	os.WriteFile(pinFile, []byte(pin), 0o600)
	apiPort, pubPort := freePort(t), freePort(t)
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\npublic_listen: 127.0.0.1:%d\nremote_signing:\n  key_token: \"pkcs11:token=MohrCLI?pin-source=file:%s\"\n"+
		"  rp_id: localhost\n  rp_origins: [\"https://localhost:%d\"]\n  max_hashes: 25\n", apiPort, pubPort, pinFile, apiPort)
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte(cfg), 0o600)
	mustMohr(t, dd, "ca", "init", "--dev")
	op := operatorClient(t, dd, "Operator One", "operator")
	phy := filepath.Join(t.TempDir(), "phy.csv")
	os.WriteFile(phy, []byte("national_code,council_no,name,specialty,status,valid_from,valid_until\n"+
		"0499370899,123456,Dr Sara Ahmadi,General Practice,active,2020-01-01,2099-12-31\n"), 0o644)
	mustMohr(t, dd, "physician", "import", phy)
	key := newP256(t)
	out := mustMohr(t, dd, "cert", "issue", "--profile", "physician-auth", "--csr", writeCSR(t, t.TempDir(), "dr", key),
		"--name", "Dr Sara Ahmadi", "--national-code", "0499370899", "--council-no", "123456")
	blk, _ := pem.Decode([]byte(out))
	dr := apiClient(t, dd)
	dr.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{blk.Bytes}, PrivateKey: key.(*ecdsa.PrivateKey)}}
	srv := startServe(t, dd, apiPort)
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	base := fmt.Sprintf("https://127.0.0.1:%d/csc/v2", apiPort)

	if code, m := call(t, apiClient(t, dd), "POST", base+"/info", map[string]any{}); code != 200 || m["specs"] != "2.0.0.2" {
		t.Fatalf("info: %d %v", code, m)
	}
	if code, m := call(t, dr, "POST", base+"/credentials/list", map[string]any{}); code != 200 || m["credentialIDs"] == nil {
		t.Fatalf("credentials/list as the physician: %d %v", code, m)
	}
	if code, m := call(t, dr, "POST", base+"/credentials/info", map[string]any{"credentialID": "nope"}); code != 400 ||
		m["error_description"] != "Invalid parameter credentialID" {
		t.Fatalf("credentials/info of an unknown credential: %d %v", code, m)
	}
	if code, m := call(t, op, "POST", base+"/signatures/signHash", map[string]any{"credentialID": "x", "SAD": "y",
		"hashes": []string{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}, "signAlgo": "1.2.840.10045.4.3.2"}); code != 403 {
		t.Fatalf("signHash as an operator: %d %v", code, m)
	}
}
