package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing/offline"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// TestOfflineQRAt walks `mohr qr verify --at` and `mohr trust-bundle show --at` across the days with a real
// bundle from the public listener: the time is an input, not the wall clock. A QR signed under a long-lived
// certificate passes up to the bundle's next update and is refused from then on with the bundle's dates and
// age; a QR signed under a certificate that ends in three days passes before its NotAfter and fails with
// OUT_OF_BOUNDS_NO_POE after it, while the bundle is still good; a time before the bundle's issue is refused.
func TestOfflineQRAt(t *testing.T) {
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
	rx, err := rxgen.New(5).Prescription(rxgen.Physician{NationalCode: "0499370899", CouncilNumber: "123456", Given: "Sara", Family: "Ahmadi"})
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "rx.json")
	os.WriteFile(in, rx, 0o644)
	// signQR issues a physician-signing certificate (extra flags: e.g. --valid-until) and signs the
	// prescription with it; it returns the QR text file and the certificate.
	signQR := func(name string, extra ...string) (string, *x509.Certificate) {
		args := append([]string{"cert", "issue", "--profile", "physician-signing", "--csr", csr,
			"--name", "Dr Sara Ahmadi", "--national-code", "0499370899", "--council-no", "123456"}, extra...)
		leafPEM := mustMohr(t, dd, args...)
		leaf := filepath.Join(dir, name+".pem")
		os.WriteFile(leaf, []byte(leafPEM), 0o644)
		blk, _ := pem.Decode([]byte(leafPEM))
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		txt := filepath.Join(dir, name+".txt")
		mustMohr(t, dd, "sign", "--key", keys.FileURI(keyFile), "--cert", leaf, "--chain", filepath.Join(dd, "ca", "intermediate.pem"),
			"--in", in, "--out", filepath.Join(dir, name+".p7s"), "--qr-text", txt)
		return txt, cert
	}
	long, longCert := signQR("long")
	short, shortCert := signQR("short", "--valid-until", time.Now().Add(72*time.Hour).UTC().Format(time.RFC3339))
	if !shortCert.NotAfter.Before(longCert.NotAfter) {
		t.Fatalf("short certificate ends %s, long %s", shortCert.NotAfter, longCert.NotAfter)
	}

	seal := filepath.Join(dd, "services", "trust-bundle-seal.pub")
	bundle := filepath.Join(dir, "bundle.cose")
	func() {
		srv := startServe(t, dd, apiPort)
		defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
		mustMohr(t, dd, "trust-bundle", "fetch", "--url", fmt.Sprintf("http://127.0.0.1:%d/trust-bundle", pubPort), "--seal-key", seal, "--out", bundle)
	}()
	signed, _ := os.ReadFile(bundle)
	pub, err := readSealKey(seal)
	if err != nil {
		t.Fatal(err)
	}
	b, err := offline.InspectBundle(signed, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !shortCert.NotAfter.Before(b.NextUpdate) || !longCert.NotAfter.After(b.NextUpdate) {
		t.Fatalf("fixture: short certificate ends %s, long %s, bundle next update %s", shortCert.NotAfter, longCert.NotAfter, b.NextUpdate)
	}
	at := func(tm time.Time) string { return tm.UTC().Format(time.RFC3339) }
	verify := func(text string, tm time.Time) (string, string, int) {
		return mohr(t, dd, "qr", "verify", "--bundle", bundle, "--seal-key", seal, "--at", at(tm), text)
	}

	cases := []struct {
		name     string
		qr       string
		at       time.Time
		code     int
		contains []string // in stdout (exit 0 or 2) or stderr (refusal)
	}{
		{"long, a day after issue", long, b.Issued.Add(25 * time.Hour), 0, []string{"TOTAL_PASSED", "1d1h old"}},
		{"long, a minute before next update", long, b.NextUpdate.Add(-time.Minute), 0, []string{"TOTAL_PASSED", "6d23h old"}},
		{"long, at next update", long, b.NextUpdate, 1, []string{"trust bundle expired at " + at(b.NextUpdate), "7d0h ago", "fetch a new one"}},
		{"long, ten days on", long, b.Issued.Add(240 * time.Hour), 1, []string{"trust bundle expired at " + at(b.NextUpdate), "10d0h ago"}},
		{"long, an hour before issue", long, b.Issued.Add(-time.Hour), 1, []string{"trust bundle not yet valid"}},
		{"short, a minute before NotAfter", short, shortCert.NotAfter.Add(-time.Minute), 0, []string{"TOTAL_PASSED"}},
		{"short, a minute after NotAfter", short, shortCert.NotAfter.Add(time.Minute), 2, []string{"INDETERMINATE", "OUT_OF_BOUNDS_NO_POE", "not valid at " + at(shortCert.NotAfter.Add(time.Minute))}},
		{"long, a minute after short's NotAfter", long, shortCert.NotAfter.Add(time.Minute), 0, []string{"TOTAL_PASSED"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := verify(c.qr, c.at)
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, c.code, out, errOut)
			}
			for _, s := range c.contains {
				if !strings.Contains(out+errOut, s) {
					t.Errorf("%q missing from\n%s%s", s, out, errOut)
				}
			}
		})
	}

	// trust-bundle show: the age at --at; past the next update it still describes the bundle, then refuses.
	if out := mustMohr(t, dd, "trust-bundle", "show", "--seal-key", seal, "--at", at(b.Issued.Add(90*time.Minute)), bundle); !strings.Contains(out, "1h30m0s old") {
		t.Fatalf("trust-bundle show --at: %s", out)
	}
	out, errOut, code := mohr(t, dd, "trust-bundle", "show", "--seal-key", seal, "--at", at(b.NextUpdate.Add(24*time.Hour)), bundle)
	if code == 0 || !strings.Contains(out, "192h0m0s old") || !strings.Contains(errOut, "trust bundle expired at "+at(b.NextUpdate)) || !strings.Contains(errOut, "8d0h ago") {
		t.Fatalf("expired bundle shown without refusal: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := mohr(t, dd, "qr", "verify", "--bundle", bundle, "--seal-key", seal, "--at", "yesterday", long); code == 0 || !strings.Contains(errOut, "not an RFC 3339 time") {
		t.Fatalf("--at yesterday: exit %d %s", code, errOut)
	}
}
