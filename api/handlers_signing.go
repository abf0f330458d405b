package api

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ingestResult is the answer of POST /v1/prescriptions.
type ingestResult struct {
	Report       json.RawMessage `json:"report"`
	SealedReport []byte          `json:"sealedReport"` // base64 of the CMS-sealed report
}

func (s *Server) handleIngest(w http.ResponseWriter, r *http.Request) {
	body, err := readAll(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, _ := IdentityFrom(r.Context())
	t0 := time.Now()
	sealed, report, err := s.svc.Ingestor.Ingest(r.Context(), body, id)
	// W3C Server Timing: the exchange's own processing time, so a client (the physician's agent) can tell
	// it from the network's.
	w.Header().Set("Server-Timing", fmt.Sprintf("ingest;dur=%.3f", float64(time.Since(t0).Microseconds())/1000))
	var iv invalidError
	if err != nil && errors.As(err, &iv) && iv.Invalid() && json.Valid(report) && len(sealed) > 0 {
		// A prescription that fails validation is refused, but the sealed report saying why is the caller's
		// evidence: it goes back with 422 rather than as a bare problem document.
		writeJSON(w, http.StatusUnprocessableEntity, ingestResult{Report: report, SealedReport: sealed})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !json.Valid(report) {
		s.fail(w, r, errBadReport)
		return
	}
	// The ingestResult document, written directly: the report is JSON already (checked just above) and goes in
	// as it is, the sealed report as base64, as encoding/json would write them, without re-encoding the report.
	out := make([]byte, 0, len(report)+base64.StdEncoding.EncodedLen(len(sealed))+32)
	out = append(out, `{"report":`...)
	out = append(out, report...)
	out = append(out, `,"sealedReport":"`...)
	out = base64.StdEncoding.AppendEncode(out, sealed)
	out = append(out, "\"}\n"...)
	w.Header().Set("Cache-Control", "no-store")
	writeBytes(w, http.StatusCreated, ctJSON, out)
}

type internalError string

func (e internalError) Error() string { return string(e) }

// errBadReport: a service returned a report that is not JSON; a bug, answered 500.
const errBadReport = internalError("api: service returned a report that is not JSON")

func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request) {
	body, err := readAll(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	report, err := s.svc.Verifier.Verify(r.Context(), body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var ind struct {
		Indication string `json:"indication"`
	}
	if json.Unmarshal(report, &ind) != nil {
		s.fail(w, r, errBadReport)
		return
	}
	s.metrics.verified("api", ind.Indication)
	writeBytes(w, http.StatusOK, ctJSON, report)
}

// handleVerifySealed answers the validation report sealed by the exchange (application/cms).
func (s *Server) handleVerifySealed(w http.ResponseWriter, r *http.Request) {
	sv, ok := s.svc.Verifier.(SealingVerifier)
	if !ok { // the route's needs already refused this; keep the handler safe on its own
		s.problem(w, probNotImplemented, "")
		return
	}
	body, err := readAll(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sealed, report, err := sv.VerifySealed(r.Context(), body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var ind struct {
		Indication string `json:"indication"`
	}
	if json.Unmarshal(report, &ind) != nil || len(sealed) == 0 {
		s.fail(w, r, errBadReport)
		return
	}
	s.metrics.verified("api", ind.Indication)
	w.Header().Set("Cache-Control", "no-store")
	writeBytes(w, http.StatusOK, ctCMS, sealed)
}

// flushWriter flushes after every write, so reports stream to the client as they are made.
type flushWriter struct {
	bw      *bufio.Writer
	rc      *http.ResponseController
	started bool
	w       http.ResponseWriter
}

func (f *flushWriter) Write(p []byte) (int, error) {
	if !f.started {
		f.started = true
		f.w.Header().Set("Content-Type", ctNDJSON)
		f.w.Header().Set("Cache-Control", "no-store")
		f.w.WriteHeader(http.StatusOK)
	}
	return f.bw.Write(p)
}

func (f *flushWriter) flush() {
	if f.started {
		_ = f.bw.Flush()
		_ = f.rc.Flush()
	}
}

// handleVerifyBatch streams NDJSON in and out. Before the first output byte an error is a problem document;
// after it the response simply ends (the client sees fewer lines than it sent and a truncated stream), and the
// access log records the error.
func (s *Server) handleVerifyBatch(w http.ResponseWriter, r *http.Request) {
	fw := &flushWriter{w: w, rc: http.NewResponseController(w)}
	// Answers stream back while the request's lines still arrive; HTTP/2 is full duplex already, HTTP/1.1
	// needs asking (without it net/http may close the body at the first answer).
	_ = fw.rc.EnableFullDuplex()
	fw.bw = bufio.NewWriterSize(writerFunc(func(p []byte) (int, error) {
		n, err := w.Write(p)
		if err == nil {
			_ = fw.rc.Flush()
		}
		return n, err
	}), 32*kib)
	var opt BatchOptions
	if v := r.URL.Query().Get("from_line"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			s.fail(w, r, malformed("from_line must be a line number (1 or more)"))
			return
		}
		opt.FromLine = n
	}
	err := s.svc.Batch.VerifyNDJSON(r.Context(), r.Body, fw, opt)
	if err != nil && !fw.started && errors.Is(err, bufio.ErrTooLong) {
		// One NDJSON line is longer than the batch verifier reads (a whole signature per line): the request,
		// not the server, is at fault (RFC 9110 §15.5.14).
		s.noteError(r, err, "")
		s.problem(w, probTooLarge, "an NDJSON line is longer than the batch verifier accepts")
		return
	}
	if err != nil && !fw.started {
		s.fail(w, r, err)
		return
	}
	if err != nil {
		// Headers and some lines are out; abort the connection so the client sees a broken stream rather than
		// a short one that looks complete.
		s.noteError(r, err, "")
		fw.flush()
		panic(http.ErrAbortHandler)
	}
	if !fw.started {
		w.Header().Set("Content-Type", ctNDJSON)
		w.WriteHeader(http.StatusOK)
	}
	fw.flush()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (s *Server) handleUpgrade(w http.ResponseWriter, r *http.Request) {
	level := r.URL.Query().Get("level")
	if level != "B-T" && level != "B-LT" && level != "B-LTA" {
		s.fail(w, r, malformed("level must be B-T, B-LT or B-LTA"))
		return
	}
	body, err := readAll(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.svc.Upgrader.Upgrade(r.Context(), body, level)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeBytes(w, http.StatusOK, ctCMS, out)
}
