package adapter

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// Credential is a token's key and certificate chain (leaf first, then the intermediate).
type Credential struct {
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// Leaf returns the end-entity certificate.
func (c *Credential) Leaf() *x509.Certificate { return c.Chain[0] }

func (c *Credential) tlsCertificate() *tls.Certificate {
	tc := &tls.Certificate{PrivateKey: c.Key, Leaf: c.Chain[0]}
	for _, x := range c.Chain {
		tc.Certificate = append(tc.Certificate, x.Raw)
	}
	return tc
}

// Renewer obtains a new certificate for csr, authenticated by the current credential (the request travels over
// mutual TLS with it). HTTPRenewer implements it against RenewalHandler; tests use tokens.Service.Renew.
type Renewer interface {
	Renew(ctx context.Context, current *Credential, csr *x509.CertificateRequest) (chain []*x509.Certificate, err error)
}

// KeyGenerator makes a new key for a rekey: on the facility's PKCS#11 device for a physical token, in memory
// for a software token (the caller writes the new keystore from OnRenew).
type KeyGenerator func(ctx context.Context) (crypto.Signer, error)

// Adapter is the facility side: a loopback HTTP endpoint forwarding to the exchange over mutual TLS with the
// token, and the renewal loop.
type Adapter struct {
	// Exchange is the gateway's base URL (https).
	Exchange *url.URL
	// RootCAs verifies the exchange's server certificate; nil means the system pool.
	RootCAs *x509.CertPool
	Renewer Renewer
	// NewKey makes the key of a rekey; nil means rekey is not available and renewal reuses the key.
	NewKey KeyGenerator
	// OnRenew is called with each new credential, e.g. to write it to the keystore or the device.
	OnRenew func(ctx context.Context, c *Credential) error
	// OnError is told of each failed renewal attempt (for the caller's logs).
	OnError func(err error)
	// Clock gives now; nil means time.Now.
	Clock func() time.Time
	// Sleep waits for d or until ctx ends; nil means a timer. Tests inject a fake.
	Sleep func(ctx context.Context, d time.Duration) error
	// RenewFraction is the part of the lifetime after which to renew; zero means 2/3.
	RenewFraction float64
	// MinBackoff and MaxBackoff bound the retry delay after a failed renewal; zero means 1 s and 5 min.
	MinBackoff, MaxBackoff time.Duration

	mu        sync.RWMutex
	cred      *Credential
	renewMu   sync.Mutex
	transport *http.Transport // the current generation's transport, under mu
}

// NewAdapter returns an Adapter holding cred.
func NewAdapter(exchange *url.URL, cred *Credential) (*Adapter, error) {
	if exchange == nil || exchange.Scheme != "https" {
		return nil, errors.New("adapter: the exchange URL must be https")
	}
	if cred == nil || cred.Key == nil || len(cred.Chain) == 0 {
		return nil, errors.New("adapter: a credential with a key and a certificate is required")
	}
	return &Adapter{Exchange: exchange, cred: cred}, nil
}

// Credential returns the current credential.
func (a *Adapter) Credential() *Credential {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.cred
}

func (a *Adapter) now() time.Time {
	if a.Clock != nil {
		return a.Clock()
	}
	return time.Now()
}

// Transport returns the mutual-TLS transport to the exchange for the current credential. Each credential has
// its own transport: after a renewal new requests go through a new one (new connections, new certificate) and
// the old one's connections are closed once idle. Closing idle connections on a shared transport is not enough:
// HTTP/2 multiplexes every request onto one connection that, under steady traffic, is never idle.
func (a *Adapter) Transport() *http.Transport {
	a.mu.RLock()
	t := a.transport
	a.mu.RUnlock()
	if t != nil {
		return t
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.transport == nil {
		a.transport = a.newTransport(a.cred)
	}
	return a.transport
}

func (a *Adapter) newTransport(cred *Credential) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS13,
			RootCAs:    a.RootCAs,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return cred.tlsCertificate(), nil
			},
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
}

// roundTripper sends each request through the current credential's transport.
type roundTripper struct{ a *Adapter }

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	return rt.a.Transport().RoundTrip(r)
}

// Handler returns the local endpoint: a reverse proxy to the exchange. Any X-HIX-SIAM-ID header from the local
// system is dropped (only the gateway sets it).
func (a *Adapter) Handler() http.Handler {
	target := a.Exchange
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			pr.Out.Header.Del(HeaderSIAMID)
		},
		Transport: roundTripper{a},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if a.OnError != nil {
				a.OnError(fmt.Errorf("adapter: forward: %w", err))
			}
			http.Error(w, "exchange unreachable", http.StatusBadGateway)
		},
	}
}

