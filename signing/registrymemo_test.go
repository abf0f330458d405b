package signing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
)

// countingRegistry counts lookups; fail makes every lookup fail as an unreachable registry would.
type countingRegistry struct {
	inner PhysicianRegistry
	calls atomic.Int64
	fail  atomic.Bool
}

func (c *countingRegistry) Registration(ctx context.Context, n string) (Registration, error) {
	c.calls.Add(1)
	if c.fail.Load() {
		return Registration{}, errors.New("registry down")
	}
	return c.inner.Registration(ctx, n)
}

// TestBatchAsksRegistryOncePerPrescriber: a batch of many prescriptions of one physician asks the registry once;
// the next batch (a new request) asks again, so a suspension between batches is seen; a failing registry is
// not remembered: every document asks again and each is TRY_LATER, never passed.
func TestBatchAsksRegistryOncePerPrescriber(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	reg := &countingRegistry{inner: f.registry}
	bv := &BatchVerifier{Verifier: f.verifier(t, func(c *VerifierConfig) { c.Registry = reg }), Workers: 3}
	var lines []string
	for i := 0; i < 20; i++ {
		b, _ := json.Marshal(ndjsonIn{Name: "d", CMS: f.signBB(t, f.doc, f.physician)})
		lines = append(lines, string(b))
	}
	in := strings.Join(lines, "\n") + "\n"
	run := func() BatchSummary {
		t.Helper()
		var out bytes.Buffer
		sum, err := bv.VerifyNDJSONWith(ctx, strings.NewReader(in), &out, BatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	if sum := run(); sum.ByIndication[string(TotalPassed)] != 20 {
		t.Fatalf("first batch: %+v", sum)
	}
	// Workers that start together may each ask before the first answer is remembered: at most one per worker.
	if n := reg.calls.Load(); n < 1 || n > 3 {
		t.Fatalf("one prescriber, 20 documents: %d registry lookups, want 1 (at most one per worker)", n)
	}
	before := reg.calls.Load()
	run()
	if n := reg.calls.Load() - before; n < 1 || n > 3 {
		t.Fatalf("second batch: %d registry lookups, want a fresh lookup (1..3)", n)
	}
	reg.fail.Store(true)
	before = reg.calls.Load()
	sum := run()
	if n := reg.calls.Load() - before; n != 20 {
		t.Fatalf("failing registry: %d lookups, want one per document (failures are not remembered)", n)
	}
	if sum.ByIndication[string(TotalPassed)] != 0 || sum.BySubIndication[string(Indeterminate)+"/"+string(TryLater)] != 20 {
		t.Fatalf("failing registry: %+v", sum)
	}
}

// TestParseBundleMemo: within one request the FHIR Bundle is parsed once per content, and only the same bytes
// get the remembered parse: other content, or the caller's buffer changed in place after the parse, is parsed
// again (the memo keeps its own copy of the bytes); content that does not parse is never remembered.
func TestParseBundleMemo(t *testing.T) {
	ctx := withRegistryMemo(context.Background())
	a := []byte(`{"resourceType":"Bundle","id":"rx-aaaa","type":"document","entry":[]}`)
	b := []byte(`{"resourceType":"Bundle","id":"rx-bbbb","type":"document","entry":[]}`)
	for _, tc := range []struct {
		in   []byte
		want string
	}{{a, "rx-aaaa"}, {a, "rx-aaaa"}, {b, "rx-bbbb"}, {a, "rx-aaaa"}} {
		got, err := parseBundle(ctx, tc.in)
		if err != nil || got.ID != tc.want {
			t.Fatalf("parse: %q %v, want %q", got.ID, err, tc.want)
		}
	}
	copy(a[bytes.Index(a, []byte("aaaa")):], "cccc") // the same buffer, changed after it was parsed
	if got, err := parseBundle(ctx, a); err != nil || got.ID != "rx-cccc" {
		t.Fatalf("buffer changed in place: %q %v", got.ID, err)
	}
	if _, err := parseBundle(ctx, []byte(`{"resourceType":`)); err == nil {
		t.Fatal("broken content parsed")
	}
	if _, err := parseBundle(ctx, []byte(`{"resourceType":`)); err == nil {
		t.Fatal("broken content parsed the second time")
	}
}
