package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Submission is the exchange's answer to a submitted prescription: the validation report (JSON) and the
// report sealed by the exchange (CMS, DER).
type Submission struct {
	Report       json.RawMessage
	SealedReport []byte
	// Indication is the report's ETSI EN 319 102-1 indication (TOTAL_PASSED, ...).
	Indication string
	// Ingestion is the exchange's own processing time, when it says (Server-Timing); zero otherwise.
	Ingestion time.Duration
}

// Submitter sends a signed prescription (CMS SignedData, DER) to the exchange's ingestion endpoint.
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
}

// Submit posts cms and returns the exchange's report. A rejection that comes with a report is returned as a
// Submission (its Indication says it failed), not as an error.
func (h *HTTPSubmitter) Submit(ctx context.Context, cms []byte) (*Submission, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(cms))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSubmit, err)
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
		return nil, fmt.Errorf("%w: %w", ErrSubmit, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSubmitResponse))
	if err != nil {
		return nil, fmt.Errorf("%w: read answer: %w", ErrSubmit, err)
	}
	var a ingestAnswer
	_ = json.Unmarshal(body, &a)
	if len(a.Report) > 0 && (resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusUnprocessableEntity) {
		s := &Submission{Report: a.Report, SealedReport: a.SealedReport, Ingestion: serverTiming(resp.Header, "ingest")}
		var ind struct {
			Indication string `json:"indication"`
		}
		if json.Unmarshal(a.Report, &ind) != nil || ind.Indication == "" {
			return nil, fmt.Errorf("%w: report without an indication", ErrSubmit)
		}
		s.Indication = ind.Indication
		return s, nil
	}
	msg := a.Title
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return nil, fmt.Errorf("%w: exchange answered %d %s", ErrSubmit, resp.StatusCode, clip(msg, 120))
}

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
