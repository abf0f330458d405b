package tokens_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"github.com/mohr-hix/mohr/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mohr-hix/mohr/tokens"
)

func softwareToken(t *testing.T) (*tokens.SoftwareToken, *fixture) {
	t.Helper()
	ctx := context.Background()
	fx := newFixture(t)
	k, _ := tokens.NewSoftwareKey(rand.Reader)
	csr, _ := tokens.NewCSR(rand.Reader, k, "SIAM-1001", "adapter")
	code, _, _ := fx.svc.NewEnrolmentCode(ctx, "SIAM-1001", "ra")
	iss, err := fx.svc.Enrol(ctx, tokens.EnrolRequest{Code: code, CSR: csr, Kind: tokens.KindSoftware})
	if err != nil {
		t.Fatal(err)
	}
	return &tokens.SoftwareToken{Key: k, Cert: iss.Cert, Chain: iss.Chain}, fx
}

func TestKeystorePKCS8(t *testing.T) {
	st, _ := softwareToken(t)
	pw := []byte("correct horse battery staple")
	pemData, err := tokens.EncodeKeystore(rand.Reader, st.Key, st.Cert, st.Chain, pw)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(pemData, []byte("BEGIN PRIVATE KEY")) || !bytes.Contains(pemData, []byte("BEGIN ENCRYPTED PRIVATE KEY")) {
		t.Fatal("key not encrypted")
	}
	got, err := tokens.DecodeKeystore(pemData, pw)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cert.Equal(st.Cert) || len(got.Chain) != 1 || !got.Chain[0].Equal(st.Chain[0]) {
		t.Fatal("certificates differ")
	}
	for _, bad := range []string{"wrong", "", "correct horse battery stapl"} {
		if _, err := tokens.DecodeKeystore(pemData, []byte(bad)); !errors.Is(err, tokens.ErrBadPassword) {
			t.Fatalf("password %q: %v", bad, err)
		}
	}
	// OpenSSL reads the PBES2 structure as an outside check.
	if testenv.Tool(t, "openssl") != "" {
		dir := t.TempDir()
		f := filepath.Join(dir, "ks.pem")
		os.WriteFile(f, pemData, 0o600)
		out, err := exec.Command("openssl", "pkey", "-in", f, "-passin", "pass:"+string(pw), "-noout", "-text").CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("NIST CURVE: P-256")) {
			t.Fatalf("openssl pkey: %v\n%s", err, out)
		}
		out, _ = exec.Command("openssl", "asn1parse", "-in", f).CombinedOutput()
		for _, want := range []string{"PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc"} {
			if !bytes.Contains(out, []byte(want)) {
				t.Fatalf("asn1parse lacks %s:\n%s", want, out)
			}
		}
	}
}

func TestKeystorePKCS12(t *testing.T) {
	st, _ := softwareToken(t)
	pfx, err := tokens.EncodePKCS12(rand.Reader, st.Key, st.Cert, st.Chain, "s3cret-pass")
	if err != nil {
		t.Fatal(err)
	}
	got, err := tokens.DecodePKCS12(pfx, "s3cret-pass")
	if err != nil || !got.Cert.Equal(st.Cert) || len(got.Chain) != 1 {
		t.Fatalf("decode: %v", err)
	}
	if _, err := tokens.DecodePKCS12(pfx, "wrong"); !errors.Is(err, tokens.ErrBadPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if testenv.Tool(t, "openssl") != "" {
		f := filepath.Join(t.TempDir(), "ks.p12")
		os.WriteFile(f, pfx, 0o600)
		if out, err := exec.Command("openssl", "pkcs12", "-in", f, "-passin", "pass:s3cret-pass", "-noout").CombinedOutput(); err != nil {
			t.Fatalf("openssl pkcs12: %v\n%s", err, out)
		}
	}
}

func TestKeystoreWrongPasswordChangesNothing(t *testing.T) {
	st, _ := softwareToken(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "token.pem")
	data, _ := tokens.EncodeKeystore(rand.Reader, st.Key, st.Cert, st.Chain, []byte("pw-one"))
	os.WriteFile(path, data, 0o600)
	if _, err := tokens.DecodeKeystore(data, []byte("pw-two")); !errors.Is(err, tokens.ErrBadPassword) || bytes.Contains([]byte(err.Error()), []byte("pw-two")) {
		t.Fatalf("err = %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, data) {
		t.Fatal("keystore changed")
	}
}

func TestKeystoreDefaultIterations(t *testing.T) {
	if testing.Short() {
		t.Skip("slow under -race")
	}
	old := tokens.PBKDF2Iterations
	tokens.PBKDF2Iterations = 600000
	defer func() { tokens.PBKDF2Iterations = old }()
	st, _ := softwareToken(t)
	data, err := tokens.EncodeKeystore(rand.Reader, st.Key, st.Cert, st.Chain, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "ks.pem")
	os.WriteFile(f, data, 0o600)
	if out, err := exec.Command("openssl", "asn1parse", "-in", f).CombinedOutput(); err == nil && !bytes.Contains(out, []byte(":0927C0")) {
		t.Fatalf("iteration count 600000 (0x0927C0) not found:\n%s", out)
	}
}