// Serve serves Handler on l, which must listen on a loopback address, until ctx ends.
func (a *Adapter) Serve(ctx context.Context, l net.Listener) error {
	if err := requireLoopback(l.Addr()); err != nil {
		return err
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("adapter: serve: %w", err)
	}
	return nil
}

func requireLoopback(addr net.Addr) error {
	ta, ok := addr.(*net.TCPAddr)
	if !ok || !ta.IP.IsLoopback() {
		return fmt.Errorf("%w (got %s)", ErrNotLoopback, addr)
	}
	return nil
}

// RenewalTime returns when the current certificate should be renewed: NotBefore plus RenewFraction (2/3) of its
// lifetime.
func (a *Adapter) RenewalTime() time.Time {
	leaf := a.Credential().Leaf()
	f := a.RenewFraction
	if f <= 0 || f >= 1 {
		f = 2.0 / 3.0
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(time.Duration(float64(life) * f))
}

// Renew renews the certificate now, with a new key if rekey is true (and NewKey is set). On success the new
// credential is in use for new connections; on failure the current one is kept.
func (a *Adapter) Renew(ctx context.Context, rekey bool) error {
	a.renewMu.Lock()
	defer a.renewMu.Unlock()
	cur := a.Credential()
	key := cur.Key
	if rekey {
		if a.NewKey == nil {
			return errors.New("adapter: rekey requested but no key generator configured")
		}
		k, err := a.NewKey(ctx)
		if err != nil {
			return fmt.Errorf("adapter: rekey: %w", err)
		}
		key = k
	}
	leaf := cur.Leaf()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{SerialNumber: leaf.Subject.SerialNumber, CommonName: leaf.Subject.CommonName},
	}, key)
	if err != nil {
		return fmt.Errorf("adapter: CSR: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return fmt.Errorf("adapter: CSR: %w", err)
	}
	chain, err := a.Renewer.Renew(ctx, cur, csr)
	if err != nil {
		return fmt.Errorf("adapter: renew: %w", err)
	}
	if len(chain) == 0 || !publicKeyEqual(key.Public(), chain[0].PublicKey) {
		return errors.New("adapter: renew: the new certificate is not for our key")
	}
	if chain[0].Subject.SerialNumber != leaf.Subject.SerialNumber {
		return errors.New("adapter: renew: the new certificate is for another facility")
	}
	next := &Credential{Key: key, Chain: chain}
	if a.OnRenew != nil {
		if err := a.OnRenew(ctx, next); err != nil {
			return fmt.Errorf("adapter: store renewed credential: %w", err)
		}
	}
	a.mu.Lock()
	a.cred = next
	prev := a.transport
	a.transport = a.newTransport(next)
	a.mu.Unlock()
	if prev != nil {
		// Requests in flight finish on the old connections; those then close as idle (now, or after
		// IdleConnTimeout at the latest, since nothing new is sent through prev).
		prev.CloseIdleConnections()
		time.AfterFunc(5*time.Second, prev.CloseIdleConnections)
	}
	return nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func (a *Adapter) sleep(ctx context.Context, d time.Duration) error {
	if a.Sleep != nil {
		return a.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// RunRenewal renews the certificate at RenewalTime, forever, until ctx ends. A failed attempt (the CA
// unreachable, say) is reported to OnError and retried with exponential backoff between MinBackoff and
// MaxBackoff; the current certificate stays in use while it is valid.
func (a *Adapter) RunRenewal(ctx context.Context) error {
	minB, maxB := a.MinBackoff, a.MaxBackoff
	if minB <= 0 {
		minB = time.Second
	}
	if maxB <= 0 {
		maxB = 5 * time.Minute
	}
	for {
		if d := a.RenewalTime().Sub(a.now()); d > 0 {
			if err := a.sleep(ctx, d); err != nil {
				return err
			}
		}
		backoff := minB
		for {
			err := a.Renew(ctx, false)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !a.now().Before(a.Credential().Leaf().NotAfter) {
				err = fmt.Errorf("%w: %w", ErrCertificateExpired, err)
			}
			if a.OnError != nil {
				a.OnError(err)
			}
			if err := a.sleep(ctx, backoff); err != nil {
				return err
			}
			backoff = min(backoff*2, maxB)
		}
	}
}
