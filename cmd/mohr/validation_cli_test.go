package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// TestVerifyCorpusCLI: `mohr verify --format json` over the conformance corpus (signing/testdata/corpus) gives
// every file the indication and sub-indication of its manifest (issue 12, "What must show").
func TestVerifyCorpusCLI(t *testing.T) {
	dir := filepath.Join("..", "..", "signing", "testdata", "corpus")
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var entries []struct {
		File, Content, Indication, SubIndication, Tests string
	}
	if err := json.Unmarshal(b, &entries); err != nil {
		t.Fatal(err)
	}
	var files []string
	want := map[string]string{}
	for _, e := range entries {
		if e.Content != "" {
			continue // detached CMS rows need their signed bytes; the PDF path is tested in pdf_cli_test.go
		}
		p := filepath.Join(dir, e.File)
		files = append(files, p)
		want[p] = e.Indication + "/" + e.SubIndication
	}
	dd := t.TempDir()
	// The corpus's validation time: two hours after its making (signing.corpusNow).
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Format(time.RFC3339)
	args := append([]string{"verify", "--no-registry", "--format", "json", "--at", at, "--roots", filepath.Join(dir, "root.pem"),
		"--signer-cas", filepath.Join(dir, "intermediate.pem"), "--tsa-cert", filepath.Join(dir, "tsa.pem"),
		"--prescriber-policy", testpki.OIDPhysicianSigningPolicy.String(), "--workers", "2"}, files...)
	out, errOut, code := mohr(t, dd, args...)
	if code != 2 { // some files fail by design
		t.Fatalf("exit %d: %s", code, errOut)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct{ Name, Indication, SubIndication string }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if got := r.Indication + "/" + r.SubIndication; got != want[r.Name] {
			t.Errorf("%s: got %s, want %s", r.Name, got, want[r.Name])
		}
		seen++
	}
	if seen != len(files) {
		t.Fatalf("%d reports for %d files", seen, len(files))
	}
}

// TestSignRefusesNonPrescriber: `mohr sign` refuses a TSA, seal or facility certificate, with a clear error,
// before it opens the key (the key URI names no file: opening it would be a different error) (issue 12 item 10).
func TestSignRefusesNonPrescriber(t *testing.T) {
	p, err := testpki.New(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := func(n string) string { return filepath.Join(dir, n) }
	p.WritePEM(dir)
	ph := rxgen.New(3).Physician()
	doc, _ := p.Issue(testpki.PhysicianSigning, testpki.LeafOptions{CommonName: "Dr X", NationalCode: ph.NationalCode, CouncilNumber: ph.CouncilNumber})
	testpki.WriteCerts(in("dr.pem"), doc.Cert)
	os.WriteFile(in("rx.json"), []byte(`{}`), 0o644)
	dd := t.TempDir()
	for _, prof := range []testpki.Profile{testpki.TSA, testpki.OrganisationSeal, testpki.FacilityAdapter, testpki.OCSPResponder} {
		l, err := p.Issue(prof, testpki.LeafOptions{CommonName: "not a prescriber", SIAMID: "12345678", Licence: "L-1"})
		if err != nil {
			t.Fatal(err)
		}
		testpki.WriteCerts(in("leaf.pem"), l.Cert)
		_, errOut, code := mohr(t, dd, "sign", "--key", "file:"+in("no-such-key.pem"), "--cert", in("leaf.pem"), "--chain", in("intermediate.pem"),
			"--signer-cas", in("intermediate.pem"), "--in", in("rx.json"), "--out", in("out.p7s"))
		if code == 0 || !strings.Contains(errOut, "refusing to sign") || !strings.Contains(errOut, "prescriber") || strings.Contains(errOut, "open key") {
			t.Fatalf("profile %d: exit %d: %s", prof, code, errOut)
		}
	}
	// An issuer that is not a configured signer CA is refused too.
	_, errOut, code := mohr(t, dd, "sign", "--key", "file:"+in("no-such-key.pem"), "--cert", in("dr.pem"), "--chain", in("intermediate.pem"),
		"--signer-cas", in("root.pem"), "--in", in("rx.json"), "--out", in("out.p7s"))
	if code == 0 || !strings.Contains(errOut, "not a CA allowed") {
		t.Fatalf("foreign signer CA: exit %d: %s", code, errOut)
	}
	// The physician's certificate passes the check and fails only at the (missing) key.
	_, errOut, code = mohr(t, dd, "sign", "--key", "file:"+in("no-such-key.pem"), "--cert", in("dr.pem"), "--chain", in("intermediate.pem"),
		"--signer-cas", in("intermediate.pem"), "--in", in("rx.json"), "--out", in("out.p7s"))
	if code == 0 || !strings.Contains(errOut, "open key") {
		t.Fatalf("physician: exit %d: %s", code, errOut)
	}
}
