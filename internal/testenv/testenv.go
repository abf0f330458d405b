// Package testenv gives tests the outside services scripts/test.sh starts (PostgreSQL, pcscd) and the outside
// tools scripts/install-deps.sh installs (openssl, pdfsig, certutil, pcsc_scan, opensc-tool, pkcs11-tool).
// Under scripts/test.sh (MOHR_REQUIRE_SERVICES=1) a missing service fails the test; elsewhere it skips.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Required reports whether missing services must fail tests rather than skip them.
func Required() bool { return os.Getenv("MOHR_REQUIRE_SERVICES") == "1" }

// Missing fails or skips t, as Required says, because what is missing.
func Missing(t testing.TB, what string) {
	t.Helper()
	if Required() {
		t.Fatalf("required test service missing: %s", what)
	}
	t.Skipf("test service missing: %s (run scripts/test.sh)", what)
}

// PostgresDSN returns the DSN of the throwaway cluster (MOHR_TEST_PG_DSN), or skips/fails.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("MOHR_TEST_PG_DSN")
	if dsn == "" {
		Missing(t, "PostgreSQL (MOHR_TEST_PG_DSN)")
	}
	return dsn
}

// LockPCSCD serialises tests that use the machine's one pcscd, across test binaries, with an flock
// held until t ends. It skips or fails when pcscd is not running.
func LockPCSCD(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/run/pcscd/pcscd.comm"); err != nil {
		Missing(t, "pcscd (scripts/pcscd-start.sh)")
	}
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "mohr-pcscd.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

// Tool returns the path of an outside program the test checks Mohr against (openssl, pdfsig, certutil,
// pcsc_scan, opensc-tool, pkcs11-tool), or skips/fails like Missing when it is not installed: under
// scripts/test.sh a missing tool fails the test, so CI cannot pass with an interoperability check skipped.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" (scripts/install-deps.sh)")
	}
	return p
}
