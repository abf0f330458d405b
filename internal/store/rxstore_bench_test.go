package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

// BenchmarkSavePrescription measures the store's share of an ingestion on SQLite (WAL, synchronous=FULL): 32
// concurrent SavePrescription calls (group commit), rows as the ingestion writes them (a 9.5 KB B-LT signature,
// a 4.9 KB sealed report, random ids and patient codes, 8 prescribers). It reports rows/s and the process's
// CPU per row (getrusage: user + system, the kernel's share of pwrite and fsync included). Variants: the
// blobs' size (the rows' bytes against 1-byte blobs), and the WAL checkpoint interval (PRAGMA
// wal_autocheckpoint, pages; SQLite's default is 1000). Used for docs/signing.md's store decision:
//
//	go test -run '^$' -bench SavePrescription -benchtime 4000x -count 3 ./internal/store
func BenchmarkSavePrescription(b *testing.B) {
	for _, v := range []struct {
		name          string
		sig, report   int
		checkpointPgs int
	}{
		{"blobs=14.4KB/checkpoint=1000", 9500, 4900, 1000},
		{"blobs=2B/checkpoint=1000", 1, 1, 1000},
		{"blobs=14.4KB/checkpoint=4000", 9500, 4900, 4000},
		{"blobs=14.4KB/checkpoint=8000", 9500, 4900, 8000},
		{"blobs=14.4KB/checkpoint=16000", 9500, 4900, 16000},
	} {
		b.Run(v.name, func(b *testing.B) {
			s := OpenTestSQLite(b)
			if _, err := s.b.(*sqliteBackend).w.Exec(fmt.Sprintf("PRAGMA wal_autocheckpoint=%d", v.checkpointPgs)); err != nil {
				b.Fatal(err)
			}
			benchSave(b, s, v.sig, v.report)
		})
	}
}

func benchSave(b *testing.B, s *SQLite, sigLen, reportLen int) {
	ctx := context.Background()
	sig, report := make([]byte, sigLen), make([]byte, reportLen)
	rand.Read(sig)
	rand.Read(report)
	now := time.Now()
	var n atomic.Int64
	randHex := func(k int) string { x := make([]byte, k); rand.Read(x); return hex.EncodeToString(x) }
	save := func() error {
		i := n.Add(1)
		rec := PrescriptionRecord{ID: randHex(32), ReceivedAt: now, SigningTime: now, PrescriberCode: "0499370899",
			CouncilNumber: fmt.Sprint(120000 + i%8), PatientCode: randHex(5), Indication: "TOTAL_PASSED",
			Signature: sig, SealedReport: report, Submitter: "facility:SIAM-10001", ArchiveDue: now.AddDate(3, 0, 0)}
		return s.SavePrescription(ctx, rec, audit.Event{Time: now, Kind: "rx.ingested", Actor: "facility:SIAM-10001", Subject: rec.ID,
			Data: []byte(`{"council":"120001","indication":"TOTAL_PASSED","prescriber":"0499370899"}`)})
	}
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	b.SetParallelism(16) // 32 callers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := save(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := time.Duration(r1.Utime.Nano()+r1.Stime.Nano()-r0.Utime.Nano()-r0.Stime.Nano()) * time.Nanosecond
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/row")
	b.ReportMetric(float64(r1.Stime.Nano()-r0.Stime.Nano())/1e3/float64(b.N), "sys-us/row")
}
