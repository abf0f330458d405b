package offline

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"image/png"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time. On this project's shared 2-core machines the wall time of a
// benchmark mostly measures the neighbours; the CPU time per operation (reported as cpu-ns/op) does not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerOp reports the CPU time per operation since start.
func cpuPerOp(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// benchPhoto is a 5-medicine code with a production-sized certificate as a PNG "photo" of about 1,000 x 1,000
// pixels (grey paper, off-centre code), and the bundle to check it with.
func benchPhoto(b *testing.B) ([]byte, string, *Bundle) {
	f := newFixture(b)
	f.productionSized(b)
	_, text := f.signed(b, f.prescription(b, 5), f.doc.Key)
	q, err := NewQR(text)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	img := photo(q, 1000/(2*(len(q.Modules)+8)))
	if err := png.Encode(&buf, img); err != nil {
		b.Fatal(err)
	}
	b.Logf("photo %dx%d, %d bytes PNG, QR version %d", img.Bounds().Dx(), img.Bounds().Dy(), buf.Len(), q.Version)
	return buf.Bytes(), text, f.bundle(b, f.bundleInput(t0))
}

// BenchmarkVerifyPhoto is the offline check of a QR from a photo: PNG decode, QR detection and decoding,
// Base45, zlib, COSE signature, chain, revocation snapshot. Run with -cpu 1; compare with
// BenchmarkBaselineECDSAVerify from the same run.
func BenchmarkVerifyPhoto(b *testing.B) {
	photoPNG, text, bundle := benchPhoto(b)
	now := t0.Add(time.Hour)
	b.ResetTimer()
	defer cpuPerOp(b, cpuTime())
	for i := 0; i < b.N; i++ {
		got, err := ReadQRFile(photoPNG)
		if err != nil || got != text {
			b.Fatal(err)
		}
		if res := Verify(got, bundle, now); !res.Report.Passed() {
			b.Fatal(res.Report.Summary())
		}
	}
}

// BenchmarkVerifyText is the offline check from the QR text (a scanner that already decoded the code).
func BenchmarkVerifyText(b *testing.B) {
	_, text, bundle := benchPhoto(b)
	now := t0.Add(time.Hour)
	b.ResetTimer()
	defer cpuPerOp(b, cpuTime())
	for i := 0; i < b.N; i++ {
		if res := Verify(text, bundle, now); !res.Report.Passed() {
			b.Fatal(res.Report.Summary())
		}
	}
}

// BenchmarkBaselineECDSAVerify is one ECDSA P-256 verification, the baseline the others are compared with.
func BenchmarkBaselineECDSAVerify(b *testing.B) {
	f := newFixture(b)
	d := sha256.Sum256([]byte("baseline"))
	sig, _ := ecdsa.SignASN1(rand.Reader, f.doc.Key, d[:])
	b.ResetTimer()
	defer cpuPerOp(b, cpuTime())
	for i := 0; i < b.N; i++ {
		if !ecdsa.VerifyASN1(&f.doc.Key.PublicKey, d[:], sig) {
			b.Fatal("verify")
		}
	}
}
