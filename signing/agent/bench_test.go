package agent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/signing/agent"
)

// Benchmarks of the agent with the virtual card through the machine's pcscd (vpcd), from the EMR's HTTP
// request to the signed B-B in the answer. They report, besides ns/op:
//
//	p50-ms, p95-ms        request to answer, per prescription
//	cardio-p50-ms         the on-card signature call (SELECT, VERIFY, MSE:SET, PSO through pcscd)
//	pso-p50-ms            the PSO: COMPUTE DIGITAL SIGNATURE round trip alone
//	card-compute-ms       the virtual card's own time computing the signature (inside the card)
//	overhead-p50-ms, -p95 single: Mohr's time per prescription beyond the card I/O (request minus card I/O)
//	per-rx-ms             batch: the batch's wall time / 100 (p50 over batches)
//	overhead-per-rx-*     batch: (wall time - card I/O of its 100 signatures) / 100, p50 and p95 over batches
//
// In a batch, p50-ms and p95-ms are the intervals between consecutive result lines.
//
// Run (docs/agent.md):
//
//	go test -run '^$' -bench 'CardSign|CardBatch100' -benchtime 50x -count 3 ./signing/agent/

type latencies struct {
	total, cardIO, pso, overhead []time.Duration
}

func (l *latencies) add(total time.Duration, t agent.Timings) {
	l.total = append(l.total, total)
	l.cardIO = append(l.cardIO, t.CardIO)
	l.pso = append(l.pso, t.CardSign)
	l.overhead = append(l.overhead, total-t.CardIO)
}

func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i].Microseconds()) / 1000
}

func (l *latencies) report(b *testing.B, cardCompute time.Duration, perDocOverhead bool) {
	b.ReportMetric(pct(l.total, .50), "p50-ms")
	b.ReportMetric(pct(l.total, .95), "p95-ms")
	b.ReportMetric(pct(l.cardIO, .50), "cardio-p50-ms")
	b.ReportMetric(pct(l.cardIO, .95), "cardio-p95-ms")
	b.ReportMetric(pct(l.pso, .50), "pso-p50-ms")
	b.ReportMetric(float64(cardCompute.Microseconds())/1000, "card-compute-ms")
	if perDocOverhead {
		b.ReportMetric(pct(l.overhead, .50), "overhead-p50-ms")
		b.ReportMetric(pct(l.overhead, .95), "overhead-p95-ms")
	}
}

// reportAPDUs reports the command APDUs the card answered per signature and the VERIFY APDUs in all (one per
// comfort session, plus the logout when a session ends).
func reportAPDUs(b *testing.B, vc *virtualcard.Card) {
	var all int
	st := vc.Stats()
	for _, s := range st {
		all += s.Count
	}
	b.ReportMetric(float64(all)/float64(max(1, st[0x2A].Count)), "apdus/sig")
	b.ReportMetric(float64(st[0x20].Count), "verify-apdus")
}

func ensureSession(b *testing.B, e *env, need int) {
	if inf, ok := e.agent.Session(); ok && inf.Remaining >= need {
		return
	}
	b.StopTimer()
	e.agent.EndSession(b.Context())
	e.startSession(250, time.Hour)
	b.StartTimer()
}

func benchSingle(b *testing.B, submit bool) {
	e, vc := cardEnv(b, nil)
	body := func() []byte {
		d, _ := json.Marshal(map[string]any{"id": "rx", "document": e.rx(), "requireSession": true, "submit": submit})
		return d
	}
	// Warm up: session, connections, caches.
	ensureSession(b, e, 5)
	for i := 0; i < 3; i++ {
		postSign(b, e, body())
	}
	vc.ResetStats()
	var l latencies
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ensureSession(b, e, 1)
		b.StopTimer()
		req := body()
		b.StartTimer()
		t0 := time.Now()
		line := postSign(b, e, req)
		l.add(time.Since(t0), line.Timings)
		if submit && line.Indication != "TOTAL_PASSED" {
			b.Fatalf("indication %s", line.Indication)
		}
	}
	b.StopTimer()
	st := vc.Stats()[0x2A]
	l.report(b, st.Total/time.Duration(max(1, st.Count)), true)
	reportAPDUs(b, vc)
}

func postSign(b *testing.B, e *env, body []byte) agent.ResultLine {
	req, _ := http.NewRequest("POST", e.api.URL+"/v1/sign", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set(agent.ClientHeader, "bench")
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.api.Client().Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		b.Fatalf("sign: %d %s", resp.StatusCode, out)
	}
	var line agent.ResultLine
	if err := json.Unmarshal(out, &line); err != nil {
		b.Fatal(err)
	}
	return line
}

// BenchmarkCardSign: one prescription per request, in a comfort session, without and with submission to an
// in-process exchange (signing.Ingestor: B-T, B-LT, sealed report).
func BenchmarkCardSign(b *testing.B) {
	b.Run("sign-only", func(b *testing.B) { benchSingle(b, false) })
	b.Run("sign+submit", func(b *testing.B) { benchSingle(b, true) })
}

// BenchmarkCardBatch100: one request with 100 prescriptions (NDJSON out). Per-prescription figures: the
// batch's time divided by 100 (per-rx-ms), and the time between consecutive result lines (p50/p95).
func BenchmarkCardBatch100(b *testing.B) {
	e, vc := cardEnv(b, nil)
	var docs [][]byte
	for i := 0; i < 100; i++ {
		docs = append(docs, e.rx())
	}
	var ds []map[string]any
	for i, d := range docs {
		ds = append(ds, map[string]any{"id": fmt.Sprint(i), "document": d})
	}
	body, _ := json.Marshal(map[string]any{"documents": ds, "requireSession": true, "submit": false})
	// run returns the batch's wall time and the card I/O summed over its documents.
	run := func(l *latencies) (time.Duration, time.Duration) {
		req, _ := http.NewRequest("POST", e.api.URL+"/v1/batch", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.token)
		req.Header.Set(agent.ClientHeader, "bench")
		req.Header.Set("Content-Type", "application/json")
		t0 := time.Now()
		resp, err := e.api.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			out, _ := io.ReadAll(resp.Body)
			b.Fatalf("batch: %d %s", resp.StatusCode, out)
		}
		dec := json.NewDecoder(resp.Body)
		last, n := t0, 0
		var cardIO time.Duration
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			var line agent.ResultLine
			json.Unmarshal(raw, &line)
			if bytes.Contains(raw, []byte(`"done":true`)) {
				continue
			}
			if line.Status != "signed" {
				b.Fatalf("line %s", raw)
			}
			n++
			cardIO += line.Timings.CardIO
			if l != nil {
				l.add(now.Sub(last), line.Timings)
			}
			last = now
		}
		if n != 100 {
			b.Fatalf("%d lines", n)
		}
		return time.Since(t0), cardIO
	}
	ensureSession(b, e, 100)
	run(nil)
	vc.ResetStats()
	var l latencies
	var perRx, overhead []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ensureSession(b, e, 100)
		wall, cardIO := run(&l)
		perRx = append(perRx, wall/100)
		overhead = append(overhead, (wall-cardIO)/100)
	}
	b.StopTimer()
	st := vc.Stats()[0x2A]
	l.report(b, st.Total/time.Duration(max(1, st.Count)), false)
	reportAPDUs(b, vc)
	b.ReportMetric(pct(perRx, .50), "per-rx-ms")
	b.ReportMetric(pct(overhead, .50), "overhead-per-rx-p50-ms")
	b.ReportMetric(pct(overhead, .95), "overhead-per-rx-p95-ms")
}
