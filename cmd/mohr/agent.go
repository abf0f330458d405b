package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing/agent"
	"github.com/mohr-hix/mohr/signing/agent/agentcard"
)

func init() { rootCmd.AddCommand(newAgentCmd()) }

// agentConfig is the signing agent's configuration file (<data-dir>/agent.yaml, or --agent-config), decoded
// strictly. See docs/agent.md.
type agentConfig struct {
	// Listen must be a loopback address.
	Listen string `yaml:"listen"`
	// Key is the signing key URI: card:..., pkcs11:... (a vendor module), csc:credential=<id> (a remote
	// signing credential, section csc) or file:... (development).
	Key string `yaml:"key"`
	// CSC is the remote signing service for a csc: key (agentcsc.go).
	CSC agentCSCConfig `yaml:"csc"`
	// Chain is a PEM file: for card: keys the intermediates; otherwise the signing certificate first.
	Chain string `yaml:"chain"`
	// Roots (PEM) are the trust anchors the signing certificate must chain to at session open (the
	// exchange's root, /ca/root.pem); self-signed certificates in Chain count too. SignerPolicy is the
	// certificate policy OID it must carry (default: the physician-signing profile's).
	Roots          string      `yaml:"roots"`
	SignerPolicy   string      `yaml:"signer_policy"`
	TokenFile      string      `yaml:"token_file"`
	AuditFile      string      `yaml:"audit_file"`
	AllowedOrigins []string    `yaml:"allowed_origins"`
	MaxSignatures  int         `yaml:"max_signatures"`
	MaxDuration    ca.Duration `yaml:"max_duration"`
	// PINEntry is "terminal" (default) or "web" (the PIN page, agentpin.go); PINOpenBrowser opens it.
	PINEntry       string `yaml:"pin_entry"`
	PINOpenBrowser bool   `yaml:"pin_open_browser"`
	// PINTimeout bounds the terminal PIN entry (default 2 minutes, as the PIN page).
	PINTimeout ca.Duration `yaml:"pin_timeout"`
	Submit     struct {
		// URL of the exchange's POST /v1/prescriptions; empty: sign only.
		URL     string      `yaml:"url"`
		Timeout ca.Duration `yaml:"timeout"`
		// CAFile holds the roots for the exchange's TLS certificate; system roots when empty.
		CAFile string `yaml:"ca_file"`
		// ClientCert (PEM chain) and ClientKey (key URI): the facility adapter's or the physician's
		// authentication certificate for mTLS.
		ClientCert string `yaml:"client_cert"`
		ClientKey  string `yaml:"client_key"`
	} `yaml:"submit"`
}

var flagAgentConfig string

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the physician's signing agent: a local API for the EMR that signs prescriptions with the card",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runAgent(cmd.Context()) },
	}
	cmd.PersistentFlags().StringVar(&flagAgentConfig, "agent-config", "", "agent configuration file (default <data-dir>/agent.yaml)")
	cmd.AddCommand(&cobra.Command{
		Use:   "audit-verify FILE",
		Short: "Check the hash chain of an agent audit file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			n, err := agent.VerifyAudit(f)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d records, chain intact\n", n)
			return nil
		},
	})
	return cmd
}

