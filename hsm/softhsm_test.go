package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/keys"
)

// Token labels this test binary uses. They are initialised in TestMain, before anything loads the
// module, because SoftHSM scans its token directory only in C_Initialize.
const (
	tokCA       = "MohrCA"
	tokFault    = "MohrFault"
	tokWrongPIN = "MohrWrongPIN"
	tokExt      = "MohrExt"
	tokBench    = "MohrBench"
	tokRace     = "MohrRace"
	tokEdPIN    = "MohrEdPIN" // never logged in to by this process before TestEd25519WrongPIN
)

func TestMain(m *testing.M) {
	os.Exit(testenv.SoftHSMMain(m, tokCA, tokFault, tokWrongPIN, tokExt, tokBench, tokRace, tokEdPIN))
}

// softhsm returns the module path and a pin-source file for the SoftHSM tokens.
func softhsm(tb testing.TB) (module, pinFile string) {
	tb.Helper()
	module, pin := testenv.SoftHSM(tb, tokCA, tokFault, tokWrongPIN, tokExt, tokBench, tokRace, tokEdPIN)
	pinFile = filepath.Join(tb.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return module, pinFile
}

func newTestOpener(tb testing.TB, module string, sessions int) *Opener {
	tb.Helper()
	o := NewOpener(module)
	o.MaxSessions = sessions
	tb.Cleanup(func() {
		if err := o.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return o
}

func keyURI(token, object, pinFile string) string {
	u := URI{Token: token, Object: object, PINSource: "file:" + pinFile}
	return u.String()
}

func signAndVerify(tb testing.TB, ctx context.Context, s crypto.Signer, opts crypto.SignerOpts) {
	tb.Helper()
	h := opts.HashFunc().New()
	h.Write([]byte("prescription bundle"))
	d := h.Sum(nil)
	var sig []byte
	var err error
	if k, ok := s.(*Key); ok {
		sig, err = k.SignContext(ctx, d, opts)
	} else {
		sig, err = s.Sign(rand.Reader, d, opts)
	}
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	if err := keys.VerifyDigest(s.Public(), d, sig, opts); err != nil {
		tb.Fatalf("verify: %v", err)
	}
}

func selfSigned(t *testing.T, s crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "Mohr test intermediate"},
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:         true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
	if err != nil {
		t.Fatalf("CreateCertificate with the HSM key: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGenerateSignStore(t *testing.T) {
	module, pinFile := softhsm(t)
	o := newTestOpener(t, module, 2)
	ctx := context.Background()
	for _, tc := range []struct {
		alg  string
		opts []crypto.SignerOpts
	}{
		{AlgECP256, []crypto.SignerOpts{crypto.SHA256}},
		{AlgECP384, []crypto.SignerOpts{crypto.SHA384, crypto.SHA256}},
		{AlgRSA2048, []crypto.SignerOpts{crypto.SHA256, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}, &rsa.PSSOptions{Hash: crypto.SHA384}}},
		{AlgRSA3072, []crypto.SignerOpts{crypto.SHA384}},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			uri := keyURI(tokCA, "gen-"+tc.alg, pinFile)
			s, err := o.GenerateKey(ctx, uri, tc.alg)
			if err != nil {
				t.Fatalf("GenerateKey: %v", err)
			}
			for _, opts := range tc.opts {
				signAndVerify(t, ctx, s, opts)
			}
			if _, err := o.GenerateKey(ctx, uri, tc.alg); !errors.Is(err, ErrExists) {
				t.Fatalf("second GenerateKey: got %v, want ErrExists", err)
			}
			// Open it again by label, and by the ID GenerateKey chose.
			byLabel, err := o.OpenSigner(ctx, uri)
			if err != nil {
				t.Fatalf("OpenSigner by label: %v", err)
			}
			type equaler interface{ Equal(crypto.PublicKey) bool }
			if !byLabel.Public().(equaler).Equal(s.Public()) {
				t.Fatal("reopened key has another public key")
			}
			idURI := (&URI{Token: tokCA, ID: s.(*Key).ID(), PINSource: "file:" + pinFile}).String()
			byID, err := o.OpenSigner(ctx, idURI)
			if err != nil {
				t.Fatalf("OpenSigner by id: %v", err)
			}
			signAndVerify(t, ctx, byID, tc.opts[0])

			cert := selfSigned(t, byLabel)
			if err := o.StoreCertificate(ctx, uri, cert); err != nil {
				t.Fatalf("StoreCertificate: %v", err)
			}
			if err := o.StoreCertificate(ctx, uri, cert); !errors.Is(err, ErrExists) {
				t.Fatalf("second StoreCertificate: got %v, want ErrExists", err)
			}
			got, err := o.Certificate(ctx, (&URI{Token: tokCA, Object: "gen-" + tc.alg}).String())
			if err != nil {
				t.Fatalf("Certificate: %v", err)
			}
			if !got.Equal(cert) {
				t.Fatal("certificate read back differs")
			}
			if err := keys.MatchesCertificate(s, got); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("mismatched certificate", func(t *testing.T) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		c := selfSigned(t, other)
		err := o.StoreCertificate(ctx, keyURI(tokCA, "gen-"+AlgECP256, pinFile), c)
		if !errors.Is(err, keys.ErrKeyMismatch) {
			t.Fatalf("got %v, want keys.ErrKeyMismatch", err)
		}
	})
	t.Run("bad algorithm", func(t *testing.T) {
		_, err := o.GenerateKey(ctx, keyURI(tokCA, "x", pinFile), "DSA-1024")
		if !errors.Is(err, keys.ErrUnsupportedKey) {
			t.Fatalf("got %v, want keys.ErrUnsupportedKey", err)
		}
	})
	t.Run("env pin-source", func(t *testing.T) {
		t.Setenv("MOHR_TEST_HSM_PIN", testenv.SoftHSMPIN)
		o2 := newTestOpener(t, module, 1)
		u := (&URI{Token: tokCA, Object: "gen-" + AlgECP256, PINSource: "env:MOHR_TEST_HSM_PIN"}).String()
		s, err := o2.OpenSigner(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		signAndVerify(t, ctx, s, crypto.SHA256)
	})
}

func TestListSlotsAndObjects(t *testing.T) {
	module, pinFile := softhsm(t)
	o := newTestOpener(t, module, 1)
	ctx := context.Background()
	if _, err := o.GenerateKey(ctx, keyURI(tokCA, "listed", pinFile), AlgECP256); err != nil && !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	slots, err := o.Slots(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range slots {
		found = found || s.Label == tokCA && s.Initialized && s.LoginRequired
	}
	if !found {
		t.Fatalf("token %s not listed: %+v", tokCA, slots)
	}
	// Without a PIN source Objects does not log in; this process has logged in to the token already
	// (login state is per application, PKCS#11 v2.40 section 5.6), so both halves show.
	noPIN, err := o.Objects(ctx, (&URI{Token: tokCA, Object: "listed"}).String())
	if err != nil {
		t.Fatal(err)
	}
	if len(noPIN) == 0 || noPIN[len(noPIN)-1].Class != "public" || noPIN[len(noPIN)-1].KeyType != "EC" {
		t.Fatalf("without a PIN source: %+v", noPIN)
	}
	all, err := o.Objects(ctx, keyURI(tokCA, "listed", pinFile))
	if err != nil {
		t.Fatal(err)
	}
	var priv *ObjectInfo
	for i := range all {
		if all[i].Class == "private" {
			priv = &all[i]
		}
	}
	if priv == nil || !priv.Sensitive || priv.Extractable || !priv.NeverExtractable || !priv.AlwaysSensitive {
		t.Fatalf("with login: %+v", all)
	}
	u, err := ParseURI(priv.URI)
	if err != nil || u.Token != tokCA || u.Object != "listed" || u.Type != "private" || len(u.ID) == 0 {
		t.Fatalf("object URI %q: %v", priv.URI, err)
	}
}
