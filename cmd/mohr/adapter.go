package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/adapter"
	"github.com/mohr-hix/mohr/tokens"
)

func init() { rootCmd.AddCommand(newAdapterCmd(), newGatewayCmd()) }

func httpClient(timeout time.Duration) *http.Client { return &http.Client{Timeout: timeout} }

func certPoolFromFile(path string) (*x509.CertPool, error) {
	certs, err := readCerts(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p, nil
}

func newAdapterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "adapter", Short: "The facility-side HIX adapter"}
	var exchange, listen, caBundle, keystore, pwFile, uri, chainPath, renewURL string
	var systemRoots bool
	run := &cobra.Command{
		Use:   "run",
		Short: "Serve the facility's system on a loopback address and forward to the exchange over mTLS with the token",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ex, err := url.Parse(exchange)
			if err != nil || ex.Scheme != "https" || ex.Host == "" {
				return fmt.Errorf("--exchange %q is not an https:// address of the exchange (for example https://hix.example:8443)", exchange)
			}
			// Refuse a listen address off loopback before binding anything: the facility's system talks plain
			// HTTP to the adapter, which acts with the facility's token.
			if err := loopbackOnly(listen); err != nil {
				return err
			}
			var roots *x509.CertPool
			switch {
			case caBundle != "":
				if roots, err = certPoolFromFile(caBundle); err != nil {
					return fmt.Errorf("--ca-bundle %s: %v; it must be the exchange's root in PEM (http://EXCHANGE:8080/ca/root.pem)", caBundle, err)
				}
			case !systemRoots:
				return errors.New("no --ca-bundle: fetch the exchange's root first (curl -o root.pem http://EXCHANGE:8080/ca/root.pem), check its fingerprint with the RA and pass --ca-bundle root.pem (or --system-roots if the exchange's certificate is from a public CA)")
			}
			var cred *adapter.Credential
			var onRenew func(context.Context, *adapter.Credential) error
			switch {
			case uri != "" && keystore == "":
				chain, err := readCerts(chainPath)
				if err != nil {
					return err
				}
				key, err := newKeyResolver().Signer(ctx, uri)
				if err != nil {
					return err
				}
				cred = &adapter.Credential{Key: key, Chain: chain}
				onRenew = func(ctx context.Context, c *adapter.Credential) error {
					return os.WriteFile(chainPath, encodeChain(c.Chain...), 0o644)
				}
			case keystore != "" && uri == "":
				pw, err := readPassword(pwFile, passwordEnv)
				if err != nil {
					return err
				}
				data, err := os.ReadFile(keystore)
				if err != nil {
					return err
				}
				st, err := tokens.DecodeKeystore(data, pw)
				if err != nil {
					return err
				}
				cred = &adapter.Credential{Key: st.Key, Chain: append([]*x509.Certificate{st.Cert}, st.Chain...)}
				onRenew = func(ctx context.Context, c *adapter.Credential) error {
					ks, err := tokens.EncodeKeystore(rand.Reader, c.Key, c.Chain[0], c.Chain[1:], pw)
					if err != nil {
						return err
					}
					tmp := keystore + ".new"
					if err := os.WriteFile(tmp, ks, 0o600); err != nil {
						return err
					}
					return os.Rename(tmp, keystore)
				}
			default:
				return errors.New("give exactly one of --keystore and --pkcs11 (with --chain)")
			}
			a, err := adapter.NewAdapter(ex, cred)
			if err != nil {
				return err
			}
			a.RootCAs = roots
			a.OnRenew = onRenew
			a.OnError = func(err error) { fmt.Fprintln(cmd.ErrOrStderr(), "adapter:", err) }
			// Renewal at two thirds of the token's life, authenticated by the current token, at the exchange's
			// POST /v1/renewal unless --renew-url says otherwise ("off" disables it).
			if renewURL == "" {
				renewURL = strings.TrimRight(exchange, "/") + "/v1/renewal"
			}
			if renewURL != "off" {
				a.Renewer = &adapter.HTTPRenewer{URL: renewURL, RootCAs: roots}
				go a.RunRenewal(ctx)
				fmt.Fprintf(cmd.OutOrStdout(), "renewal at %s, from %s\n", renewURL, a.RenewalTime().UTC().Format(time.RFC3339))
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "adapter for %s listening on http://%s, forwarding to %s\n",
				cred.Leaf().Subject.SerialNumber, l.Addr(), ex)
			return a.Serve(ctx, l)
		},
	}
	f := run.Flags()
	f.StringVar(&exchange, "exchange", "", "gateway base URL (https)")
	f.StringVar(&listen, "listen", "127.0.0.1:8780", "loopback address for the facility's system")
	f.StringVar(&caBundle, "ca-bundle", "", "the exchange's root, PEM (from http://EXCHANGE:8080/ca/root.pem); required unless --system-roots")
	f.BoolVar(&systemRoots, "system-roots", false, "verify the exchange with this machine's trusted roots instead of --ca-bundle")
	f.StringVar(&keystore, "keystore", "", "software token: keystore from 'mohr token install'")
	f.StringVar(&pwFile, "password-file", "", "software token: keystore password file (or env "+passwordEnv+")")
	f.StringVar(&uri, "pkcs11", "", "physical token: RFC 7512 URI of the token key")
	f.StringVar(&chainPath, "chain", "chain.pem", "physical token: certificate chain")
	f.StringVar(&renewURL, "renew-url", "", "renewal endpoint (default: <exchange>/v1/renewal; off: no renewal); renews at 2/3 of the lifetime")
	run.MarkFlagRequired("exchange")
	cmd.AddCommand(run)
	return cmd
}

// loopbackOnly refuses a listen address whose host is not a loopback address (or localhost).
func loopbackOnly(listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: give HOST:PORT on loopback, for example 127.0.0.1:8780", listen)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--listen %q is not a loopback address: the adapter acts with the facility's token for whoever can reach it, so it listens on 127.0.0.1 only (put the facility's system on the same machine, or behind its own authenticated proxy)", listen)
}
