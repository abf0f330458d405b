package cscclient

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/agent"
)

// ParseURI reads a "csc:credential=<id>" key URI (the agent's `key` setting) and returns the credential ID.
func ParseURI(uri string) (string, error) {
	u, err := ParseKeyURI(uri)
	return u.Credential, err
}

// KeyURI is a parsed csc: key URI.
type KeyURI struct {
	Credential string
	// Factor is the activation factor the agent uses: "passkey" (the default: Mohr's activation page) or
	// "card" (the physician's national ID card in a reader, through pcscd).
	Factor string
}

// ParseKeyURI reads "csc:credential=<id>[;factor=passkey|card]". Unknown attributes are errors.
func ParseKeyURI(uri string) (KeyURI, error) {
	rest, ok := strings.CutPrefix(uri, "csc:")
	if !ok {
		return KeyURI{}, fmt.Errorf("%w: not a csc: URI", keys.ErrBadURI)
	}
	out := KeyURI{Factor: "passkey"}
	for _, attr := range strings.Split(rest, ";") {
		k, v, _ := strings.Cut(attr, "=")
		switch k {
		case "credential":
			id, err := url.PathUnescape(v)
			if err != nil || id == "" {
				return KeyURI{}, fmt.Errorf("%w: bad credential", keys.ErrBadURI)
			}
			out.Credential = id
		case "factor":
			if v != "passkey" && v != "card" {
				return KeyURI{}, fmt.Errorf("%w: factor must be passkey or card", keys.ErrBadURI)
			}
			out.Factor = v
		default:
			return KeyURI{}, fmt.Errorf("%w: unknown csc: attribute %q", keys.ErrBadURI, k)
		}
	}
	if out.Credential == "" {
		return KeyURI{}, fmt.Errorf("%w: csc: URI without credential=", keys.ErrBadURI)
	}
	return out, nil
}

// AgentKey is a signing/agent KeyOpener for a remote credential. For a one-off call (a signature or a batch
// without a comfort session) it builds the signed attributes of every document first, with one signing
// time, and activates the credential once for exactly those hashes: one touch of the authenticator signs
// the batch, and Mohr signs nothing else (SCAL2). In a comfort session (no documents known in advance) every
// signature is activated on its own.
type AgentKey struct {
	Client       *Client
	CredentialID string
	// Activate runs the WebAuthn ceremony in a browser the agent drives (tests, embedded browsers). In
	// production set Page and Approve instead: the physician approves on Mohr's activation page.
	Activate Activator
	// Page is the address of Mohr's activation page (https://HOST:8443/remote/activate); Approve tells the
	// physician to open it for a request; Poll is how often the agent asks whether they have (default 1 s).
	Page    string
	Approve Approver
	Poll    time.Duration
	// Card, if set, makes the national ID card the activation factor instead (factor=card): the card signs
	// each activation's challenge after its PIN, asked through the agent's PIN callback.
	Card CardActivator
	// Now is the clock for the signing time (time.Now by default).
	Now func() time.Time
	// Timeout bounds each signHash call made from crypto.Signer.Sign, which has no context (default 30 s).
	Timeout time.Duration
}

var _ agent.KeyOpener = (*AgentKey)(nil)

// errCaptured stops signing.Sign once the digest to be signed is known.
var errCaptured = errors.New("cscclient: digest captured")

// capture is a crypto.Signer that only records the digest it is asked to sign.
type capture struct {
	pub    crypto.PublicKey
	digest []byte
}

func (c *capture) Public() crypto.PublicKey { return c.pub }
func (c *capture) Sign(_ io.Reader, d []byte, _ crypto.SignerOpts) ([]byte, error) {
	c.digest = append([]byte(nil), d...)
	return nil, errCaptured
}

