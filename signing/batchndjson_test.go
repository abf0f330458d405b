package signing

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// batchOut is a parsed VerifyNDJSON response.
type batchOut struct {
	lines   []BatchLine
	summary *BatchSummary
}

func parseBatch(t *testing.T, out []byte) batchOut {
	t.Helper()
	var b batchOut
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if b.summary != nil {
			t.Fatalf("a line after the summary: %s", sc.Text())
		}
		var probe struct {
			Summary *BatchSummary `json:"summary"`
		}
		if err := json.Unmarshal(sc.Bytes(), &probe); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		if probe.Summary != nil {
			b.summary = probe.Summary
			continue
		}
		l := BatchLine{Report: &Report{}}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		b.lines = append(b.lines, l)
	}
	return b
}

// TestBatchNDJSONLines: every input line gets a result line with its number, in input order; lines that hold
// no document get their own kind and reason; a repeated signature is flagged; the summary counts by
// indication and sub-indication; a resumed request answers only the lines from FromLine and still flags
// duplicates of earlier lines.
func TestBatchNDJSONLines(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	bv := &BatchVerifier{Verifier: f.verifier(t, nil), Workers: 3}
	doc := func(name string, der []byte) string {
		b, _ := json.Marshal(ndjsonIn{Name: name, CMS: der})
		return string(b)
	}
	d1, d2, d3 := f.signBB(t, f.doc, f.physician), f.signBB(t, f.doc, f.physician), f.signBB(t, f.doc, f.physician)
	input := []string{
		doc("d1", d1),                    // 1
		doc("d2", d2) + "\r",             // 2: CRLF line end
		"",                               // 3
		"not json at all",                // 4
		`{"name":"x","cms":5}`,           // 5
		`{"name":"b64","cms":"!!!!"}`,    // 6
		`{"name":"nocms"}`,               // 7
		`{"name":"notcms","cms":"AAAA"}`, // 8
		`{"name":"long","cms":"` + strings.Repeat("A", 9000) + `"}`, // 9: over the 8 KiB limit below
		doc("d1-again", d1), // 10
		"   ",               // 11
		doc("d3", d3),       // 12
	}
	in := strings.Join(input, "\n") // no final newline: the last line still counts
	want := map[int]string{3: InputEmpty, 4: InputNotJSON, 5: InputBadFields, 6: InputBadBase64, 7: InputNoCMS,
		8: InputNotCMS, 9: InputTooLong, 11: InputEmpty}
	var out bytes.Buffer
	sum, err := bv.VerifyNDJSONWith(ctx, strings.NewReader(in), &out, BatchOptions{MaxLine: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	b := parseBatch(t, out.Bytes())
	if len(b.lines) != len(input) || b.summary == nil {
		t.Fatalf("%d lines, summary %v:\n%s", len(b.lines), b.summary, out.String())
	}
	reasons := map[string]bool{}
	for i, l := range b.lines {
		if l.Line != i+1 {
			t.Fatalf("line %d answered as %d (out of order)", i+1, l.Line)
		}
		if l.InputError != want[l.Line] {
			t.Errorf("line %d: inputError %q, want %q (%s)", l.Line, l.InputError, want[l.Line], l.Reason)
		}
		switch {
		case l.InputError == InputEmpty:
			if l.Indication != "" {
				t.Errorf("empty line %d has indication %s", l.Line, l.Indication)
			}
		case l.InputError != "":
			if l.Indication != TotalFailed || l.SubIndication != FormatFailure || reasons[l.Reason] {
				t.Errorf("line %d: %s/%s %q", l.Line, l.Indication, l.SubIndication, l.Reason)
			}
			reasons[l.Reason] = true
		default:
			if l.Indication != TotalPassed {
				t.Errorf("line %d: %s/%s %s", l.Line, l.Indication, l.SubIndication, l.Reason)
			}
		}
	}
	if b.lines[9].DuplicateOf != 1 || b.lines[9].Name != "d1-again" || b.lines[11].DuplicateOf != 0 {
		t.Errorf("duplicates: %+v %+v", b.lines[9], b.lines[11])
	}
	s := b.summary
	if s.FromLine != 1 || s.LastLine != 12 || s.Lines != 12 || s.Documents != 4 || s.Duplicates != 1 ||
		s.ByIndication["TOTAL_PASSED"] != 4 || s.ByIndication["TOTAL_FAILED"] != 6 ||
		s.BySubIndication["TOTAL_FAILED/FORMAT_FAILURE"] != 6 || s.InputErrors[InputEmpty] != 2 || s.InputErrors[InputTooLong] != 1 {
		t.Errorf("summary %+v", s)
	}
	if fmt.Sprint(sum) != fmt.Sprint(*s) {
		t.Errorf("returned summary %+v, written %+v", sum, *s)
	}

	// Resumed from line 10: lines 10-12 only; line 10 is still a duplicate of line 1.
	out.Reset()
	if _, err := bv.VerifyNDJSONWith(ctx, strings.NewReader(in), &out, BatchOptions{MaxLine: 8 << 10, FromLine: 10}); err != nil {
		t.Fatal(err)
	}
	b = parseBatch(t, out.Bytes())
	if len(b.lines) != 3 || b.lines[0].Line != 10 || b.lines[0].DuplicateOf != 1 || b.summary == nil ||
		b.summary.FromLine != 10 || b.summary.Lines != 3 || b.summary.Documents != 2 {
		t.Fatalf("resumed: %+v %+v", b.lines, b.summary)
	}
}

// TestBatchNDJSONCancelled: a cancelled batch ends without a summary line, so a client can tell it is cut.
func TestBatchNDJSONCancelled(t *testing.T) {
	f := newFixture(t)
	bv := &BatchVerifier{Verifier: f.verifier(t, nil), Workers: 2}
	var in strings.Builder
	der := f.signBB(t, f.doc, f.physician)
	for i := 0; i < 50; i++ {
		b, _ := json.Marshal(ndjsonIn{Name: fmt.Sprint(i), CMS: der})
		in.Write(append(b, '\n'))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	if _, err := bv.VerifyNDJSONWith(ctx, strings.NewReader(in.String()), &out, BatchOptions{}); err == nil {
		t.Fatal("no error from a cancelled batch")
	}
	if strings.Contains(out.String(), `"summary"`) {
		t.Fatalf("a cancelled batch wrote a summary: %s", out.String())
	}
}

// FuzzBatchNDJSON feeds arbitrary bytes to the NDJSON batch reader. Property: one result line per input line
// at or after FromLine, numbered consecutively in input order, then exactly one summary whose counts match the
// lines; never a panic, never an error for malformed input.
func FuzzBatchNDJSON(f *testing.F) {
	fx := newFixture(f)
	bv := &BatchVerifier{Verifier: fx.verifier(f, nil), Workers: 2}
	good, _ := json.Marshal(ndjsonIn{Name: "d", CMS: fx.signBB(f, fx.doc, fx.physician)})
	for _, s := range []string{"", "\n", "{}\n", string(good) + "\n" + string(good), "not json\r\n\n", `{"cms":"AAAA"}`,
		`{"name":1,"cms":"MA=="}` + "\n", "\xff\xfe\n{\"cms\":\"!\"}"} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, from uint8) {
		var out bytes.Buffer
		sum, err := bv.VerifyNDJSONWith(context.Background(), bytes.NewReader(in), &out, BatchOptions{FromLine: int(from % 8), MaxLine: 4 << 10})
		if err != nil {
			t.Fatalf("error on malformed input: %v", err)
		}
		// Lines of the input as readLine counts them: a final line without a newline counts, an empty tail not.
		n := bytes.Count(in, []byte("\n"))
		if len(in) > 0 && in[len(in)-1] != '\n' {
			n++
		}
		first := max(int(from%8), 1)
		want := max(n-first+1, 0)
		b := parseBatch(t, out.Bytes())
		if b.summary == nil || len(b.lines) != want || b.summary.Lines != want || sum.Lines != want {
			t.Fatalf("%d input lines from %d: %d results, summary %+v", n, first, len(b.lines), b.summary)
		}
		for i, l := range b.lines {
			if l.Line != first+i {
				t.Fatalf("result %d for line %d", i, l.Line)
			}
		}
	})
}
