package signing

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// MaxBatchLine is the default bound of one NDJSON input line (16 MiB): a whole signature, base64, per line.
const MaxBatchLine = 16 << 20

// ndjsonIn is one line of the NDJSON input: a name and the DER signature (base64, as encoding/json writes
// []byte). Other members are ignored (a client may carry its own claim number).
type ndjsonIn struct {
	Name string `json:"name"`
	CMS  []byte `json:"cms"`
}

// Input errors: an input line that holds no document to verify gets one of these kinds, each with its own
// reason, in BatchLine.InputError.
const (
	InputEmpty     = "empty-line"    // an empty (or blank) line
	InputNotJSON   = "not-json"      // not a JSON value
	InputBadFields = "bad-fields"    // JSON, but not an object with string "name" and base64 "cms"
	InputBadBase64 = "bad-base64"    // "cms" is not standard base64
	InputNoCMS     = "no-cms"        // "cms" missing or empty
	InputNotCMS    = "not-cms"       // "cms" decodes to bytes that are not a DER SEQUENCE (not a CMS ContentInfo)
	InputTooLong   = "line-too-long" // longer than the line limit
)

var inputReasons = map[string]string{
	InputEmpty:     "empty line",
	InputNotJSON:   "line is not JSON",
	InputBadFields: `line is not a JSON object with a string "name" and a base64 "cms"`,
	InputBadBase64: `"cms" is not base64`,
	InputNoCMS:     `line has no "cms"`,
	InputNotCMS:    `"cms" is not a CMS signature (DER ContentInfo)`,
	InputTooLong:   "line is longer than the batch line limit",
}

// BatchLine is one result line of VerifyNDJSON: the report of the document on input line Line (1-based), or
// why that line holds no document (InputError, with Reason; an empty line has no indication, the others are
// TOTAL_FAILED/FORMAT_FAILURE), and DuplicateOf, the first earlier line with the same signature bytes (the
// copy is verified like any line: a duplicate claim is flagged, not silently merged).
type BatchLine struct {
	Line        int    `json:"line"`
	InputError  string `json:"inputError,omitempty"`
	DuplicateOf int    `json:"duplicateOf,omitempty"`
	*Report
}

// BatchSummary is the closing line of VerifyNDJSON ({"summary": ...}): counts over the lines answered, from
// FromLine to LastLine. Its presence says the response is complete.
type BatchSummary struct {
	FromLine        int            `json:"fromLine"`
	LastLine        int            `json:"lastLine"`
	Lines           int            `json:"lines"`
	Documents       int            `json:"documents"`
	Duplicates      int            `json:"duplicates"`
	ByIndication    map[string]int `json:"byIndication"`
	BySubIndication map[string]int `json:"bySubIndication"` // "INDICATION/SUB_INDICATION"
	InputErrors     map[string]int `json:"inputErrors"`
}

// Add counts one result line.
func (s *BatchSummary) Add(l *BatchLine) {
	if s.ByIndication == nil {
		s.ByIndication, s.BySubIndication, s.InputErrors = map[string]int{}, map[string]int{}, map[string]int{}
	}
	s.Lines++
	if l.Line > s.LastLine {
		s.LastLine = l.Line
	}
	if l.InputError != "" {
		s.InputErrors[l.InputError]++
	}
	if l.DuplicateOf != 0 {
		s.Duplicates++
	}
	if l.Report == nil || l.Indication == "" {
		return
	}
	if l.InputError == "" {
		s.Documents++
	}
	s.ByIndication[string(l.Indication)]++
	if l.SubIndication != "" {
		s.BySubIndication[string(l.Indication)+"/"+string(l.SubIndication)]++
	}
}

// Stats converts the summary to the older counts (input errors count as failed documents, empty lines not).
func (s *BatchSummary) Stats() BatchStats {
	st := BatchStats{Passed: s.ByIndication[string(TotalPassed)], Failed: s.ByIndication[string(TotalFailed)],
		Indeterminate: s.ByIndication[string(Indeterminate)]}
	st.Total = st.Passed + st.Failed + st.Indeterminate
	return st
}

// MarshalJSON keeps the maps present (as {}) when empty.
func (s BatchSummary) MarshalJSON() ([]byte, error) {
	type plain BatchSummary
	p := plain(s)
	for _, m := range []*map[string]int{&p.ByIndication, &p.BySubIndication, &p.InputErrors} {
		if *m == nil {
			*m = map[string]int{}
		}
	}
	return json.Marshal(p)
}