// OpenKey implements agent.KeyOpener. The agent's PIN callback is used only with the card factor (Card):
// it is the national ID card's PIN, which goes to the card; the passkey factor asks for no PIN here.
func (k *AgentKey) OpenKey(ctx context.Context, pin keys.PINFunc) (*agent.Key, error) {
	if k.Client == nil || (k.Activate == nil && k.Card == nil && (k.Approve == nil || k.Page == "")) || k.CredentialID == "" {
		return nil, errors.New("cscclient: AgentKey needs a client, an activator (or an activation page and an approver, or a card) and a credential")
	}
	chain, enabled, err := k.Client.Chain(ctx, k.CredentialID)
	if err != nil {
		return nil, err
	}
	if !enabled {
		return nil, fmt.Errorf("cscclient: credential %s is disabled", k.CredentialID)
	}
	s := &remoteSigner{k: k, pub: chain[0].PublicKey, pin: pin}
	key := &agent.Key{Signer: s, Chain: chain}
	docs := agent.DocumentsFrom(ctx)
	if len(docs) == 0 {
		if k.Card != nil {
			// The card's key is PIN always and the agent keeps no PIN: each activation needs the documents
			// known in advance and one PIN entry.
			return nil, errors.New("cscclient: the national ID card factor activates one call's documents at a time: no comfort session")
		}
		return key, nil // comfort session: one activation per signature
	}
	now := time.Now
	if k.Now != nil {
		now = k.Now
	}
	t := now().UTC().Truncate(time.Second)
	digests := make([][]byte, len(docs))
	for i, d := range docs {
		c := &capture{pub: chain[0].PublicKey}
		_, err := signing.Sign(ctx, d.Content, signing.SignOptions{Signer: c, Chain: chain, Now: func() time.Time { return t }})
		if !errors.Is(err, errCaptured) || c.digest == nil {
			return nil, fmt.Errorf("cscclient: signed attributes of document %d: %v", i, err)
		}
		digests[i] = c.digest
	}
	if k.Card != nil {
		// The card factor: the agent asks the physician's PIN after OpenKey and hands it to CheckPIN once; the
		// card verifies it and signs the challenge over exactly these digests.
		key.CheckPIN = func(ctx context.Context, p []byte) error {
			once := func(context.Context, string) ([]byte, error) { return append([]byte(nil), p...), nil }
			sad, err := k.Client.AuthorizeWithCard(ctx, k.CredentialID, digests, k.Card, once)
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.sad = sad
			s.mu.Unlock()
			return nil
		}
	} else {
		sad, err := k.authorize(ctx, digests, pin)
		if err != nil {
			return nil, err
		}
		s.sad = sad
	}
	s.allowed = make(map[string]bool, len(digests))
	for _, d := range digests {
		s.allowed[string(d)] = true
	}
	key.SigningTime = func() time.Time { return t }
	return key, nil
}

// authorize activates the credential for digests with the configured activator.
func (k *AgentKey) authorize(ctx context.Context, digests [][]byte, pin keys.PINFunc) (string, error) {
	if k.Card != nil {
		return k.Client.AuthorizeWithCard(ctx, k.CredentialID, digests, k.Card, pin)
	}
	if k.Activate != nil {
		return k.Client.Authorize(ctx, k.CredentialID, digests, k.Activate)
	}
	return k.Client.AuthorizeOnPage(ctx, k.CredentialID, digests, k.Page, k.Approve, k.Poll)
}

// remoteSigner signs through signatures/signHash.
type remoteSigner struct {
	k   *AgentKey
	pub crypto.PublicKey
	pin keys.PINFunc // the agent's PIN callback (the card factor)

	mu      sync.Mutex
	sad     string
	allowed map[string]bool // nil: activate per signature
}

func (s *remoteSigner) Public() crypto.PublicKey { return s.pub }

func (s *remoteSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 {
		return nil, fmt.Errorf("%w: remote credentials sign SHA-256 digests", keys.ErrUnsupportedKey)
	}
	timeout := s.k.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
		if s.k.Activate == nil && s.k.Card == nil && s.allowed == nil {
			timeout = 3 * time.Minute // a person approves this signature on the activation page
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s.mu.Lock()
	sad, allowed := s.sad, s.allowed
	if allowed != nil {
		if !allowed[string(digest)] {
			s.mu.Unlock()
			return nil, errors.New("cscclient: digest outside the activation (the documents changed after activation)")
		}
		delete(allowed, string(digest))
	}
	s.mu.Unlock()
	if allowed == nil {
		var err error
		if sad, err = s.k.authorize(ctx, [][]byte{digest}, s.pin); err != nil {
			return nil, err
		}
	}
	sigs, err := s.k.Client.SignHash(ctx, s.k.CredentialID, sad, [][]byte{digest})
	if err != nil {
		return nil, err
	}
	return sigs[0], nil
}
