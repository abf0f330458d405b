package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// corpus is a batch of B-LT prescriptions from a realistic population: physicians prescribe many times a day,
// and the exchange embeds each physician's pre-signed OCSP response (RFC 6960 §2.2) fetched after the
// timestamps, so certificates and responses repeat while every signature and timestamp is distinct.
type corpus struct {
	f    *fixture
	docs [][]byte
	now  time.Time
}

func buildCorpus(tb testing.TB, n, physicians int) *corpus {
	f := newFixture(tb)
	ctx := context.Background()
	type doc struct {
		leaf *testpki.Leaf
		ph   rxgen.Physician
	}
	var phs []doc
	for i := 0; i < physicians; i++ {
		ph := f.gen.Physician()
		phs = append(phs, doc{f.issuePhysician(tb, ph, testpki.LeafOptions{}), ph})
	}
	bts := make([][]byte, n)
	for i := range bts {
		d := phs[i%physicians]
		bts[i] = f.toBT(tb, f.signBB(tb, d.leaf, d.ph))
	}
	f.pki.Clock.Advance(time.Minute)
	ocsps := map[int][]byte{}
	for i := range phs {
		r, err := f.pki.OCSP(phs[i].leaf.Cert)
		if err != nil {
			tb.Fatal(err)
		}
		ocsps[i] = r
	}
	c := &corpus{f: f, now: f.pki.Clock.Now().Add(time.Minute)}
	tsaResp, err := f.pki.OCSP(f.tsaLeaf.Cert) // the TSA's status and the intermediate's (root CRL): B-LT carries the whole chain's
	if err != nil {
		tb.Fatal(err)
	}
	rootCRL, err := f.pki.RootCRL()
	if err != nil {
		tb.Fatal(err)
	}
	for i, bt := range bts {
		blt, err := AddValidationData(bt, ValidationData{OCSPs: [][]byte{ocsps[i%physicians], tsaResp}, CRLs: [][]byte{rootCRL},
			Certs: [][]byte{f.pki.Responder.Cert.Raw, f.tsaLeaf.Cert.Raw}})
		if err != nil {
			tb.Fatal(err)
		}
		c.docs = append(c.docs, blt)
	}
	_ = ctx
	return c
}

func (c *corpus) verifier(tb testing.TB) *Verifier {
	now := c.now
	return c.f.verifier(tb, func(vc *VerifierConfig) { vc.Now = func() time.Time { return now }; vc.Revocation = nil })
}

var benchCorpus *corpus

// cpuTime is the user+system CPU time of the process. On a shared machine wall-clock throughput swings with the
// neighbours' load; CPU time per operation does not, so the benchmarks report both (docs/signing.md).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func getCorpus(b *testing.B) *corpus {
	if benchCorpus == nil {
		benchCorpus = buildCorpus(b, 10000, 200)
	}
	return benchCorpus
}

// BenchmarkVerifyBLT measures full B-LT verifications (document signature, timestamp, chain, OCSP, policy and
// domain checks), in parallel on all cores.
func BenchmarkVerifyBLT(b *testing.B) {
	c := getCorpus(b)
	v := c.verifier(b)
	// The corpus repeats once b.N passes its size, and the verifier remembers signatures that verified
	// (sigcache.go): without this every later document would skip its two ECDSA verifications, which a batch of
	// distinct documents never does.
	v.sigs = nil
	ctx := context.Background()
	for _, d := range c.docs[:400] { // warm the caches as a long-running verifier has them
		if r := v.Verify(ctx, d); !r.Passed() {
			b.Fatal(r.Summary())
		}
	}
	var i atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d := c.docs[int(i.Add(1))%len(c.docs)]
			if r := v.Verify(ctx, d); r.Indication != TotalPassed {
				b.Error(r.Summary())
			}
		}
	})
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// BenchmarkECDSACeiling is the crypto a B-LT verification cannot avoid: two ECDSA P-256 verifications (the
// prescriber's signature and the timestamp's), in parallel on all cores. Compare ns/op with BenchmarkVerifyBLT.
func BenchmarkECDSACeiling(b *testing.B) {
	c := getCorpus(b)
	type pair struct {
		pub    *ecdsa.PublicKey
		digest []byte
		sig    []byte
	}
	var ps []pair
	for _, d := range c.docs[:200] {
		sd, _ := parseOne(d)
		si := &sd.signers[0]
		h := sha256.New()
		h.Write([]byte{0x31})
		h.Write(si.signedAttrsRaw[1:])
		signer, _, _ := SignerCertificates(d)
		ps = append(ps, pair{signer.PublicKey.(*ecdsa.PublicKey), h.Sum(nil), si.signature})
	}
	var i atomic.Int64
	b.ResetTimer()
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			for k := 0; k < 2; k++ {
				p := ps[int(i.Add(1))%len(ps)]
				if !ecdsa.VerifyASN1(p.pub, p.digest, p.sig) {
					b.Error("bad")
				}
			}
		}
	})
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// BenchmarkBatch10k verifies the 10,000-prescription batch with the BatchVerifier and reports docs/s.
func BenchmarkBatch10k(b *testing.B) {
	c := getCorpus(b)
	ctx := context.Background()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for n := 0; n < b.N; n++ {
		bv := &BatchVerifier{Verifier: c.verifier(b)} // cold caches each round
		in := make(chan BatchItem, 64)
		out := make(chan *Report, 64)
		go bv.Run(ctx, in, out)
		go func() {
			for i, d := range c.docs {
				in <- BatchItem{Index: i, DER: d}
			}
			close(in)
		}()
		var st BatchStats
		for r := range out {
			st.Add(r)
		}
		if st.Passed != len(c.docs) {
			b.Fatalf("%+v", st)
		}
	}
	b.ReportMetric(float64(b.N*len(c.docs))/time.Since(start).Seconds(), "docs/s")
	b.ReportMetric(float64(b.N*len(c.docs))/(cpuTime()-cpu).Seconds(), "docs/cpu-s")
}

// BenchmarkArchiveRenewal is what one stored prescription's archive-timestamp renewal (B-LTA, EN 319 122-1
// §5.5.2) costs with the in-process TSA, against the TSA token alone: the token is the only part one timestamp
// over a batch (a Merkle root) could share between prescriptions (docs/signing.md, "Batched timestamps").
func BenchmarkArchiveRenewal(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	blt := f.toBLT(b, f.toBT(b, f.signBB(b, f.doc, f.physician)), f.doc)
	b.Run("add-archive-timestamp", func(b *testing.B) {
		b.ReportAllocs()
		cpu := cpuTime()
		for range b.N {
			if _, err := AddArchiveTimestamp(ctx, blt, f.tsa); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	})
	b.Run("tsa-token", func(b *testing.B) {
		d := sha256.Sum256(blt)
		b.ReportAllocs()
		cpu := cpuTime()
		for range b.N {
			if _, err := f.tsa.Timestamp(ctx, crypto.SHA256, d[:]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	})
}
