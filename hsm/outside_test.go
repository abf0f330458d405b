package hsm

import (
	"context"
	"crypto"
	"crypto/rsa"
	"os/exec"
	"strings"
	"testing"

	"github.com/mohr-hix/mohr/internal/testenv"
)

func pkcs11Tool(t *testing.T, module string, args ...string) string {
	t.Helper()
	testenv.Tool(t, "pkcs11-tool")
	out, err := exec.Command("pkcs11-tool", append([]string{"--module", module}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestOutsideCheck checks Mohr's keys with OpenSC's pkcs11-tool, an independent PKCS#11 client
// running in its own process: keys Mohr generates are listed as sensitive and never extractable, and
// keys pkcs11-tool generates can be used by Mohr.
func TestOutsideCheck(t *testing.T) {
	module, pinFile := softhsm(t)
	o := newTestOpener(t, module, 2)
	ctx := context.Background()
	for _, alg := range []string{AlgECP256, AlgRSA2048} {
		if _, err := o.GenerateKey(ctx, keyURI(tokExt, "mohr-"+alg, pinFile), alg); err != nil {
			t.Fatal(err)
		}
	}
	out := pkcs11Tool(t, module, "--token-label", tokExt, "-O", "--login", "--pin", testenv.SoftHSMPIN)
	for _, alg := range []string{AlgECP256, AlgRSA2048} {
		blk := privateKeyBlock(out, "mohr-"+alg)
		if blk == "" {
			t.Fatalf("pkcs11-tool does not list private key mohr-%s:\n%s", alg, out)
		}
		for _, want := range []string{"sensitive", "always sensitive", "never extractable", "sign"} {
			if !strings.Contains(blk, want) {
				t.Errorf("mohr-%s: pkcs11-tool does not say %q:\n%s", alg, want, blk)
			}
		}
		for _, bad := range []string{"decrypt", "unwrap", "derive"} {
			if strings.Contains(usageLine(blk), bad) {
				t.Errorf("mohr-%s: usage includes %q:\n%s", alg, bad, blk)
			}
		}
	}

	for _, tc := range []struct {
		keyType, label, id string
		opts               []crypto.SignerOpts
	}{
		{"EC:prime256v1", "tool-ec", "a1", []crypto.SignerOpts{crypto.SHA256}},
		{"rsa:2048", "tool-rsa", "a2", []crypto.SignerOpts{crypto.SHA256, &rsa.PSSOptions{Hash: crypto.SHA256}}},
	} {
		t.Run(tc.label, func(t *testing.T) {
			pkcs11Tool(t, module, "--token-label", tokExt, "--login", "--pin", testenv.SoftHSMPIN,
				"--keypairgen", "--key-type", tc.keyType, "--label", tc.label, "--id", tc.id, "--usage-sign")
			s, err := o.OpenSigner(ctx, keyURI(tokExt, tc.label, pinFile))
			if err != nil {
				t.Fatalf("Mohr cannot open the key pkcs11-tool made: %v", err)
			}
			for _, opts := range tc.opts {
				signAndVerify(t, ctx, s, opts)
			}
		})
	}
}

// privateKeyBlock returns the lines pkcs11-tool prints for the private key labelled label.
func privateKeyBlock(out, label string) string {
	blocks := strings.Split(out, "Private Key Object")
	for _, b := range blocks[1:] {
		if i := strings.Index(b, "Object"); i > 0 { // cut at the next object of another class
			b = b[:i]
		}
		if strings.Contains(b, "label:      "+label+"\n") || strings.Contains(b, "label:  "+label) {
			return b
		}
	}
	return ""
}

func usageLine(blk string) string {
	for _, l := range strings.Split(blk, "\n") {
		if strings.Contains(l, "Usage:") {
			return l
		}
	}
	return ""
}
