package cardreader_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
)

// BenchmarkRoundTrip compares one SELECT of the council AID through cardreader.Transmit with the same
// APDU through bare scard.Card.Transmit, on the same virtual card in the same run.
func BenchmarkRoundTrip(b *testing.B) {
	vc := newVirtual(b, virtualcard.Config{Profile: virtualcard.ProfileCouncil})
	_, card, _ := insert(b, vc)
	ctx := context.Background()
	aid := cardreader.DefaultCouncilProfile().AID
	cmd := cardreader.Command{INS: 0xA4, P1: 0x04, Data: aid, Ne: 256}
	raw, _ := cmd.Marshal(false)

	b.Run("cardreader", func(b *testing.B) {
		for b.Loop() {
			if _, err := card.Transmit(ctx, cmd); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rt/s")
	})
	b.Run("scard", func(b *testing.B) {
		sc, err := scard.EstablishContext()
		if err != nil {
			b.Fatal(err)
		}
		defer sc.Release()
		h, err := sc.Connect(vpcdReader, scard.ShareShared, scard.ProtocolAny)
		if err != nil {
			b.Fatal(err)
		}
		defer h.Disconnect(scard.LeaveCard)
		for b.Loop() {
			r, err := h.Transmit(raw)
			if err != nil || len(r) < 2 || r[len(r)-2] != 0x90 {
				b.Fatalf("%X %v", r, err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rt/s")
	})
	// interleaved alternates blocks of 50 round trips of each, so that load from other processes on a
	// shared machine hits both alike; it reports both rates and their ratio.
	b.Run("interleaved", func(b *testing.B) {
		sc, err := scard.EstablishContext()
		if err != nil {
			b.Fatal(err)
		}
		defer sc.Release()
		h, err := sc.Connect(vpcdReader, scard.ShareShared, scard.ProtocolAny)
		if err != nil {
			b.Fatal(err)
		}
		defer h.Disconnect(scard.LeaveCard)
		var tm, ts time.Duration
		var n int
		mohr := func() {
			t0 := time.Now()
			for range 50 {
				if _, err := card.Transmit(ctx, cmd); err != nil {
					b.Fatal(err)
				}
			}
			tm += time.Since(t0)
		}
		bare := func() {
			t0 := time.Now()
			for range 50 {
				if r, err := h.Transmit(raw); err != nil || len(r) < 2 {
					b.Fatal(err)
				}
			}
			ts += time.Since(t0)
		}
		for i := 0; b.Loop(); i++ {
			if i%2 == 0 { // alternate which goes first
				mohr()
				bare()
			} else {
				bare()
				mohr()
			}
			n += 50
		}
		b.ReportMetric(float64(n)/tm.Seconds(), "cardreader-rt/s")
		b.ReportMetric(float64(n)/ts.Seconds(), "scard-rt/s")
		b.ReportMetric(ts.Seconds()/tm.Seconds(), "ratio")
	})
}

// BenchmarkCouncilSign measures one on-card signature (SELECT, VERIFY, MSE:SET, PSO:CDS, and the
// host-side verification) and reports the round trip of each step and the virtual card's own compute
// time for it, per signature.
func BenchmarkCouncilSign(b *testing.B) {
	vc := newVirtual(b, virtualcard.Config{Profile: virtualcard.ProfileCouncil})
	_, card, _ := insert(b, vc)
	ctx := context.Background()
	cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
	if err != nil {
		b.Fatal(err)
	}
	signer, err := cc.SigningKey(ctx, pinFunc("123456", nil))
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("benchmark"))
	b.Run("sign", func(b *testing.B) {
		var mu sync.Mutex
		rt := map[byte]time.Duration{}
		card.SetTrace(func(ins byte, _ uint16, d time.Duration) {
			mu.Lock()
			rt[ins] += d
			mu.Unlock()
		})
		defer card.SetTrace(nil)
		vc.ResetStats()
		for b.Loop() {
			if _, err := signer.Sign(nil, d[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
		n := float64(b.N)
		names := map[byte]string{0xA4: "SELECT", 0x20: "VERIFY", 0x22: "MSE", 0x2A: "PSO"}
		stats := vc.Stats()
		var inss []int
		for ins := range rt {
			inss = append(inss, int(ins))
		}
		sort.Ints(inss)
		for _, i := range inss {
			ins := byte(i)
			b.ReportMetric(float64(rt[ins].Microseconds())/n, fmt.Sprintf("%s-rt-µs/op", names[ins]))
			b.ReportMetric(float64(stats[ins].Total.Microseconds())/n, fmt.Sprintf("%s-card-µs/op", names[ins]))
		}
		b.ReportMetric(n/b.Elapsed().Seconds(), "sig/s")
	})
}