func loadAgentConfig() (*agentConfig, error) {
	dir, err := filepath.Abs(flagDataDir)
	if err != nil {
		return nil, err
	}
	c := &agentConfig{Listen: "127.0.0.1:7433", Key: "card:profile=medical-council;key=sign",
		TokenFile: filepath.Join(dir, "agent", "token"), AuditFile: filepath.Join(dir, "agent", "audit.jsonl")}
	path := flagAgentConfig
	if path == "" {
		if p := filepath.Join(dir, "agent.yaml"); fileExists(p) {
			path = p
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("agent config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("agent config %s: %w", path, err)
		}
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("agent config: listen: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("agent config: listen must be a loopback address, not %q", c.Listen)
	}
	if c.MaxSignatures < 0 || c.MaxSignatures > agent.MaxSessionSignatures || c.MaxDuration < 0 || time.Duration(c.MaxDuration) > agent.MaxSessionDuration {
		return nil, fmt.Errorf("agent config: at most %d signatures and %v per session", agent.MaxSessionSignatures, agent.MaxSessionDuration)
	}
	return c, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// agentKey picks the key opener for the configured URI.
func agentKey(c *agentConfig, chain []*x509.Certificate) (agent.KeyOpener, error) {
	scheme, err := keys.Scheme(c.Key)
	if err != nil {
		return nil, err
	}
	switch scheme {
	case "csc":
		return agentCSCKey(c)
	case "card":
		return &agentcard.Opener{URI: c.Key, Intermediates: chain}, nil
	case "pkcs11":
		if len(chain) == 0 {
			return nil, errors.New("agent config: a pkcs11: key needs chain (the signing certificate first)")
		}
		return &pkcs11AgentKey{uri: c.Key, chain: chain}, nil
	}
	return agent.URIKey{URI: c.Key, Chain: chain, Open: func(ctx context.Context, uri string, _ keys.PINFunc) (crypto.Signer, error) {
		return newKeyResolver().Signer(ctx, uri)
	}}, nil
}

// pkcs11AgentKey serves a vendor PKCS#11 card module: the physician's PIN is the token's user PIN, so the key
// is opened (C_Login) when the agent checks the PIN at session start, with the PIN given to package hsm as
// the URI's pin-value attribute (which hsm never prints).
type pkcs11AgentKey struct {
	uri   string
	chain []*x509.Certificate
}

func (k *pkcs11AgentKey) OpenKey(ctx context.Context, _ keys.PINFunc) (*agent.Key, error) {
	ls := &lateSigner{pub: k.chain[0].PublicKey}
	return &agent.Key{Signer: ls, Chain: k.chain, CheckPIN: func(ctx context.Context, pin []byte) error {
		sep := "?"
		if strings.Contains(k.uri, "?") {
			sep = "&"
		}
		s, err := hsmOpener().OpenSigner(ctx, k.uri+sep+"pin-value="+pctEncode(pin))
		if err != nil {
			return err
		}
		if err := keys.MatchesCertificate(s, k.chain[0]); err != nil {
			return err
		}
		ls.set(s)
		return nil
	}}, nil
}

// lateSigner is a key whose public half is known from the certificate and which is opened after login.
type lateSigner struct {
	pub crypto.PublicKey
	mu  sync.Mutex
	s   crypto.Signer
}

func (l *lateSigner) set(s crypto.Signer) { l.mu.Lock(); l.s = s; l.mu.Unlock() }

func (l *lateSigner) Public() crypto.PublicKey { return l.pub }

func (l *lateSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	l.mu.Lock()
	s := l.s
	l.mu.Unlock()
	if s == nil {
		return nil, keys.ErrPINIncorrect
	}
	return s.Sign(r, d, o)
}

func pctEncode(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		fmt.Fprintf(&sb, "%%%02X", c)
	}
	return sb.String()
}

func agentSubmitter(c *agentConfig) (agent.Submitter, error) {
	if c.Submit.URL == "" {
		return nil, nil
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.Submit.CAFile != "" {
		roots, err := readOptionalCerts(c.Submit.CAFile)
		if err != nil {
			return nil, err
		}
		tlsCfg.RootCAs = x509.NewCertPool()
		for _, r := range roots {
			tlsCfg.RootCAs.AddCert(r)
		}
	}
	if c.Submit.ClientCert != "" {
		certs, err := readOptionalCerts(c.Submit.ClientCert)
		if err != nil || len(certs) == 0 {
			return nil, fmt.Errorf("submit.client_cert: %v", err)
		}
		key, err := newKeyResolver().Signer(context.Background(), c.Submit.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("submit.client_key: %w", err)
		}
		tc := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
		for _, x := range certs {
			tc.Certificate = append(tc.Certificate, x.Raw)
		}
		tlsCfg.Certificates = []tls.Certificate{tc}
	}
	timeout := time.Duration(c.Submit.Timeout)
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 8,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second, ForceAttemptHTTP2: true}
	return agent.NewHTTPSubmitter(c.Submit.URL, tr, timeout), nil
}

func runAgent(ctx context.Context) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := loadAgentConfig()
	if err != nil {
		return err
	}
	for _, p := range []string{c.TokenFile, c.AuditFile} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
	}
	chain, err := readOptionalCerts(c.Chain)
	if err != nil {
		return fmt.Errorf("agent config: chain: %w", err)
	}
	chain, signerPolicy, err := agentSignerPolicy(c, chain)
	if err != nil {
		return err
	}
	key, err := agentKey(c, chain)
	if err != nil {
		return err
	}
	sub, err := agentSubmitter(c)
	if err != nil {
		return err
	}
	tok, err := agent.LoadOrCreateToken(c.TokenFile)
	if err != nil {
		return err
	}
	audit, err := agent.OpenAudit(c.AuditFile, nil)
	if err != nil {
		return err
	}
	defer audit.Close()
	m := agent.NewMetrics()
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	pinFn, pinPage, err := agentPIN(c, ln.Addr().String())
	if err != nil {
		return err
	}
	var notify func(agent.SessionEvent)
	if scheme, _ := keys.Scheme(c.Key); scheme == "csc" && !cscCardFactor(c.Key) {
		// A remote credential activated with a passkey has no PIN: the physician's passkey on the activation
		// page is the factor. With factor=card the PIN is the national ID card's, asked as for a card key.
		pinFn, pinPage = cscNoPIN, nil
	} else if pinPage == nil {
		tp := newTTYPrompter(c)
		if err := tp.check(); err != nil {
			log.Warn("no controlling terminal: every PIN request will fail with pin_unavailable; run mohr agent in a terminal, or set pin_entry: web")
		}
		pinFn, notify = tp.Prompt, tp.Notify
	}
	a, err := agent.New(agent.Config{Key: key, PIN: pinFn, Submitter: sub, Audit: audit, Metrics: m, CheckSigner: signerPolicy.Check, Notify: notify,
		MaxSignatures: c.MaxSignatures, MaxDuration: time.Duration(c.MaxDuration)})
	if err != nil {
		return err
	}
	defer a.Close()
	h, err := agent.NewServer(agent.ServerConfig{Agent: a, Token: tok, AllowedOrigins: c.AllowedOrigins, Metrics: m, PINPage: pinPage})
	if err != nil {
		return err
	}
	// No WriteTimeout: a call may wait for the physician to type the PIN, and a batch streams for as long as
	// the card takes.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	scheme, _ := keys.Scheme(c.Key)
	log.Info("signing agent listening", "addr", ln.Addr().String(), "key_scheme", scheme, "token_file", c.TokenFile,
		"audit_file", c.AuditFile, "submit", c.Submit.URL != "")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// readOptionalCerts is readCerts for an optional setting: an empty path gives no certificates.
func readOptionalCerts(path string) ([]*x509.Certificate, error) {
	if path == "" {
		return nil, nil
	}
	return readCerts(path)
}

// agentSignerPolicy builds the check of the signing certificate at session open (docs/agent.md): the roots
// from c.Roots and the self-signed certificates of chain (which are removed from the chain the signatures
// carry), and the physician-signing policy OID. Without a root the agent does not start: it could not tell an
// enrolled card from one holding only its factory certificate.
func agentSignerPolicy(c *agentConfig, chain []*x509.Certificate) ([]*x509.Certificate, agent.SignerPolicy, error) {
	roots := x509.NewCertPool()
	n := 0
	var rest []*x509.Certificate
	for _, x := range chain {
		if bytes.Equal(x.RawSubject, x.RawIssuer) && x.CheckSignatureFrom(x) == nil {
			roots.AddCert(x)
			n++
			continue
		}
		rest = append(rest, x)
	}
	extra, err := readOptionalCerts(c.Roots)
	if err != nil {
		return nil, agent.SignerPolicy{}, fmt.Errorf("agent config: roots: %w", err)
	}
	for _, x := range extra {
		roots.AddCert(x)
		n++
	}
	if n == 0 {
		return nil, agent.SignerPolicy{}, errors.New("agent config: no roots: set roots: to the exchange's root certificate (curl -o root.pem $HIX_PUBLIC/ca/root.pem), so that the agent can check the card's signing certificate")
	}
	p := agent.SignerPolicy{Roots: roots, Policy: physicianSigningPolicy()}
	if c.SignerPolicy != "" {
		if p.Policy, err = parseOID(c.SignerPolicy); err != nil {
			return nil, agent.SignerPolicy{}, fmt.Errorf("agent config: signer_policy %q is not a dotted OID", c.SignerPolicy)
		}
	}
	return rest, p, nil
}
