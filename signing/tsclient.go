package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"time"

	"github.com/digitorus/timestamp"
)

// HTTPTimestamper is an RFC 3161 client over HTTP (RFC 3161 §3.4: POST application/timestamp-query). It
// sends a nonce and asks for the TSA certificate, checks the response status, the nonce and the message
// imprint, and returns the TimeStampToken. Requests are built and responses parsed with
// github.com/digitorus/timestamp; the token is validated fully later, by the Verifier.
type HTTPTimestamper struct {
	URL string
	// Client is the HTTP client; a client with Timeout (10 s when zero) is used when nil.
	Client *http.Client
	// Timeout bounds each request when Client is nil.
	Timeout time.Duration
	// Policy, if set, is requested (reqPolicy).
	Policy []int
}

// maxTSResponse bounds the response body read from a TSA.
const maxTSResponse = 1 << 20

// Timestamp implements Timestamper.
func (c *HTTPTimestamper) Timestamp(ctx context.Context, h crypto.Hash, digest []byte) ([]byte, error) {
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	req := &timestamp.Request{HashAlgorithm: h, HashedMessage: digest, Certificates: true, Nonce: nonce, TSAPolicyOID: c.Policy}
	body, err := req.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%w: request: %v", ErrTimestamp, err)
	}
	hc := c.Client
	if hc == nil {
		to := c.Timeout
		if to == 0 {
			to = 10 * time.Second
		}
		hc = &http.Client{Timeout: to}
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTimestamp, err)
	}
	hreq.Header.Set("Content-Type", "application/timestamp-query")
	hreq.Header.Set("Accept", "application/timestamp-reply")
	resp, err := hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTimestamp, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: HTTP %d", ErrTimestamp, resp.StatusCode)
	}
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxTSResponse+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTimestamp, err)
	}
	if len(rb) > maxTSResponse {
		return nil, fmt.Errorf("%w: response too large", ErrTimestamp)
	}
	ts, err := timestamp.ParseResponse(rb)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTimestamp, err)
	}
	if ts.Nonce == nil || ts.Nonce.Cmp(nonce) != 0 {
		return nil, fmt.Errorf("%w: nonce mismatch", ErrTimestamp)
	}
	if ts.HashAlgorithm != h || !bytes.Equal(ts.HashedMessage, digest) {
		return nil, fmt.Errorf("%w: %w", ErrTimestamp, errTimestampImprint)
	}
	return ts.RawToken, nil
}
