package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/mohr-hix/mohr/signing"
)

// remoteBatch is `mohr verify --server`: the documents go to the exchange's POST /v1/verify/batch (which
// consults its registry and revocation data), the result lines, in input order and numbered, go to out. With
// resume, out already holds the lines of an interrupted run: a cut last line is dropped, and the request
// asks only for the lines after the last whole one (from_line), so no document is answered twice and none is
// missed. The last line of out is a summary over every result line it holds.
type remoteBatch struct {
	c      *apiRegistry // the mTLS client and the exchange's base URL
	inputs []string     // one .ndjson file or "-", or .p7s files and directories
	out    string       // result file ("" or "-": standard output, no resume)
	resume bool
}

// batchLineJSON is what the CLI reads of a result line.
type batchLineJSON struct {
	signing.BatchLine
	Summary *signing.BatchSummary `json:"summary"`
}

func (rb *remoteBatch) run(ctx context.Context, stderr io.Writer) (signing.BatchSummary, error) {
	var sum signing.BatchSummary
	sum.FromLine = 1
	var w io.Writer = os.Stdout
	if rb.out != "" && rb.out != "-" {
		f, last, err := rb.openOut(&sum)
		if err != nil {
			return sum, err
		}
		defer f.Close()
		w = f
		if last > 0 {
			fmt.Fprintf(stderr, "verify: resuming after line %d (%d result lines kept in %s)\n", last, sum.Lines, rb.out)
		}
	} else if rb.resume {
		return sum, errors.New("verify: --resume needs --out FILE (the results of the interrupted run)")
	}
	from := sum.LastLine + 1
	body, werr := rb.body(ctx)
	req, err := http.NewRequestWithContext(ctx, "POST", rb.c.base+"/v1/verify/batch?from_line="+strconv.Itoa(from), body)
	if err != nil {
		return sum, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := rb.c.c.Do(req)
	if err != nil {
		return sum, transportError("verify --server", rb.c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return sum, exchangeError("verify --server", resp, b)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	br := bufio.NewReaderSize(resp.Body, 256<<10)
	var server *signing.BatchSummary
	got, expect := 0, from
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var l batchLineJSON
			if jerr := json.Unmarshal(line, &l); jerr != nil {
				return sum, fmt.Errorf("verify --server: the exchange sent a line that is not JSON after line %d", expect-1)
			}
			if l.Summary != nil {
				server = l.Summary
				continue
			}
			if l.Line < expect || server != nil {
				return sum, fmt.Errorf("verify --server: the exchange answered line %d out of order (expected %d)", l.Line, expect)
			}
			expect = l.Line + 1
			got++
			sum.Add(&l.BatchLine)
			if _, err := bw.Write(line); err != nil {
				return sum, fmt.Errorf("verify: write %s: %w", rb.out, err)
			}
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			bw.Flush()
			return sum, fmt.Errorf("verify --server: the answer was cut after line %d (%v): run the same command with --resume", expect-1, err)
		}
	}
	if e := <-werr; e != nil {
		return sum, e
	}
	if server == nil || server.Lines != got {
		bw.Flush()
		return sum, fmt.Errorf("verify --server: the answer was cut after line %d: run the same command with --resume", expect-1)
	}
	enc, _ := json.Marshal(struct {
		Summary signing.BatchSummary `json:"summary"`
	}{sum})
	bw.Write(append(enc, '\n'))
	if err := bw.Flush(); err != nil {
		return sum, fmt.Errorf("verify: write %s: %w", rb.out, err)
	}
	return sum, nil
}

// openOut opens the result file: new, or with resume the existing one cut after its last whole result line
// (a summary line is dropped too: it is written again at the end), its lines counted into sum.
func (rb *remoteBatch) openOut(sum *signing.BatchSummary) (*os.File, int, error) {
	if !rb.resume {
		f, err := os.OpenFile(rb.out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, 0, fmt.Errorf("verify: --out: %w", err)
		}
		return f, 0, nil
	}
	f, err := os.OpenFile(rb.out, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("verify: --out: %w", err)
	}
	br := bufio.NewReaderSize(f, 256<<10)
	var keep int64
	last := 0
	for {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 || line[len(line)-1] != '\n' {
			break // end of file, or a line cut by the interruption
		}
		var l batchLineJSON
		if json.Unmarshal(line, &l) != nil || l.Summary != nil || l.Line != last+1 {
			break
		}
		last = l.Line
		sum.Add(&l.BatchLine)
		keep += int64(len(line))
		if err != nil {
			break
		}
	}
	if err := f.Truncate(keep); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("verify: --out: %w", err)
	}
	if _, err := f.Seek(keep, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("verify: --out: %w", err)
	}
	return f, last, nil
}

// body streams the request: an NDJSON file (or standard input) as it is, or one line {"name","cms"} per
// signature file, in the order verifyExpand lists them (the same at every run, so line numbers are stable).
// The error of producing it arrives on the channel when the body is done.
func (rb *remoteBatch) body(ctx context.Context) (io.Reader, <-chan error) {
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := rb.writeBody(pw)
		if err != nil {
			pw.CloseWithError(err)
		} else {
			pw.Close()
		}
		errc <- err
	}()
	return pr, errc
}

func (rb *remoteBatch) writeBody(w io.Writer) error {
	if len(rb.inputs) == 1 && (rb.inputs[0] == "-" || strings.HasSuffix(rb.inputs[0], ".ndjson") || strings.HasSuffix(rb.inputs[0], ".jsonl")) {
		in := io.Reader(os.Stdin)
		if rb.inputs[0] != "-" {
			f, err := os.Open(rb.inputs[0])
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			defer f.Close()
			in = f
		}
		_, err := io.Copy(w, in)
		return err
	}
	files, err := verifyExpand(rb.inputs)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	for _, p := range files {
		der, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		line, _ := json.Marshal(struct {
			Name string `json:"name"`
			CMS  []byte `json:"cms"`
		}{p, der})
		bw.Write(line)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// printSummary writes the batch summary for a person.
func printSummary(w io.Writer, s signing.BatchSummary) {
	fmt.Fprintf(w, "%d lines (%d to %d), %d documents, %d duplicates\n", s.Lines, s.FromLine, s.LastLine, s.Documents, s.Duplicates)
	for _, k := range signing.Sorted(s.ByIndication) {
		fmt.Fprintf(w, "  %-40s %d\n", k, s.ByIndication[k])
	}
	for _, k := range signing.Sorted(s.BySubIndication) {
		fmt.Fprintf(w, "  %-40s %d\n", k, s.BySubIndication[k])
	}
	for _, k := range signing.Sorted(s.InputErrors) {
		fmt.Fprintf(w, "  input error %-28s %d\n", k, s.InputErrors[k])
	}
}
