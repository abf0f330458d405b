// Package cscclient is the signing application's side of Mohr's remote signing: a client of the Cloud
// Signature Consortium API v2 routes (/csc/v2/, package api) over mutual TLS, and a signing/agent KeyOpener
// for "csc:" key URIs, so an EMR uses the same local agent API whether the physician has a council card or a
// remote credential (docs/remote-signing.md).
package cscclient

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/keys"
)

// Error is a CSC error answer (CSC API v2 §10.2).
type Error struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("cscclient: %d %s: %s", e.Status, e.Code, e.Description)
}

// ErrActivation: the activation factor was not given (the physician cancelled or the activator failed).
var ErrActivation = errors.New("cscclient: activation")

// Client calls one CSC API v2 service. HTTP must present the physician's authentication certificate.
type Client struct {
	// BaseURL ends in /csc/v2 (no trailing slash needed).
	BaseURL string
	HTTP    *http.Client
}

func (c *Client) post(ctx context.Context, method string, in, out any) (int, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(c.BaseURL, "/")+"/"+method, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cscclient: %s: %w", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("cscclient: %s: %w", method, err)
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Code == "" {
			e.Code, e.Description = "http_error", http.StatusText(resp.StatusCode)
		}
		return resp.StatusCode, e
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, fmt.Errorf("cscclient: %s: %w", method, err)
	}
	return resp.StatusCode, nil
}

// Credentials lists the caller's credential IDs (credentials/list).
func (c *Client) Credentials(ctx context.Context) ([]string, error) {
	var out struct {
		IDs []string `json:"credentialIDs"`
	}
	_, err := c.post(ctx, "credentials/list", map[string]any{}, &out)
	return out.IDs, err
}

// Chain returns the credential's certificate chain, signing certificate first (credentials/info), and
// whether its key is enabled.
func (c *Client) Chain(ctx context.Context, credID string) ([]*x509.Certificate, bool, error) {
	var out struct {
		Key struct {
			Status string `json:"status"`
		} `json:"key"`
		Cert struct {
			Certificates []string `json:"certificates"`
		} `json:"cert"`
	}
	if _, err := c.post(ctx, "credentials/info", map[string]any{"credentialID": credID, "certificates": "chain"}, &out); err != nil {
		return nil, false, err
	}
	var chain []*x509.Certificate
	for _, s := range out.Cert.Certificates {
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, false, fmt.Errorf("cscclient: certificate: %w", err)
		}
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, false, fmt.Errorf("cscclient: certificate: %w", err)
		}
		chain = append(chain, x)
	}
	if len(chain) == 0 {
		return nil, false, errors.New("cscclient: credentials/info returned no certificate")
	}
	return chain, out.Key.Status == "enabled", nil
}

// Activator shows the physician what they are about to authorise and has their authenticator answer the
// WebAuthn request: options is the JSON of {"publicKey": PublicKeyCredentialRequestOptions} (base64url
// binary fields, as PublicKeyCredential.parseRequestOptionsFromJSON takes), the answer the JSON of the
// PublicKeyCredential (PublicKeyCredential.toJSON()).
type Activator func(ctx context.Context, options []byte) (assertion []byte, err error)

func b64(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h)
	}
	return out
}

// Authorize activates the credential for hashes (credentials/authorize in two steps) and returns the SAD.
func (c *Client) Authorize(ctx context.Context, credID string, hashes [][]byte, activate Activator) (string, error) {
	req := map[string]any{"credentialID": credID, "numSignatures": len(hashes), "hashes": b64(hashes),
		"hashAlgorithmOID": "2.16.840.1.101.3.4.2.1"}
	var step1 struct {
		Handle    string          `json:"handle"`
		PublicKey json.RawMessage `json:"publicKey"`
	}
	st, err := c.post(ctx, "credentials/authorize", req, &step1)
	if err != nil {
		return "", err
	}
	if st != http.StatusAccepted || step1.Handle == "" || len(step1.PublicKey) == 0 {
		return "", fmt.Errorf("cscclient: credentials/authorize answered %d without a WebAuthn request", st)
	}
	opts, _ := json.Marshal(map[string]json.RawMessage{"publicKey": step1.PublicKey})
	asn, err := activate(ctx, opts)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrActivation, err)
	}
	req["authData"] = []map[string]string{{"id": "webauthn_handle", "value": step1.Handle},
		{"id": "webauthn_assertion", "value": base64.RawURLEncoding.EncodeToString(asn)}}
	var step2 struct {
		SAD string `json:"SAD"`
	}
	if _, err := c.post(ctx, "credentials/authorize", req, &step2); err != nil {
		return "", err
	}
	if step2.SAD == "" {
		return "", errors.New("cscclient: credentials/authorize returned no SAD")
	}
	return step2.SAD, nil
}

// Approver is the production activator: it tells the physician (or opens their browser) to approve the
// signing request on Mohr's activation page at pageURL, on Mohr's own origin, where their authenticator
// answers the WebAuthn request; it returns once the physician has been told (the client then waits for the
// approval).
type Approver func(ctx context.Context, pageURL string) error

