package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing/agent"
	"github.com/mohr-hix/mohr/signing/remote/cscclient"
)

// agentCSCConfig is the agent's `csc` section: the remote signing service of a csc:credential=<id> key
// (docs/remote-signing.md, docs/agent.md).
type agentCSCConfig struct {
	// URL is the CSC API base, https://HOST:8443/csc/v2.
	URL string `yaml:"url"`
	// CAFile holds the roots for the service's TLS certificate (the exchange's root.pem); system roots when empty.
	CAFile string `yaml:"ca_file"`
	// ClientCert (PEM chain) and ClientKey (key URI) are the physician's authentication certificate: the
	// CSC service authorisation.
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
	// ActivationPage is Mohr's activation page, https://HOST:8443/remote/activate (default: URL's origin +
	// /remote/activate). The physician approves each signing request there with their passkey.
	ActivationPage string `yaml:"activation_page"`
	// OpenBrowser opens the activation page with xdg-open; otherwise the agent logs its address (and the EMR
	// may show it).
	OpenBrowser bool `yaml:"open_browser"`
	// Poll is how often the agent asks whether the physician has approved (default 1s).
	Poll ca.Duration `yaml:"poll"`
	// Timeout bounds each call to the service (default 30s).
	Timeout ca.Duration `yaml:"timeout"`
	// CardReader is the reader holding the physician's national ID card for a key URI with factor=card
	// (default: the first reader holding one).
	CardReader string `yaml:"card_reader"`
}

// cscNoPIN is the agent's PIN source for a remote credential: there is no PIN; the activation factor is the
// passkey, asked for on the activation page.
func cscNoPIN(context.Context, string) ([]byte, error) { return []byte("passkey"), nil }

// cscCardFactor reports whether the agent's csc: key activates with the national ID card (factor=card): its
// PIN is then the card's, asked as for any card key.
func cscCardFactor(key string) bool {
	u, err := cscclient.ParseKeyURI(key)
	return err == nil && u.Factor == "card"
}

// nationalIDCardActivator is the card factor of a csc: key: the national ID card in reader (or the first
// reader holding one), through pcscd, signs the activation challenge after the PIN the agent's PIN source
// gives (VERIFY on the card, then INTERNAL AUTHENTICATE). The PIN goes only to the card.
func nationalIDCardActivator(reader string) cscclient.CardActivator {
	return func(ctx context.Context, pin keys.PINFunc, challenge []byte) ([]byte, []byte, error) {
		pc, err := cardreader.Establish(ctx)
		if err != nil {
			return nil, nil, cardOpenError("card", "", err)
		}
		defer pc.Release()
		idCard, err := findCard(ctx, pc, reader, cardreader.ProfileNationalID, "national ID card")
		if err != nil {
			return nil, nil, err
		}
		defer idCard.Close()
		nid, err := cardreader.NationalID(ctx, idCard, cardreader.DefaultNationalIDProfile())
		if err != nil {
			return nil, nil, err
		}
		cert, err := nid.Certificate(ctx)
		if err != nil {
			return nil, nil, err
		}
		sig, err := nid.SignChallenge(ctx, pin, challenge)
		if err != nil {
			return nil, nil, err
		}
		return cert.Raw, sig, nil
	}
}

// agentCSCKey builds the key source of a csc: key from the csc section.
func agentCSCKey(c *agentConfig) (agent.KeyOpener, error) {
	ku, err := cscclient.ParseKeyURI(c.Key)
	if err != nil {
		return nil, fmt.Errorf("agent config: key %q: %w", c.Key, err)
	}
	credID := ku.Credential
	cc := c.CSC
	u, err := url.Parse(cc.URL)
	if cc.URL == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("agent config: a csc: key needs csc.url, the remote signing service's https://HOST:8443/csc/v2")
	}
	if cc.ClientCert == "" || cc.ClientKey == "" {
		return nil, errors.New("agent config: a csc: key needs csc.client_cert and csc.client_key, the physician's authentication certificate and key")
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cc.CAFile != "" {
		roots, err := readCerts(cc.CAFile)
		if err != nil || len(roots) == 0 {
			return nil, fmt.Errorf("agent config: csc.ca_file: %v", pathErrOrNil(err))
		}
		tlsCfg.RootCAs = x509.NewCertPool()
		for _, r := range roots {
			tlsCfg.RootCAs.AddCert(r)
		}
	}
	certs, err := readCerts(cc.ClientCert)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("agent config: csc.client_cert: %v", pathErrOrNil(err))
	}
	key, err := newKeyResolver().Signer(context.Background(), cc.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("agent config: csc.client_key: %w", err)
	}
	tc := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, x := range certs {
		tc.Certificate = append(tc.Certificate, x.Raw)
	}
	tlsCfg.Certificates = []tls.Certificate{tc}
	timeout := time.Duration(cc.Timeout)
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	page := cc.ActivationPage
	if page == "" {
		page = u.Scheme + "://" + u.Host + "/remote/activate"
	}
	if p, err := url.Parse(page); err != nil || p.Scheme != "https" && !(p.Scheme == "http" && isLoopbackHost(p.Hostname())) {
		return nil, fmt.Errorf("agent config: csc.activation_page %q must be an https:// address (WebAuthn needs a secure origin)", page)
	}
	client := &cscclient.Client{BaseURL: cc.URL, HTTP: &http.Client{Timeout: timeout, Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsCfg, TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second}}}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	approve := func(_ context.Context, pageURL string) error {
		log.Info("remote signing: approve this signing request with your passkey on the activation page", "url", pageURL)
		if cc.OpenBrowser {
			cmd := exec.Command("xdg-open", pageURL)
			if err := cmd.Start(); err != nil {
				log.Warn("could not open the browser; open the address yourself", "err", err)
			} else {
				go cmd.Wait()
			}
		}
		return nil
	}
	k := &cscclient.AgentKey{Client: client, CredentialID: credID, Page: page, Approve: approve, Poll: time.Duration(cc.Poll)}
	if ku.Factor == "card" {
		k.Card = nationalIDCardActivator(cc.CardReader)
	}
	return k, nil
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}
