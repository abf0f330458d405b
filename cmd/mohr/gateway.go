package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/adapter"
	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/tokens"
)

// defaultGatewayListen is loopback, and a port `mohr serve` does not use (8443 API, 8080 public): a gateway
// facing facilities is put on a public address on purpose, with --listen.
const defaultGatewayListen = "127.0.0.1:9443"

func newGatewayCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "gateway", Short: "The exchange-side gateway that admits only valid adapter tokens"}
	var listen, upstream, tlsCert, tlsKey, rootsPath, interPath, ocspURL, registryURL, feedURL, renewal string
	var propagation, ocspTTL, feedInterval, feedMaxLag time.Duration
	run := &cobra.Command{
		Use:   "run",
		Short: "Reverse proxy to the upstream for adapters with valid, unrevoked tokens of facilities in good standing",
		Long: "Reverse proxy to the upstream for adapters with valid, unrevoked tokens of facilities in good standing.\n\n" +
			"Revocation: the gateway follows the exchange's change feed (--revocation-feed, GET /v1/revocations of\n" +
			"`mohr serve`) every --feed-interval, so a revoked token is refused within about a second; if the feed is\n" +
			"silent for --feed-max-lag it refuses every adapter (503) until it answers again. Certificates the feed has\n" +
			"not mentioned since the start are checked by OCSP. Renewal: with the exchange's data (--data-dir) the\n" +
			"gateway serves POST /v1/renewal itself, so adapters behind it renew through it.",
		Example: "  mohr gateway run --listen 0.0.0.0:9443 --upstream http://127.0.0.1:9000 \\\n" +
			"      --tls-cert gateway-chain.pem --tls-key gateway.key --roots root.pem --intermediate intermediate.pem \\\n" +
			"      --revocation-feed https://127.0.0.1:8443/v1/revocations",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			up, err := url.Parse(upstream)
			if err != nil || (up.Scheme != "http" && up.Scheme != "https") || up.Host == "" {
				return fmt.Errorf("--upstream %q is not an http(s):// address of the service behind the gateway", upstream)
			}
			roots, err := certPoolFromFile(rootsPath)
			if err != nil {
				return fmt.Errorf("--roots %s: %s; give the exchange's root in PEM (curl -o root.pem http://EXCHANGE:8080/ca/root.pem)", rootsPath, plainError(err))
			}
			inter, err := readCerts(interPath)
			if err != nil {
				return fmt.Errorf("--intermediate %s: %s; give the health intermediate CA in PEM (curl http://EXCHANGE:8080/ca/chain.pem: its first certificate)", interPath, plainError(err))
			}
			cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
			if err != nil {
				return fmt.Errorf("--tls-cert %s / --tls-key %s do not load as a certificate chain and its key (%v): issue the gateway a tls-server certificate with `mohr cert issue --profile tls-server --name HOST --dns HOST --csr gateway.csr --chain-out gateway-chain.pem` (docs/journeys.md)", tlsCert, tlsKey, plainError(err))
			}

			// Standing: the registry the gateway reads, said at start.
			var standing adapter.StandingChecker
			var svc *tokens.Service
			var cfg *Config
			if registryURL != "" {
				standing = tokens.Standing{Registry: &tokens.HTTPRegistry{BaseURL: registryURL, Client: httpClient(5 * time.Second)}}
				fmt.Fprintf(out, "standing: from the registry at %s (answers kept %s)\n", registryURL, propagation)
			} else {
				if cfg, err = loadConfig(); err != nil {
					return err
				}
				if err := requireInitialised(cfg); err != nil {
					return fmt.Errorf("standing: the gateway reads facility standing from the exchange's registry, and there is none: %w (or give --registry-url)", err)
				}
				if svc, err = openTokenService(ctx); err != nil {
					return err
				}
				standing = tokens.Standing{Registry: svc.Store}
				fmt.Fprintf(out, "standing: from the facility registry in %s (answers kept %s)\n", cfg.dataDir, propagation)
			}

			// Revocation: the change feed in front of OCSP.
			ocsp := &adapter.RevocationCache{Checker: &adapter.OCSPChecker{URL: ocspURL}, MaxTTL: ocspTTL}
			var revocation adapter.RevocationChecker = ocsp
			var follower *adapter.RevocationFollower
			ocspFrom := "each certificate's OCSP address"
			if ocspURL != "" {
				ocspFrom = ocspURL
			}
			switch feedURL {
			case "":
				return errors.New("no --revocation-feed: give the exchange's change feed, for example --revocation-feed https://127.0.0.1:8443/v1/revocations (the API of `mohr serve`), so a revoked token is refused within seconds; --revocation-feed off relies on OCSP alone, and a revocation then takes up to --ocsp-cache to bite")
			case "off":
				fmt.Fprintf(out, "revocation: OCSP at %s only, answers kept up to %s: a revoked token passes for up to %s (no --revocation-feed)\n", ocspFrom, ocspTTL, ocspTTL)
			default:
				src, err := feedSource(feedURL, roots)
				if err != nil {
					return err
				}
				follower = &adapter.RevocationFollower{Source: src, Checker: ocsp, Interval: feedInterval, MaxLag: feedMaxLag,
					OnError: func(err error) {
						if err != nil {
							fmt.Fprintf(cmd.ErrOrStderr(), "gateway: cannot read the revocation feed at %s (%v): refusing every adapter after %s without it; check that `mohr serve` runs there\n", feedURL, plainError(err), feedMaxLag)
						} else {
							fmt.Fprintf(cmd.ErrOrStderr(), "gateway: the revocation feed at %s answers again\n", feedURL)
						}
					}}
				revocation = follower
				fmt.Fprintf(out, "revocation: following %s every %s (every adapter refused if it is silent for %s); otherwise OCSP at %s\n",
					feedURL, feedInterval, feedMaxLag, ocspFrom)
			}
			if feedMaxLag <= feedInterval {
				return fmt.Errorf("--feed-max-lag %s must be longer than --feed-interval %s", feedMaxLag, feedInterval)
			}

			standingCache := &adapter.StandingCache{Checker: standing, TTL: propagation}
			newGW := func() *adapter.Gateway {
				return &adapter.Gateway{Roots: roots, Intermediate: inter[0], Revocation: revocation, Standing: standingCache,
					OnReject: func(r *http.Request, err error) {
						fmt.Fprintf(cmd.ErrOrStderr(), "gateway: refused %s: %v\n", r.RemoteAddr, err)
					}}
			}
			mux := http.NewServeMux()
			mux.Handle("/", adapter.NewReverseProxy(up, nil, newGW()))

			// Renewal, behind the same checks: issued here from the exchange's CA, so adapters behind the
			// gateway renew through it (the upstream cannot: it never sees the adapter's certificate).
			switch {
			case renewal == "off":
				fmt.Fprintln(out, "renewal: off (--renewal off)")
			case renewal != "auto":
				return fmt.Errorf("--renewal %q: give auto (serve POST /v1/renewal when the exchange's CA is in --data-dir) or off", renewal)
			case svc == nil || svc.Issuer == nil:
				fmt.Fprintln(out, "renewal: off (the gateway has no CA: run it with the exchange's --data-dir to serve POST /v1/renewal)")
			default:
				chain, err := readChain(cfg)
				if err != nil {
					return err
				}
				gw := newGW()
				gw.Upstream = adapter.RenewalHandler(gatewayRenew(svc, chain, follower))
				mux.Handle("POST /v1/renewal", gw)
				fmt.Fprintf(out, "renewal: POST /v1/renewal, issued by the CA in %s\n", cfg.dataDir)
			}

			l, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %v (another process, `mohr serve` on 8443 perhaps, holds it: choose another port)", listen, plainError(err))
			}
			if follower != nil {
				if err := follower.Poll(ctx); err != nil {
					follower.OnError(err)
				}
				go follower.Run(ctx)
			}
			srv := &http.Server{Handler: mux, TLSConfig: adapter.ServerTLSConfig(cert), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
			}()
			fmt.Fprintf(out, "gateway on https://%s -> %s\n", l.Addr(), up)
			if err := srv.ServeTLS(l, "", ""); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := run.Flags()
	f.StringVar(&listen, "listen", defaultGatewayListen, "TLS listen address (loopback by default; 0.0.0.0:9443 to face facilities)")
	f.StringVar(&upstream, "upstream", "", "the service behind the gateway, http(s)://HOST:PORT")
	f.StringVar(&tlsCert, "tls-cert", "", "the gateway's tls-server certificate chain, PEM, leaf first (mohr cert issue --profile tls-server --chain-out)")
	f.StringVar(&tlsKey, "tls-key", "", "the gateway's TLS key, PEM")
	f.StringVar(&rootsPath, "roots", "", "trust anchors (PEM): the exchange's root (http://EXCHANGE:8080/ca/root.pem)")
	f.StringVar(&interPath, "intermediate", "", "the health intermediate CA certificate (PEM)")
	f.StringVar(&ocspURL, "ocsp-url", "", "OCSP responder (default: from each certificate's AIA)")
	f.DurationVar(&ocspTTL, "ocsp-cache", 5*time.Minute, "longest an OCSP answer is reused (never beyond its nextUpdate)")
	f.StringVar(&feedURL, "revocation-feed", "", "the exchange's change feed, https://EXCHANGE:8443/v1/revocations (verified against --roots; http only on loopback), or off")
	f.DurationVar(&feedInterval, "feed-interval", time.Second, "how often the change feed is read")
	f.DurationVar(&feedMaxLag, "feed-max-lag", 4*time.Second, "refuse every adapter once the feed has not answered for this long: the worst case for a revoked token")
	f.StringVar(&registryURL, "registry-url", "", "HTTP/JSON facility registry for standing (default: the registry in --data-dir)")
	f.DurationVar(&propagation, "propagation", time.Minute, "standing cache TTL: the longest a lapsed facility keeps access")
	f.StringVar(&renewal, "renewal", "auto", "auto: serve POST /v1/renewal when --data-dir holds the exchange's CA; off")
	for _, n := range []string{"upstream", "tls-cert", "tls-key", "roots", "intermediate"} {
		run.MarkFlagRequired(n)
	}
	cmd.AddCommand(run)
	return cmd
}