// AuthorizeOnPage activates the credential for hashes with the physician's approval on Mohr's activation
// page (page, e.g. https://hix.example:8443/remote/activate): credentials/authorize step 1, approve with the
// page's address for the request's handle, then step 2 with the handle alone every poll interval until the
// service answers the SAD (the physician approved), an error, or ctx ends.
func (c *Client) AuthorizeOnPage(ctx context.Context, credID string, hashes [][]byte, page string, approve Approver, poll time.Duration) (string, error) {
	req := map[string]any{"credentialID": credID, "numSignatures": len(hashes), "hashes": b64(hashes),
		"hashAlgorithmOID": "2.16.840.1.101.3.4.2.1"}
	var step1 struct {
		Handle    string `json:"handle"`
		ExpiresIn int    `json:"expiresIn"`
	}
	st, err := c.post(ctx, "credentials/authorize", req, &step1)
	if err != nil {
		return "", err
	}
	if st != http.StatusAccepted || step1.Handle == "" {
		return "", fmt.Errorf("cscclient: credentials/authorize answered %d without an activation handle", st)
	}
	u, err := url.Parse(page)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("cscclient: activation page %q is not an absolute URL", page)
	}
	u.RawQuery = url.Values{"h": {step1.Handle}}.Encode()
	if err := approve(ctx, u.String()); err != nil {
		return "", fmt.Errorf("%w: %w", ErrActivation, err)
	}
	if poll <= 0 {
		poll = time.Second
	}
	if step1.ExpiresIn > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(step1.ExpiresIn)*time.Second+poll)
		defer cancel()
	}
	req["authData"] = []map[string]string{{"id": "webauthn_handle", "value": step1.Handle}}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		var step2 struct {
			SAD    string `json:"SAD"`
			Status string `json:"status"`
		}
		st, err := c.post(ctx, "credentials/authorize", req, &step2)
		var ce *Error
		switch {
		case errors.As(err, &ce) && (ce.Status == http.StatusTooManyRequests || ce.Status == http.StatusServiceUnavailable):
			st = http.StatusAccepted // the service asks to slow down: keep waiting for the approval
		case err != nil:
			return "", err
		case st == http.StatusOK && step2.SAD != "":
			return step2.SAD, nil
		}
		if st != http.StatusAccepted {
			return "", fmt.Errorf("cscclient: credentials/authorize answered %d without a SAD", st)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: not approved on the activation page in time: %w", ErrActivation, ctx.Err())
		case <-t.C:
		}
	}
}

// SignHash signs hashes with the SAD (signatures/signHash, ECDSA with SHA-256) and returns DER signatures.
func (c *Client) SignHash(ctx context.Context, credID, sad string, hashes [][]byte) ([][]byte, error) {
	var out struct {
		Signatures []string `json:"signatures"`
	}
	if _, err := c.post(ctx, "signatures/signHash", map[string]any{"credentialID": credID, "SAD": sad, "hashes": b64(hashes),
		"signAlgo": "1.2.840.10045.4.3.2"}, &out); err != nil {
		return nil, err
	}
	if len(out.Signatures) != len(hashes) {
		return nil, fmt.Errorf("cscclient: %d signatures for %d hashes", len(out.Signatures), len(hashes))
	}
	sigs := make([][]byte, len(hashes))
	for i, s := range out.Signatures {
		var err error
		if sigs[i], err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, fmt.Errorf("cscclient: signature: %w", err)
		}
	}
	return sigs, nil
}

// CardActivator is the national ID card factor: it has the physician's national ID card sign challenge with
// its PIN-always authentication key (VERIFY with the PIN pin returns, then INTERNAL AUTHENTICATE; package
// cardreader) and returns the card's authentication certificate (DER) and its answer (plain r||s). The PIN
// goes only to the card.
type CardActivator func(ctx context.Context, pin keys.PINFunc, challenge []byte) (cert, sig []byte, err error)

// AuthorizeWithCard activates the credential for hashes with the national ID card (credentials/authorize:
// step 1 answers the challenge over the hashes, the card signs it, step 2 sends activation_handle,
// card_certificate and card_signature) and returns the SAD.
func (c *Client) AuthorizeWithCard(ctx context.Context, credID string, hashes [][]byte, card CardActivator, pin keys.PINFunc) (string, error) {
	req := map[string]any{"credentialID": credID, "numSignatures": len(hashes), "hashes": b64(hashes),
		"hashAlgorithmOID": "2.16.840.1.101.3.4.2.1"}
	var step1 struct {
		Handle    string `json:"handle"`
		Challenge string `json:"challenge"`
	}
	st, err := c.post(ctx, "credentials/authorize", req, &step1)
	if err != nil {
		return "", err
	}
	challenge, derr := base64.StdEncoding.DecodeString(step1.Challenge)
	if st != http.StatusAccepted || step1.Handle == "" || derr != nil || len(challenge) == 0 {
		return "", fmt.Errorf("cscclient: credentials/authorize answered %d without a challenge", st)
	}
	cert, sig, err := card(ctx, pin, challenge)
	if err != nil {
		return "", fmt.Errorf("%w: national ID card: %w", ErrActivation, err)
	}
	req["authData"] = []map[string]string{{"id": "activation_handle", "value": step1.Handle},
		{"id": "card_certificate", "value": base64.StdEncoding.EncodeToString(cert)},
		{"id": "card_signature", "value": base64.StdEncoding.EncodeToString(sig)}}
	var step2 struct {
		SAD string `json:"SAD"`
	}
	if _, err := c.post(ctx, "credentials/authorize", req, &step2); err != nil {
		return "", err
	}
	if step2.SAD == "" {
		return "", errors.New("cscclient: credentials/authorize returned no SAD")
	}
	return step2.SAD, nil
}
