package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Submission is the exchange's answer to a prescription it accepted and stored: the validation report (JSON)
// and the report sealed by the exchange (CMS, DER). A prescription the exchange refused is never a
// Submission: it is a *SubmitError with Refused set.
type Submission struct {
	// Status is the exchange's HTTP status (201 Created for POST /v1/prescriptions).
	Status       int
	Report       json.RawMessage
	SealedReport []byte
	// Indication is the report's ETSI EN 319 102-1 indication (TOTAL_PASSED, ...).
	Indication string
	// Ingestion is the exchange's own processing time, when it says (Server-Timing); zero otherwise.
	Ingestion time.Duration
	// Attempts is how many times the document was sent (more than 1 after retried 5xx answers or timeouts).
	Attempts int
}

// SubmitError says why a signed prescription is not stored at the exchange. It matches ErrSubmit, and
// ErrRefused when the exchange answered and refused it (a 4xx: retrying the same document cannot help).
type SubmitError struct {
	// Status is the exchange's HTTP status; 0 when no answer came (network failure, timeout).
	Status int
	// Refused: the exchange answered and refused the prescription; nothing was stored.
	Refused bool
	// Problem is the exchange's RFC 9457 problem document, when it sent one.
	Problem json.RawMessage
	// Report, SealedReport and Indication are the exchange's validation report when it refused the
	// prescription with one (422): the physician's evidence of why.
	Report       json.RawMessage
	SealedReport []byte
	Indication   string
	// Attempts is how many times the document was sent.
	Attempts int
	// Reason is a short, person-readable reason (no internal detail).
	Reason     string
	cause      error
	retryAfter time.Duration
}

func (e *SubmitError) Error() string {
	var b strings.Builder
	if e.Refused {
		b.WriteString("agent: the exchange refused the prescription")
	} else {
		b.WriteString("agent: submission to the exchange failed")
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Reason != "" {
		b.WriteString(": " + e.Reason)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " after %d attempts", e.Attempts)
	}
	return b.String()
}

// Is makes a SubmitError match ErrSubmit, and ErrRefused when Refused.
func (e *SubmitError) Is(target error) bool {
	return target == ErrSubmit || (e.Refused && target == ErrRefused)
}

// Unwrap returns the transport error, if any.
func (e *SubmitError) Unwrap() error { return e.cause }

// Submitter sends a signed prescription (CMS SignedData, DER) to the exchange's ingestion endpoint. It
// returns a Submission only for a prescription the exchange stored; otherwise an error (a *SubmitError from
// HTTPSubmitter).
type Submitter interface {
	Submit(ctx context.Context, cms []byte) (*Submission, error)
}

// HTTPSubmitter posts to the exchange's POST /v1/prescriptions (package api) as application/cms and reads
// its {"report": ..., "sealedReport": base64} answer. Client carries the transport security (the facility
// adapter's mTLS, or the physician's authentication certificate) and must have timeouts; NewHTTPSubmitter
// gives one.
type HTTPSubmitter struct {
	URL    string
	Client *http.Client
	// Header is added to every request (for example an access token from the facility adapter).
	Header http.Header
	// Attempts bounds how often one document is sent when the exchange fails (5xx, 408, 429) or does not
	// answer (network error, timeout): 3 when zero. The same bytes are sent each time.
	Attempts int
	// Backoff is the wait before the second attempt, doubled for each further one (500 ms when zero); a
	// Retry-After the exchange sends is followed up to 4 times Backoff.
	Backoff time.Duration
}

// NewHTTPSubmitter returns an HTTPSubmitter for url with a client that gives up after timeout (30 s when zero).
func NewHTTPSubmitter(url string, tr http.RoundTripper, timeout time.Duration) *HTTPSubmitter {
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	if tr == nil {
		tr = &http.Transport{
			Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: timeout, ForceAttemptHTTP2: true,
		}
	}
	return &HTTPSubmitter{URL: url, Client: &http.Client{Transport: tr, Timeout: timeout}}
}

// maxSubmitResponse bounds the exchange's answer.
const maxSubmitResponse = 8 << 20

type ingestAnswer struct {
	Report       json.RawMessage `json:"report"`
	SealedReport []byte          `json:"sealedReport"`
	Title        string          `json:"title"`
	Detail       string          `json:"detail"`
	Type         string          `json:"type"`
}

