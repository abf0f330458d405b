package signing

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestSignAndVerifyLevels(t *testing.T) {
	f := newFixture(t)
	bb := f.signBB(t, f.doc, f.physician)
	f.pki.Clock.Advance(time.Minute)
	bt := f.toBT(t, bb)
	f.pki.Clock.Advance(time.Minute)
	blt := f.toBLT(t, bt, f.doc)
	f.pki.Clock.Advance(time.Hour * 24 * 30)
	tests := []struct {
		name  string
		der   []byte
		level string
		now   time.Time
	}{
		{"B-B", bb, "B-B", t0.Add(3 * time.Minute)},
		{"B-T", bt, "B-T", t0.Add(3 * time.Minute)},
		{"B-LT", blt, "B-LT", t0.Add(3 * time.Minute)},
		{"B-LT years later, signer expired", blt, "B-LT", t0.AddDate(3, 0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := f.verifier(t, func(c *VerifierConfig) {
				c.Now = func() time.Time { return tc.now }
				if tc.level == "B-LT" {
					c.Revocation = nil // must use what is embedded
				}
			})
			r := v.Verify(context.Background(), tc.der)
			if !r.Passed() || r.Level != tc.level {
				t.Fatalf("got %s", r.Summary())
			}
			if r.Prescriber == nil || r.Prescriber.CouncilNumber != f.physician.CouncilNumber {
				t.Errorf("prescriber = %+v", r.Prescriber)
			}
		})
	}
}

// TestOpenSSLAcceptsEveryLevel is the outside check: OpenSSL's CMS verifier accepts B-B, B-T and B-LT.
func TestOpenSSLAcceptsEveryLevel(t *testing.T) {
	openssl := needTool(t, "openssl")
	f := newFixture(t)
	dir := t.TempDir()
	root, err := f.pki.WritePEM(dir)
	if err != nil {
		t.Fatal(err)
	}
	bb := f.signBB(t, f.doc, f.physician)
	bt := f.toBT(t, bb)
	blt := f.toBLT(t, bt, f.doc)
	for name, der := range map[string][]byte{"B-B": bb, "B-T": bt, "B-LT": blt} {
		t.Run(name, func(t *testing.T) {
			in := writeFile(t, dir, name+".p7s", der)
			// -attime: OpenSSL checks the chain at the test's pinned time, not the wall clock.
			cmd := exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", in, "-CAfile", root,
				"-purpose", "any", "-attime", "1772359200", "-out", "/dev/null")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Verification successful") {
				t.Fatalf("openssl cms -verify: %v\n%s", err, out)
			}
		})
	}
}
