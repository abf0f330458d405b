package tokens

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// HTTPRegistry is a RegistrySource that asks an HTTP/JSON registry service:
//
//	GET {BaseURL}/facilities/{siam_id}      -> 200 one facility object (the import's JSON form), 404 unknown
//	GET {BaseURL}/physicians/{national_code} -> 200 one physician object, 404 unknown
//
// Responses are decoded strictly (unknown fields are errors) and validated like an import.
type HTTPRegistry struct {
	BaseURL string
	// Client is the HTTP client; nil means one with a 10 s overall timeout. Set a client with its own
	// Timeout (and TLS configuration) for production.
	Client *http.Client
}

var _ RegistrySource = (*HTTPRegistry)(nil)

var defaultRegistryClient = &http.Client{Timeout: 10 * time.Second}

// Facility fetches one facility.
func (h *HTTPRegistry) Facility(ctx context.Context, siamID string) (Facility, error) {
	var j facilityJSON
	if err := h.get(ctx, "facilities", siamID, &j); err != nil {
		return Facility{}, err
	}
	f, err := facilityFromRow(j.row())
	if err != nil {
		return Facility{}, fmt.Errorf("tokens: registry facility %s: %w: %w", siamID, ErrInvalidInput, err)
	}
	if f.SIAMID != siamID {
		return Facility{}, fmt.Errorf("tokens: registry answered for another SIAM ID: %w", ErrInvalidInput)
	}
	return f, nil
}

// Physician fetches one council registration.
func (h *HTTPRegistry) Physician(ctx context.Context, nationalCode string) (Physician, error) {
	var j physicianJSON
	if err := h.get(ctx, "physicians", nationalCode, &j); err != nil {
		return Physician{}, err
	}
	p, err := physicianFromRow(j.row())
	if err != nil {
		return Physician{}, fmt.Errorf("tokens: registry physician: %w: %w", ErrInvalidInput, err)
	}
	if p.NationalCode != nationalCode {
		return Physician{}, fmt.Errorf("tokens: registry answered for another national code: %w", ErrInvalidInput)
	}
	return p, nil
}

func (h *HTTPRegistry) get(ctx context.Context, kind, id string, out any) error {
	c := h.Client
	if c == nil {
		c = defaultRegistryClient
	}
	u := strings.TrimSuffix(h.BaseURL, "/") + "/" + kind + "/" + url.PathEscape(id)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("tokens: registry request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("tokens: registry: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("tokens: registry: read: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return fmt.Errorf("tokens: registry %s: %w", kind, ErrNotFound)
	default:
		return fmt.Errorf("tokens: registry %s: HTTP status %d", kind, resp.StatusCode)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("tokens: registry %s: %w: %w", kind, ErrInvalidInput, jsonCause(err))
	}
	return nil
}
