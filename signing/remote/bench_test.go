package remote_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/hsm"
)

// BenchmarkHashToSignature measures remote signing from the hashes arriving to the signatures leaving,
// without the person's touch: BeginActivation (hashes in, nonce stored, challenge out) plus Activate (the
// assertion checked, SAD stored) plus SignHash (SAD redeemed, HSM signature verified, audited). The
// authenticator's own assertion (soft, in process) is excluded from the timing. "bare" is the HSM signature
// alone on the same token key (hsm.Key.SignContext, which also verifies), in the same run, as the baseline.
//
//	go test -run '^$' -bench HashToSignature -benchtime 200x -count 3 ./signing/remote/
func BenchmarkHashToSignature(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		f := newFixture(b, dialect)
		cred, a := f.enrol(drA)
		ctx := context.Background()
		for _, n := range []int{1, 10} {
			b.Run(dialect+"/hashes="+string(rune('0'+n/10))+string(rune('0'+n%10)), func(b *testing.B) {
				var lat []time.Duration
				for i := 0; i < b.N; i++ {
					hashes := randomHashes(n)
					t0 := time.Now()
					req, err := f.svc.BeginActivation(ctx, drA.caller(), cred.ID, hashes)
					if err != nil {
						b.Fatal(err)
					}
					d := time.Since(t0)
					asn, err := a.Assert(mustJSON(b, req.Options)) // the touch: not timed
					if err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					act, err := f.svc.Activate(ctx, drA.caller(), cred.ID, req.ID, asn)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := f.svc.SignHash(ctx, drA.caller(), cred.ID, act.SAD, hashes); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, d+time.Since(t1))
				}
				report(b, lat)
			})
		}
		b.Run(dialect+"/bare-hsm-sign", func(b *testing.B) {
			k, err := f.keys.Opener.OpenKey(ctx, cred.KeyURI)
			if err != nil {
				b.Fatal(err)
			}
			var lat []time.Duration
			d := make([]byte, 32)
			for i := 0; i < b.N; i++ {
				rand.Read(d)
				t0 := time.Now()
				if _, err := k.SignContext(ctx, d, crypto.SHA256); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			report(b, lat)
		})
	}
}

var _ = (*hsm.Key)(nil)

func report(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*95/100]), "p95-ms")
}