// Sorted returns the keys of m in order (for people-facing output).
func Sorted(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// BatchOptions shapes VerifyNDJSONWith.
type BatchOptions struct {
	// FromLine resumes an interrupted batch: lines before it are read (so duplicates of them are still
	// recognised) but neither verified nor answered. Zero or 1: from the start.
	FromLine int
	// MaxLine bounds one input line in bytes; MaxBatchLine when zero. A longer line is answered
	// line-too-long and skipped; the batch goes on.
	MaxLine int
}

// batchSlot is one input line on its way through the pool; the writer answers slots in input order.
type batchSlot struct {
	BatchLine
	der  []byte
	name string
	done chan struct{}
}

// VerifyNDJSON reads lines {"name": ..., "cms": "<base64 DER>"} from r and writes one result line (BatchLine)
// per input line to w, in input order, then a closing {"summary": BatchSummary} line. Lines that hold no
// document are answered with their own InputError; a repeated signature is flagged DuplicateOf. Input order
// lets a client that lost the stream resume after the last whole line it holds (BatchOptions.FromLine). An
// error means reading or writing failed (no summary line is written then).
func (b *BatchVerifier) VerifyNDJSON(ctx context.Context, r io.Reader, w io.Writer) (BatchStats, error) {
	sum, err := b.VerifyNDJSONWith(ctx, r, w, BatchOptions{})
	return sum.Stats(), err
}

// VerifyNDJSONWith is VerifyNDJSON with options (resumption, line limit).
func (b *BatchVerifier) VerifyNDJSONWith(ctx context.Context, r io.Reader, w io.Writer, opt BatchOptions) (BatchSummary, error) {
	ctx, cancel := context.WithCancel(withRegistryMemo(ctx))
	defer cancel()
	if opt.MaxLine <= 0 {
		opt.MaxLine = MaxBatchLine
	}
	if opt.FromLine < 1 {
		opt.FromLine = 1
	}
	nw := b.workers()
	jobs := make(chan *batchSlot, 4*nw)
	order := make(chan *batchSlot, 64*nw) // bounds the documents in flight; answers leave in this order
	for i := 0; i < nw; i++ {
		go func() {
			for s := range jobs {
				if ctx.Err() == nil {
					s.Report = b.Verifier.Verify(ctx, s.der)
					s.Report.Name = s.name
				}
				s.der = nil
				close(s.done)
			}
		}()
	}
	var readErr error
	go func() {
		defer close(order)
		defer close(jobs)
		readErr = b.readNDJSON(ctx, r, opt, jobs, order)
	}()
	sum := BatchSummary{FromLine: opt.FromLine, LastLine: opt.FromLine - 1}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	var writeErr error
	for s := range order {
		<-s.done
		if s.Report == nil { // cancelled before verification
			continue
		}
		sum.Add(&s.BatchLine)
		if writeErr == nil {
			writeErr = enc.Encode(&s.BatchLine)
			if writeErr != nil {
				cancel()
			}
		}
	}
	if writeErr == nil && readErr == nil && ctx.Err() == nil {
		writeErr = enc.Encode(struct {
			Summary BatchSummary `json:"summary"`
		}{sum})
	}
	if err := bw.Flush(); writeErr == nil {
		writeErr = err
	}
	switch {
	case readErr != nil:
		return sum, fmt.Errorf("signing: read NDJSON: %w", readErr)
	case writeErr != nil:
		return sum, fmt.Errorf("signing: write NDJSON: %w", writeErr)
	}
	return sum, ctx.Err()
}

// readNDJSON reads the input line by line, answers lines that hold no document and duplicates itself, and
// sends the rest to the workers; every slot goes to order in input order.
func (b *BatchVerifier) readNDJSON(ctx context.Context, r io.Reader, opt BatchOptions, jobs, order chan<- *batchSlot) error {
	br := bufio.NewReaderSize(r, 256<<10)
	seen := map[[sha256.Size]byte]int{}
	var buf []byte
	for n := 1; ; n++ {
		line, tooLong, err := readLine(br, &buf, opt.MaxLine)
		if err == io.EOF && len(buf) == 0 && !tooLong {
			return nil // the end; a last line without a newline (even a lone "\r") still counts
		}
		if err != nil && err != io.EOF {
			return err
		}
		s := &batchSlot{BatchLine: BatchLine{Line: n}, done: make(chan struct{})}
		var in ndjsonIn
		switch {
		case tooLong:
			s.InputError = InputTooLong
		case len(bytes.TrimSpace(line)) == 0:
			s.InputError = InputEmpty
		default:
			if e := json.Unmarshal(line, &in); e != nil {
				var syn *json.SyntaxError
				var b64 base64.CorruptInputError
				switch {
				case errors.As(e, &b64):
					s.InputError = InputBadBase64
				case errors.As(e, &syn) || !json.Valid(line):
					s.InputError = InputNotJSON
				default:
					s.InputError = InputBadFields
				}
			} else if len(in.CMS) == 0 {
				s.InputError = InputNoCMS
			} else if in.CMS[0] != 0x30 {
				s.InputError = InputNotCMS
			}
		}
		s.name = in.Name
		if s.InputError == "" {
			// Duplicates by the signature's bytes, remembered by line (32 bytes and an int per document).
			h := sha256.Sum256(in.CMS)
			if first, dup := seen[h]; dup {
				s.DuplicateOf = first
			} else {
				seen[h] = n
			}
		}
		if n >= opt.FromLine {
			if s.InputError != "" {
				s.Report = &Report{Name: in.Name, Reason: inputReasons[s.InputError]}
				if s.InputError != InputEmpty {
					s.Indication, s.SubIndication = TotalFailed, FormatFailure
				}
				close(s.done)
			}
			select {
			case order <- s:
			case <-ctx.Done():
				return nil
			}
			if s.InputError == "" {
				s.der = in.CMS
				select {
				case jobs <- s:
				case <-ctx.Done():
					close(s.done)
					return nil
				}
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// readLine reads one line (without its end of line: \n or \r\n) into *buf. A line longer than max is read to
// its end and dropped: tooLong, no bytes. At the end of input err is io.EOF (with the last line, if any).
func readLine(br *bufio.Reader, buf *[]byte, max int) (line []byte, tooLong bool, err error) {
	*buf = (*buf)[:0]
	for {
		frag, e := br.ReadSlice('\n')
		if !tooLong {
			if len(*buf)+len(frag) > max+2 { // room for the \r\n
				tooLong, *buf = true, (*buf)[:0]
			} else {
				*buf = append(*buf, frag...)
			}
		}
		if e == bufio.ErrBufferFull {
			continue
		}
		if e != nil && e != io.EOF {
			return nil, false, e
		}
		if tooLong {
			return nil, true, e
		}
		l := bytes.TrimSuffix(bytes.TrimSuffix(*buf, []byte("\n")), []byte("\r"))
		if len(l) > max {
			return nil, true, e
		}
		return l, false, e
	}
}