// Submit posts cms and returns the exchange's report when the exchange stored the prescription (2xx). A
// refusal (4xx, with or without a report) is a *SubmitError with Refused set and is not retried; a failure
// (5xx, 408, 429, no answer) is retried with the same bytes up to Attempts times, then returned as a
// *SubmitError. The caller's ctx bounds the whole, retries included.
func (h *HTTPSubmitter) Submit(ctx context.Context, cms []byte) (*Submission, error) {
	attempts := h.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	backoff := h.Backoff
	if backoff <= 0 {
		backoff = 500 * time.Millisecond
	}
	var last *SubmitError
	for n := 1; ; n++ {
		sub, serr, retry := h.once(ctx, cms)
		if serr == nil {
			sub.Attempts = n
			return sub, nil
		}
		serr.Attempts = n
		last = serr
		if !retry || n >= attempts {
			return nil, last
		}
		wait := backoff << (n - 1)
		if ra := retryAfter(serr); ra > 0 {
			wait = min(ra, 4*backoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, last
		case <-t.C:
		}
	}
}

// once makes one attempt; retry says whether another attempt with the same document may succeed.
func (h *HTTPSubmitter) once(ctx context.Context, cms []byte) (*Submission, *SubmitError, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(cms))
	if err != nil {
		return nil, &SubmitError{Reason: "the exchange URL is not usable", cause: err}, false
	}
	for k, v := range h.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/cms")
	req.Header.Set("Accept", "application/json, application/problem+json")
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		reason := "the exchange could not be reached"
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			reason = "the exchange did not answer in time"
		}
		// A cancelled caller is not retried; a network failure or timeout is.
		return nil, &SubmitError{Reason: reason, cause: err}, ctx.Err() == nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSubmitResponse))
	if err != nil {
		return nil, &SubmitError{Status: resp.StatusCode, Reason: "the exchange's answer was cut off", cause: err}, ctx.Err() == nil
	}
	var a ingestAnswer
	jsonErr := json.Unmarshal(body, &a)
	var ind struct {
		Indication string `json:"indication"`
	}
	if len(a.Report) > 0 {
		_ = json.Unmarshal(a.Report, &ind)
	}
	if resp.StatusCode/100 == 2 {
		if len(a.Report) == 0 || ind.Indication == "" {
			return nil, &SubmitError{Status: resp.StatusCode, Reason: "the exchange's answer holds no validation report"}, false
		}
		return &Submission{Status: resp.StatusCode, Report: a.Report, SealedReport: a.SealedReport, Indication: ind.Indication,
			Ingestion: serverTiming(resp.Header, "ingest")}, nil, false
	}
	se := &SubmitError{Status: resp.StatusCode}
	if jsonErr == nil && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		se.Problem = json.RawMessage(body)
	}
	se.Reason = clip(a.Title, 120)
	if a.Detail != "" {
		se.Reason = clip(strings.TrimSpace(se.Reason+" - "+a.Detail), 200)
	}
	if se.Reason == "" {
		se.Reason = http.StatusText(resp.StatusCode)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil && secs > 0 {
			se.retryAfter = time.Duration(secs) * time.Second
		}
	}
	switch {
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
		return nil, se, true
	}
	se.Refused = true
	if len(a.Report) > 0 {
		se.Report, se.SealedReport, se.Indication = a.Report, a.SealedReport, ind.Indication
		if ind.Indication != "" {
			se.Reason = "validation " + ind.Indication
		}
	}
	return nil, se, false
}

func retryAfter(e *SubmitError) time.Duration { return e.retryAfter }

// serverTiming reads the duration of metric name from a Server-Timing header (W3C Server Timing), e.g.
// "ingest;dur=12.5" (milliseconds).
func serverTiming(h http.Header, name string) time.Duration {
	for _, v := range h.Values("Server-Timing") {
		for _, m := range strings.Split(v, ",") {
			parts := strings.Split(strings.TrimSpace(m), ";")
			if len(parts) == 0 || strings.TrimSpace(parts[0]) != name {
				continue
			}
			for _, p := range parts[1:] {
				if d, ok := strings.CutPrefix(strings.TrimSpace(p), "dur="); ok {
					if ms, err := strconv.ParseFloat(d, 64); err == nil && ms >= 0 {
						return time.Duration(ms * float64(time.Millisecond))
					}
				}
			}
		}
	}
	return 0
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
