package api

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/hsm"
)

// BenchmarkCSCHashToSignature is hash in to signature out through the CSC API over mTLS, without the touch:
// credentials/authorize (step 1: hashes in, WebAuthn request out) plus credentials/authorize (step 2: the
// assertion in, SAD out) plus signatures/signHash (signatures out), on SoftHSM2 and SQLite; the software
// authenticator's assertion between the steps is not timed. Baseline in the same run: the HSM signature alone
// on the same key.
//
//	go test -run '^$' -bench CSCHashToSignature -benchtime 200x -count 3 ./api/
func BenchmarkCSCHashToSignature(b *testing.B) {
	e := newCSCEnvTB(b)
	phys := string(RolePhysician)
	for _, n := range []int{1, 10} {
		b.Run(map[int]string{1: "hashes=1", 10: "hashes=10"}[n], func(b *testing.B) {
			var lat []time.Duration
			for i := 0; i < b.N; i++ {
				hashes := make([][]byte, n)
				for j := range hashes {
					hashes[j] = make([]byte, 32)
					rand.Read(hashes[j])
				}
				t0 := time.Now()
				st, m := e.post(phys, "/csc/v2/credentials/authorize", map[string]any{"credentialID": e.cred.ID, "numSignatures": n,
					"hashes": b64hashes(hashes)})
				d := time.Since(t0)
				if st != http.StatusAccepted {
					b.Fatalf("authorize: %d %v", st, m)
				}
				opts, _ := json.Marshal(map[string]any{"publicKey": m["publicKey"]})
				asn, err := e.auth.Assert(opts) // the touch: not timed
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				st, m = e.post(phys, "/csc/v2/credentials/authorize", map[string]any{"credentialID": e.cred.ID, "numSignatures": n,
					"hashes": b64hashes(hashes), "authData": []map[string]string{{"id": "webauthn_handle", "value": m["handle"].(string)},
						{"id": "webauthn_assertion", "value": base64.RawURLEncoding.EncodeToString(asn)}}})
				if st != http.StatusOK {
					b.Fatalf("authorize 2: %d %v", st, m)
				}
				st, m = e.post(phys, "/csc/v2/signatures/signHash", map[string]any{"credentialID": e.cred.ID, "SAD": m["SAD"],
					"hashes": b64hashes(hashes), "signAlgo": oidECDSAWithSHA256})
				if st != http.StatusOK {
					b.Fatalf("signHash: %d %v", st, m)
				}
				lat = append(lat, d+time.Since(t1))
			}
			cscReport(b, lat)
		})
	}
	b.Run("bare-hsm-sign", func(b *testing.B) {
		k, err := e.op.OpenKey(context.Background(), e.cred.KeyURI)
		if err != nil {
			b.Fatal(err)
		}
		var lat []time.Duration
		d := make([]byte, 32)
		for i := 0; i < b.N; i++ {
			rand.Read(d)
			t0 := time.Now()
			if _, err := k.SignContext(context.Background(), d, crypto.SHA256); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		cscReport(b, lat)
	})
}

func cscReport(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*95/100]), "p95-ms")
}

var _ = (*hsm.Key)(nil)
