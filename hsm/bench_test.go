package hsm

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := k.SignContext(ctx, digest, crypto.SHA256); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportCPU(b, cpu)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
}

// cpuTime returns the CPU time (user + system, all threads, SoftHSM's included) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per operation since start: on a machine shared with other
// work this, unlike the rate, does not depend on how much of the CPU the benchmark was given.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/sig")
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
			cpu := cpuTime()
			for b.Loop() {
				if _, err := k.sign(ctx, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
		})
		sig, err := k.SignContext(ctx, digest[:], crypto.SHA256)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(alg+"/verify-only", func(b *testing.B) {
			cpu := cpuTime()
			for b.Loop() {
				if err := keys.VerifyDigest(k.Public(), digest[:], sig, crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
		b.Run(alg+"/verify-mohr", func(b *testing.B) {
			cpu := cpuTime()
			for b.Loop() {
				if err := k.verify(digest[:], sig, crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
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
	cpu := cpuTime()
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
	reportCPU(b, cpu)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
}

// BenchmarkSignRatio measures Mohr against the bare loop in alternating slices of sliceDur (bare,
// Mohr, bare, Mohr...) on sessions opened once, so that the load of other processes on a shared
// machine falls on both alike; it reports both rates and their ratio (mohr/bare). One benchmark
// iteration is one signature of either kind; use -benchtime Nx with N large enough for 10 s or so.
//
//	go test -run '^$' -bench 'BenchmarkSignRatio' -benchtime 40000x -count 3 ./hsm/
func BenchmarkSignRatio(b *testing.B) {
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
			b.Run(fmt.Sprintf("%s/sessions=%d", alg, n), func(b *testing.B) {
				bare := newBareSigner(b, module, "bench-"+alg, n, digest[:])
				defer bare.close()
				o := NewOpener(module)
				o.MaxSessions = n
				defer o.Close()
				k, err := o.OpenKey(ctx, uri)
				if err != nil {
					b.Fatal(err)
				}
				mohr := func(stop *atomic.Bool, count *atomic.Int64) {
					var wg sync.WaitGroup
					for range 2 * n { // as BenchmarkSign: 2n goroutines, so verifications overlap signing
						wg.Add(1)
						go func() {
							defer wg.Done()
							for !stop.Load() {
								if _, err := k.SignContext(ctx, digest[:], crypto.SHA256); err != nil {
									b.Error(err)
									return
								}
								count.Add(1)
							}
						}()
					}
					wg.Wait()
				}
				// Warm up (Mohr builds its P-256 table after p256TableAfter signatures).
				runSlice(bare.run, 100*time.Millisecond)
				runSlice(mohr, 100*time.Millisecond)
				b.ResetTimer()
				var nb, nm int64
				var tb, tm, cb, cm time.Duration
				for nb+nm < int64(b.N) {
					c0 := cpuTime()
					c, d := runSlice(bare.run, sliceDur)
					c1 := cpuTime()
					nb, tb, cb = nb+c, tb+d, cb+c1-c0
					c, d = runSlice(mohr, sliceDur)
					nm, tm, cm = nm+c, tm+d, cm+cpuTime()-c1
				}
				rb, rm := float64(nb)/tb.Seconds(), float64(nm)/tm.Seconds()
				ub := float64(cb) / float64(time.Microsecond) / float64(nb)
				um := float64(cm) / float64(time.Microsecond) / float64(nm)
				b.ReportMetric(rb, "bare-sigs/s")
				b.ReportMetric(rm, "mohr-sigs/s")
				b.ReportMetric(rm/rb, "mohr/bare")
				// CPU time per signature (process, all threads): what decides the rate once the
				// cores are saturated, and far less sensitive to other processes' load than rates.
				b.ReportMetric(ub, "bare-cpu-µs/sig")
				b.ReportMetric(um, "mohr-cpu-µs/sig")
				b.ReportMetric(ub/um, "cpu-bare/mohr")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

const sliceDur = 200 * time.Millisecond

// runSlice runs f until d has passed and returns how many operations it counted and for how long.
func runSlice(f func(stop *atomic.Bool, count *atomic.Int64), d time.Duration) (int64, time.Duration) {
	var stop atomic.Bool
	var count atomic.Int64
	start := time.Now()
	t := time.AfterFunc(d, func() { stop.Store(true) })
	defer t.Stop()
	f(&stop, &count)
	return count.Load(), time.Since(start)
}

// bareSigner is the bare loop of benchBare with its sessions kept open between slices.
type bareSigner struct {
	tb       testing.TB
	c        *pkcs11.Ctx
	sessions []pkcs11.SessionHandle
	key      pkcs11.ObjectHandle
	mech     []*pkcs11.Mechanism
	data     []byte
}

func newBareSigner(tb testing.TB, module, label string, n int, digest []byte) *bareSigner {
	c := pkcs11.New(module)
	if c == nil {
		tb.Fatal("cannot load module")
	}
	bs := &bareSigner{tb: tb, c: c}
	if err := c.Initialize(); err != nil && rv(err) != pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
		tb.Fatal(err)
	}
	slots, err := c.GetSlotList(true)
	if err != nil {
		tb.Fatal(err)
	}
	var slot uint
	found := false
	for _, s := range slots {
		if ti, err := c.GetTokenInfo(s); err == nil && ti.Label == tokBench {
			slot, found = s, true
		}
	}
	if !found {
		tb.Fatal("bench token not found")
	}
	for range n {
		sh, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			tb.Fatal(err)
		}
		bs.sessions = append(bs.sessions, sh)
	}
	if err := c.Login(bs.sessions[0], pkcs11.CKU_USER, testenv.SoftHSMPIN); err != nil && rv(err) != pkcs11.CKR_USER_ALREADY_LOGGED_IN {
		tb.Fatal(err)
	}
	if bs.key, err = findOne(c, bs.sessions[0], pkcs11.CKO_PRIVATE_KEY, label, nil); err != nil {
		tb.Fatal(err)
	}
	a, err := attrs(c, bs.sessions[0], bs.key, pkcs11.CKA_KEY_TYPE)
	if err != nil {
		tb.Fatal(err)
	}
	bs.mech, bs.data = mechECDSA, digest
	if ulong(a[pkcs11.CKA_KEY_TYPE]) == pkcs11.CKK_RSA {
		bs.mech, bs.data = mechRSAPKCS, append(append([]byte(nil), pkcs1Prefix[crypto.SHA256]...), digest...)
	}
	return bs
}

// run signs on every session, one goroutine each, until stop.
func (bs *bareSigner) run(stop *atomic.Bool, count *atomic.Int64) {
	var wg sync.WaitGroup
	for _, sh := range bs.sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if err := bs.c.SignInit(sh, bs.mech, bs.key); err != nil {
					bs.tb.Error(err)
					return
				}
				if _, err := bs.c.Sign(sh, bs.data); err != nil {
					bs.tb.Error(err)
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
}

func (bs *bareSigner) close() {
	for _, sh := range bs.sessions {
		bs.c.CloseSession(sh)
	}
	bs.c.Destroy()
}
