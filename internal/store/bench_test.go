package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkIssue measures the store's share of issuing one certificate: AddPending then MarkIssued, each with
// its audit event, one certificate at a time.
func BenchmarkIssue(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchIssue(b, OpenTestSQLite(b), false) })
	b.Run("postgres", func(b *testing.B) { benchIssue(b, OpenTestPostgres(b), false) })
}

// BenchmarkIssueParallel is BenchmarkIssue with GOMAXPROCS concurrent issuers (-cpu to vary).
func BenchmarkIssueParallel(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchIssue(b, OpenTestSQLite(b), true) })
	b.Run("postgres", func(b *testing.B) { benchIssue(b, OpenTestPostgres(b), true) })
}

func benchIssue(b *testing.B, s Store, parallel bool) {
	ctx := context.Background()
	der := make([]byte, 1200)
	var n atomic.Int64
	issue := func() bool {
		serial := fmt.Sprintf("%x", 1<<40+n.Add(1))
		if err := s.AddPending(ctx, testRecord(serial), testEvent("cert.intent", serial)); err != nil {
			b.Error(err)
			return false
		}
		if err := s.MarkIssued(ctx, serial, der, testEvent("cert.issued", serial)); err != nil {
			b.Error(err)
			return false
		}
		return true
	}
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() && issue() {
			}
		})
	} else {
		for b.Loop() && issue() {
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}
