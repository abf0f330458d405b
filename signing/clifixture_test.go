package signing

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mohr-hix/mohr/internal/testpki"
)

// TestWriteCLIFixtures writes a test PKI for trying the CLI by hand (docs/signing.md): set
// MOHR_WRITE_CLI_FIXTURES=DIR.
func TestWriteCLIFixtures(t *testing.T) {
	dir := os.Getenv("MOHR_WRITE_CLI_FIXTURES")
	if dir == "" {
		t.Skip("set MOHR_WRITE_CLI_FIXTURES=DIR")
	}
	f := newFixture(t)
	os.MkdirAll(dir, 0o755)
	if _, err := f.pki.WritePEM(dir); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(testpki.WriteCerts(filepath.Join(dir, "physician.pem"), f.doc.Cert))
	must(testpki.WriteKey(filepath.Join(dir, "physician-key.pem"), f.doc.Key))
	must(os.WriteFile(filepath.Join(dir, "physician.txt"), []byte(f.physician.NationalCode+" "+f.physician.CouncilNumber+"\n"), 0o644))
}
