package hsm

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/mohr-hix/mohr/keys"
)

// secondHandle loads the module a second time, as another library in the process would, and returns
// it with the slot of token. C_Initialize answers CKR_CRYPTOKI_ALREADY_INITIALIZED because Mohr
// initialised the (shared) library already.
func secondHandle(t *testing.T, module, token string) (*pkcs11.Ctx, uint) {
	t.Helper()
	c := pkcs11.New(module)
	if c == nil {
		t.Fatal("cannot load module a second time")
	}
	t.Cleanup(c.Destroy)
	if err := c.Initialize(); err != nil && rv(err) != pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
		t.Fatal(err)
	}
	slots, err := c.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if ti, err := c.GetTokenInfo(s); err == nil && ti.Label == token {
			return c, s
		}
	}
	t.Fatalf("token %q not found", token)
	return nil, 0
}

func TestWrongPIN(t *testing.T) {
	module, _ := softhsm(t)
	o := newTestOpener(t, module, 2)
	ctx := context.Background()
	bad := filepath.Join(t.TempDir(), "badpin")
	os.WriteFile(bad, []byte("0000\n"), 0o600)
	u := keyURI(tokWrongPIN, "k", bad)
	_, err := o.OpenSigner(ctx, u)
	var le *LoginError
	if !errors.As(err, &le) || !errors.Is(err, keys.ErrPINIncorrect) {
		t.Fatalf("got %v, want *LoginError matching keys.ErrPINIncorrect", err)
	}
	if le.Token != tokWrongPIN {
		t.Errorf("LoginError.Token = %q", le.Token)
	}
	for _, leak := range []string{"0000", "handle"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error %q mentions %q", err, leak)
		}
	}
	// The same wrong PIN is not presented again: SoftHSM counts failures, the error is the same.
	_, err2 := o.OpenSigner(ctx, u)
	if !errors.Is(err2, keys.ErrPINIncorrect) {
		t.Fatalf("second attempt: %v", err2)
	}
	// A PIN given as pin-value is not quoted either, by errors or by the key's URI.
	pv := (&URI{Token: tokWrongPIN, Object: "k"}).String() + "?pin-value=98765"
	if _, err := o.OpenSigner(ctx, pv); !errors.Is(err, keys.ErrPINIncorrect) || strings.Contains(err.Error(), "98765") {
		t.Fatalf("pin-value: got %v", err)
	}
	// Once the PIN file is right, login works without restarting.
	os.WriteFile(bad, []byte("1234\n"), 0o600)
	if _, err := o.OpenSigner(ctx, u); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("after fixing the PIN: got %v, want ErrObjectNotFound (token has no key k)", err)
	}
}