// feedSource checks the feed's address: HTTPS verified against the exchange's roots, or plain HTTP on
// loopback only (the feed is not signed; whoever can change it in transit decides which tokens pass).
func feedSource(raw string, roots *x509.CertPool) (*adapter.HTTPRevocationSource, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--revocation-feed %q is not an address: give https://EXCHANGE:8443/v1/revocations", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/revocations"
	}
	q := u.Query()
	q.Set("profile", ca.ProfileFacilityAdapter)
	u.RawQuery = q.Encode()
	client := &http.Client{Timeout: 3 * time.Second}
	switch u.Scheme {
	case "https":
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	case "http":
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("--revocation-feed %q: plain HTTP only on loopback; use https:// (the feed is not signed, TLS verified against --roots keeps it honest)", raw)
		}
	default:
		return nil, fmt.Errorf("--revocation-feed %q: give https://EXCHANGE:8443/v1/revocations", raw)
	}
	return &adapter.HTTPRevocationSource{URL: u.String(), Client: client}, nil
}

// gatewayRenew renews an admitted adapter's token from the exchange's CA and answers the whole chain. Before
// it answers it reads the change feed once, so the gateway knows the new certificate from the feed before the
// adapter presents it (an OCSP responder on another node may not have pre-signed its response yet).
func gatewayRenew(svc *tokens.Service, chain []*x509.Certificate, follower *adapter.RevocationFollower) adapter.RenewFunc {
	return func(ctx context.Context, peer *x509.Certificate, csr *x509.CertificateRequest) ([]*x509.Certificate, error) {
		iss, err := svc.Renew(ctx, peer, csr, "gateway-renewal:"+ca.SerialHex(peer.SerialNumber))
		if err != nil {
			return nil, err
		}
		if follower != nil {
			follower.Poll(ctx) // best effort: without it the next regular read (within a second) learns it
		}
		return append([]*x509.Certificate{iss.Cert}, chain...), nil
	}
}

// plainError is err's innermost message: what a person needs, without the Go call chain around it.
func plainError(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			break
		}
		err = u
	}
	s := err.Error()
	for _, p := range []string{"open ", "tls: ", "x509: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}
