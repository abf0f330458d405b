package hsm

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/keys"
)

// BenchmarkSign compares signatures per second through Mohr's Key (session pool, r||s to DER, and
// verification of every signature) with a bare miekg/pkcs11 loop (C_SignInit + C_Sign on dedicated
// sessions, nothing else) on the same SoftHSM2 token key, with 1 and 2 sessions, in the same run.
//
//	go test -run '^$' -bench BenchmarkSign -benchtime 3s -count 3 ./hsm/
func BenchmarkSign(b *testing.B) {
	module, pinFile := softhsm(b)
	ctx := context.Background()
	setup := NewOpener(module)
	defer setup.Close()
	digest := sha256.Sum256([]byte("benchmark"))
	for _, alg := range []string{AlgECP256, AlgRSA2048} {
		uri := keyURI(tokBench, "bench-"+alg, pinFile)
		if _, err := setup.GenerateKey(ctx, uri, alg); err != nil && !errors.Is(err, ErrExists) {
			b.Fatal(err)
		}
		for _, n := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/bare/sessions=%d", alg, n), func(b *testing.B) {
				benchBare(b, module, "bench-"+alg, n, digest[:], nil)
			})
			b.Run(fmt.Sprintf("%s/bare+verify/sessions=%d", alg, n), func(b *testing.B) {
				k, err := setup.OpenKey(ctx, uri)
				if err != nil {
					b.Fatal(err)
				}
				benchBare(b, module, "bench-"+alg, n, digest[:], k.Public())
			})
			b.Run(fmt.Sprintf("%s/mohr-stdverify/sessions=%d", alg, n), func(b *testing.B) {
				benchMohr(b, module, uri, n, digest[:], true)
			})
			b.Run(fmt.Sprintf("%s/mohr/sessions=%d", alg, n), func(b *testing.B) {
				benchMohr(b, module, uri, n, digest[:], false)
			})
		}
	}
}

// benchMohr signs through an Opener with n sessions and 2n goroutines. With stdVerify, the key's
// precomputed P-256 verifier is switched off, so every signature is verified by crypto/ecdsa alone
// (what Mohr did before the per-key table): the before/after comparison in one run.
func benchMohr(b *testing.B, module, uri string, n int, digest []byte, stdVerify bool) {
	ctx := context.Background()
	o := NewOpener(module)
	o.MaxSessions = n
	defer o.Close()
	k, err := o.OpenKey(ctx, uri)
	if err != nil {
		b.Fatal(err)
	}
	if stdVerify {
		k.p256once.Do(func() {}) // k.p256 stays nil
	}
	// Mohr releases the session before it verifies, so with GOMAXPROCS goroutines per
	// session one goroutine's verification overlaps another's signing.
	b.SetParallelism(n)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.SignContext(ctx, digest, crypto.SHA256); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
}

// BenchmarkSignParts breaks Mohr's cost down, one goroutine each: the bare loop, the token signature
// through Mohr's pool without verification (pool, handle cache, r||s to DER), and Go's verification
// alone.
//
//	go test -run '^$' -bench BenchmarkSignParts -benchtime 2s -count 3 ./hsm/
func BenchmarkSignParts(b *testing.B) {
	module, pinFile := softhsm(b)
	ctx := context.Background()
	digest := sha256.Sum256([]byte("benchmark"))
	for _, alg := range []string{AlgECP256, AlgRSA2048} {
		o := NewOpener(module)
		o.MaxSessions = 1
		uri := keyURI(tokBench, "bench-"+alg, pinFile)
		if _, err := o.GenerateKey(ctx, uri, alg); err != nil && !errors.Is(err, ErrExists) {
			b.Fatal(err)
		}
		k, err := o.OpenKey(ctx, uri)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(alg+"/bare/sessions=1", func(b *testing.B) {
			benchBare(b, module, "bench-"+alg, 1, digest[:], nil)
		})
		b.Run(alg+"/pool-unverified/sessions=1", func(b *testing.B) {
			for b.Loop() {
				if _, err := k.sign(ctx, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
		})
		sig, err := k.SignContext(ctx, digest[:], crypto.SHA256)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(alg+"/verify-only", func(b *testing.B) {
			for b.Loop() {
				if err := keys.VerifyDigest(k.Public(), digest[:], sig, crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/verify-mohr", func(b *testing.B) {
			for b.Loop() {
				if err := k.verify(digest[:], sig, crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
		o.Close()
	}
}

// benchBare signs with n sessions of a second handle on the module, one goroutine per session.
//
// With pub set, each goroutine also converts and verifies every signature, in line, as a naive
// verifying signer would: a second baseline that shows what verification costs.
func benchBare(b *testing.B, module, label string, n int, digest []byte, pub crypto.PublicKey) {
	c := pkcs11.New(module)
	if c == nil {
		b.Fatal("cannot load module")
	}
	defer c.Destroy()
	if err := c.Initialize(); err != nil && rv(err) != pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
		b.Fatal(err)
	}
	slots, err := c.GetSlotList(true)
	if err != nil {
		b.Fatal(err)
	}
	var slot uint
	found := false
	for _, s := range slots {
		if ti, err := c.GetTokenInfo(s); err == nil && ti.Label == tokBench {
			slot, found = s, true
		}
	}
	if !found {
		b.Fatal("bench token not found")
	}
	var key pkcs11.ObjectHandle
	var ktype uint
	sessions := make([]pkcs11.SessionHandle, n)
	for i := range sessions {
		if sessions[i], err = c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION); err != nil {
			b.Fatal(err)
		}
		defer c.CloseSession(sessions[i])
	}
	if err := c.Login(sessions[0], pkcs11.CKU_USER, testenv.SoftHSMPIN); err != nil && rv(err) != pkcs11.CKR_USER_ALREADY_LOGGED_IN {
		b.Fatal(err)
	}
	if key, err = findOne(c, sessions[0], pkcs11.CKO_PRIVATE_KEY, label, nil); err != nil {
		b.Fatal(err)
	}
	a, err := attrs(c, sessions[0], key, pkcs11.CKA_KEY_TYPE)
	if err != nil {
		b.Fatal(err)
	}
	ktype = ulong(a[pkcs11.CKA_KEY_TYPE])
	mech, data := mechECDSA, digest
	if ktype == pkcs11.CKK_RSA {
		mech, data = mechRSAPKCS, append(append([]byte(nil), pkcs1Prefix[crypto.SHA256]...), digest...)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, sh := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := c.SignInit(sh, mech, key); err != nil {
					b.Error(err)
					return
				}
				sig, err := c.Sign(sh, data)
				if err != nil {
					b.Error(err)
					return
				}
				if pub != nil {
					if ktype == pkcs11.CKK_EC {
						sig, err = ecdsaDER(sig)
					}
					if err == nil {
						err = keys.VerifyDigest(pub, digest, sig, crypto.SHA256)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
}