func TestOpenErrors(t *testing.T) {
	module, pinFile := softhsm(t)
	o := newTestOpener(t, module, 1)
	ctx := context.Background()
	if _, err := o.GenerateKey(ctx, keyURI(tokCA, "errors-key", pinFile), AlgECP256); err != nil && !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		uri  string
		want []error
	}{
		{"missing token", keyURI("NoSuchToken", "k", pinFile), []error{ErrTokenNotFound, keys.ErrNotFound}},
		{"missing key", keyURI(tokCA, "no-such-key", pinFile), []error{ErrObjectNotFound, keys.ErrNotFound}},
		{"wrong module path", (&URI{Token: tokCA, Object: "k", ModulePath: "/nonexistent/libpkcs11.so", PINSource: "file:" + pinFile}).String(), []error{ErrModule}},
		{"not a PKCS#11 library", (&URI{Token: tokCA, Object: "k", ModulePath: "/etc/hostname", PINSource: "file:" + pinFile}).String(), []error{ErrModule}},
		{"missing pin file", keyURI(tokFault, "errors-key", "/nonexistent/pin"), []error{ErrPINSource}},
		{"no pin-source", (&URI{Token: tokFault, Object: "errors-key"}).String(), []error{ErrPINSource}},
		{"no token attribute", "pkcs11:object=k", []error{ErrBadURI, keys.ErrBadURI}},
		{"not pkcs11", "file:/x", []error{ErrBadURI}},
		{"certificate type", (&URI{Token: tokCA, Object: "errors-key", Type: "cert", PINSource: "file:" + pinFile}).String(), []error{ErrBadURI}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := o.OpenSigner(ctx, tc.uri)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("got %v, want %v", err, w)
				}
			}
			if err != nil && err.Error()[:4] != "hsm:" {
				t.Errorf("error %q lacks the hsm: prefix", err)
			}
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		c, cancel := context.WithCancel(ctx)
		cancel()
		_, err := o.OpenSigner(c, keyURI(tokCA, "errors-key", pinFile))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wait for a session honours the deadline", func(t *testing.T) {
		k, err := o.OpenKey(ctx, keyURI(tokCA, "errors-key", pinFile))
		if err != nil {
			t.Fatal(err)
		}
		// Hold the pool's only session.
		s, err := k.pool.acquire(ctx, k.uri, true, false)
		if err != nil {
			t.Fatal(err)
		}
		c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		d := sha256.Sum256([]byte("x"))
		_, err = k.SignContext(c, d[:], crypto.SHA256)
		k.pool.release(s, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
	})
}

// TestRecoveryInSigningLoop invalidates the sessions in the middle of a signing loop, through a
// second handle on the module (C_CloseAllSessions, then C_Finalize + C_Initialize, then C_Finalize
// alone) and checks that every request of the loop still gets a verified signature.
func TestRecoveryInSigningLoop(t *testing.T) {
	module, pinFile := softhsm(t)
	ctx := context.Background()
	for _, alg := range []string{AlgECP256, AlgRSA2048} {
		t.Run(alg, func(t *testing.T) {
			o := newTestOpener(t, module, 2)
			uri := keyURI(tokFault, "loop-"+alg, pinFile)
			s, err := o.GenerateKey(ctx, uri, alg)
			if err != nil {
				t.Fatal(err)
			}
			k := s.(*Key)
			other, slot := secondHandle(t, module, tokFault)
			faults := map[int]func(){
				20: func() {
					if err := other.CloseAllSessions(slot); err != nil {
						t.Fatalf("C_CloseAllSessions: %v", err)
					}
				},
				40: func() {
					if err := other.Finalize(); err != nil {
						t.Fatalf("C_Finalize: %v", err)
					}
					if err := other.Initialize(); err != nil {
						t.Fatalf("C_Initialize: %v", err)
					}
				},
				60: func() {
					// Finalised and left so: Mohr must call C_Initialize itself.
					if err := other.Finalize(); err != nil {
						t.Fatalf("C_Finalize: %v", err)
					}
				},
				80: func() {
					if err := other.CloseAllSessions(slot); err != nil {
						t.Fatalf("C_CloseAllSessions: %v", err)
					}
				},
			}
			epoch := k.pool.epoch.Load()
			const n = 100
			ok := 0
			for i := 0; i < n; i++ {
				if f := faults[i]; f != nil {
					f()
				}
				d := sha256.Sum256([]byte{byte(i)})
				sig, err := k.SignContext(ctx, d[:], crypto.SHA256)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if err := keys.VerifyDigest(k.Public(), d[:], sig, crypto.SHA256); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				ok++
			}
			if ok != n {
				t.Fatalf("%d of %d requests signed", ok, n)
			}
			if got := k.pool.epoch.Load() - epoch; got < 4 {
				t.Fatalf("pool recovered %d times, want at least 4: the faults did not reach Mohr", got)
			}
			// A key opened afresh works too.
			k2, err := o.OpenSigner(ctx, uri)
			if err != nil {
				t.Fatal(err)
			}
			signAndVerify(t, ctx, k2, crypto.SHA256)
		})
	}
}
