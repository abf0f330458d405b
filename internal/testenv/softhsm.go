package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// SoftHSMModule is where Debian's softhsm2 package puts the PKCS#11 module.
const SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

// The PINs of every token SoftHSM initialises. They are test values, not secrets.
const (
	SoftHSMPIN   = "1234"
	SoftHSMSOPIN = "5678"
)

var softhsm struct {
	once   sync.Once
	err    error
	dir    string
	mu     sync.Mutex
	tokens map[string]bool
}

// SoftHSM initialises SoftHSM2 tokens with the given labels in a private token directory and returns
// the module path and the user PIN (SoftHSMPIN; the SO PIN is SoftHSMSOPIN). It skips or fails t
// (see Missing) when softhsm2-util or the module is not installed.
//
// Process-wide constraint: SoftHSM reads SOFTHSM2_CONF and scans its token directory only in
// C_Initialize, and a process may initialise a PKCS#11 module only once. So the first call sets
// SOFTHSM2_CONF for the whole test process (os.Setenv, not t.Setenv) to a conf in one directory shared
// by all tests of the binary, and that directory lives until the process ends (SoftHSMMain removes
// it). Tokens created after some code in the process has called C_Initialize stay invisible to it
// until the module is finalised and initialised again; so ask for every label a test binary needs
// before the module is first loaded, ideally in TestMain through SoftHSMMain, or before opening
// anything in each test. Labels already initialised are not initialised again, so calling SoftHSM
// from several tests with the same label is cheap and shares the token. Do not call t.Parallel in
// tests that need a fresh token while other tests hold the module open.
func SoftHSM(t testing.TB, labels ...string) (module, pin string) {
	t.Helper()
	if err := SoftHSMInit(labels...); err != nil {
		Missing(t, err.Error())
	}
	return SoftHSMModule, SoftHSMPIN
}

// SoftHSMInit is SoftHSM for code without a testing.TB, such as TestMain or benchmarks' setup.
func SoftHSMInit(labels ...string) error {
	softhsm.once.Do(func() {
		if _, err := exec.LookPath("softhsm2-util"); err != nil {
			softhsm.err = fmt.Errorf("softhsm2-util (package softhsm2): %v", err)
			return
		}
		if _, err := os.Stat(SoftHSMModule); err != nil {
			softhsm.err = fmt.Errorf("SoftHSM2 module %s: %v", SoftHSMModule, err)
			return
		}
		dir, err := os.MkdirTemp("", "mohr-softhsm-")
		if err != nil {
			softhsm.err = err
			return
		}
		tokens := filepath.Join(dir, "tokens")
		conf := filepath.Join(dir, "softhsm2.conf")
		text := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
		if err := os.Mkdir(tokens, 0o700); err != nil {
			softhsm.err = err
			return
		}
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			softhsm.err = err
			return
		}
		os.Setenv("SOFTHSM2_CONF", conf)
		softhsm.dir = dir
		softhsm.tokens = map[string]bool{}
	})
	if softhsm.err != nil {
		return softhsm.err
	}
	softhsm.mu.Lock()
	defer softhsm.mu.Unlock()
	for _, l := range labels {
		if softhsm.tokens[l] {
			continue
		}
		out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", l,
			"--pin", SoftHSMPIN, "--so-pin", SoftHSMSOPIN).CombinedOutput()
		if err != nil {
			return fmt.Errorf("softhsm2-util --init-token %q: %v: %s", l, err, out)
		}
		softhsm.tokens[l] = true
	}
	return nil
}

// SoftHSMDir returns the private directory that holds the SoftHSM2 conf and tokens ("" before the
// first SoftHSM call).
func SoftHSMDir() string { return softhsm.dir }

// SoftHSMMain runs m after initialising the tokens labels (if SoftHSM2 is installed; tests that need
// it then skip or fail through SoftHSM), and removes the private token directory afterwards. Use it
// as: func TestMain(m *testing.M) { os.Exit(testenv.SoftHSMMain(m, "A", "B")) }.
func SoftHSMMain(m *testing.M, labels ...string) int {
	SoftHSMInit(labels...)
	code := m.Run()
	if softhsm.dir != "" {
		os.RemoveAll(softhsm.dir)
	}
	return code
}
