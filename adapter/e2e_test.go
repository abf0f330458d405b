package adapter_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/adapter"
	"github.com/mohr-hix/mohr/tokens"
	"github.com/mohr-hix/mohr/tokens/tokentest"
)

// exchange is a test exchange: CA with OCSP, registry, tokens service, upstream, gateway over real TLS.
type exchange struct {
	t        testing.TB
	clock    *tokentest.Clock
	ca       *tokentest.CA
	store    *tokens.MemStore
	svc      *tokens.Service
	upstream *httptest.Server
	gw       *httptest.Server
	gwURL    *url.URL
	rejects  chan error
}

const propagation = 30 * time.Second

func newExchange(t testing.TB) *exchange {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	clk := tokentest.NewClock(now)
	ca, err := tokentest.New("HIX", now)
	if err != nil {
		t.Fatal(err)
	}
	ca.Clock = clk.Now
	ocspSrv := httptest.NewServer(ca.OCSPHandler())
	t.Cleanup(ocspSrv.Close)
	ca.OCSPURL = ocspSrv.URL
	st := tokens.NewMemStore()
	svc := &tokens.Service{Store: st, Issuer: ca, Revoker: ca, Clock: clk.Now}
	if err := svc.ImportFacilities(context.Background(), []tokens.Facility{
		tokentest.Facility("SIAM-1001", now), tokentest.Facility("SIAM-2002", now)}, "test"); err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.Header.Get(adapter.HeaderSIAMID)+" "+strings.Join(r.Header.Values(adapter.HeaderSIAMID), "|"))
	}))
	t.Cleanup(up.Close)
	upURL, _ := url.Parse(up.URL)

	x := &exchange{t: t, clock: clk, ca: ca, store: st, svc: svc, upstream: up, rejects: make(chan error, 100)}
	rev := &adapter.RevocationCache{Checker: &adapter.OCSPChecker{Clock: clk.Now}, Clock: clk.Now, MaxTTL: time.Minute}
	standing := &adapter.StandingCache{Checker: tokens.Standing{Registry: st, Clock: clk.Now}, TTL: propagation, Clock: clk.Now}
	newGW := func() *adapter.Gateway {
		return &adapter.Gateway{Roots: ca.Pool(), Intermediate: ca.Intermediate, Revocation: rev, Standing: standing,
			Clock: clk.Now, OnReject: func(r *http.Request, err error) {
				select {
				case x.rejects <- err:
				default:
				}
			}}
	}
	mux := http.NewServeMux()
	renewGW := newGW()
	renewGW.Upstream = adapter.RenewalHandler(func(ctx context.Context, peer *x509.Certificate, csr *x509.CertificateRequest) ([]*x509.Certificate, error) {
		iss, err := svc.Renew(ctx, peer, csr, "adapter:"+peer.Subject.SerialNumber)
		if err != nil {
			return nil, err
		}
		return append([]*x509.Certificate{iss.Cert}, iss.Chain...), nil
	})
	mux.Handle("/hix/renew", renewGW)
	mux.Handle("/", adapter.NewReverseProxy(upURL, nil, newGW()))
	gw := httptest.NewUnstartedServer(mux)
	gw.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert}
	gw.StartTLS()
	t.Cleanup(gw.Close)
	x.gw = gw
	x.gwURL, _ = url.Parse(gw.URL)
	return x
}

func (x *exchange) serverRoots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(x.gw.Certificate())
	return p
}

// enrol runs the whole enrolment of a software token for siam and returns its credential, read back from the
// encrypted keystore as the adapter would.
func (x *exchange) enrol(siam string) *adapter.Credential {
	x.t.Helper()
	ctx := context.Background()
	code, _, err := x.svc.NewEnrolmentCode(ctx, siam, "ra:officer")
	if err != nil {
		x.t.Fatal(err)
	}
	key, _ := tokens.NewSoftwareKey(rand.Reader)
	csr, _ := tokens.NewCSR(rand.Reader, key, siam, "adapter")
	iss, err := x.svc.Enrol(ctx, tokens.EnrolRequest{Code: code, CSR: csr, Kind: tokens.KindSoftware, Actor: "facility:" + siam})
	if err != nil {
		x.t.Fatal(err)
	}
	return &adapter.Credential{Key: key, Chain: append([]*x509.Certificate{iss.Cert}, iss.Chain...)}
}

// client returns an HTTP client that presents cred (or no certificate when cred is nil) to the gateway.
func (x *exchange) client(cred *adapter.Credential) *http.Client {
	cfg := &tls.Config{RootCAs: x.serverRoots(), MinVersion: tls.VersionTLS13}
	if cred != nil {
		tc := tls.Certificate{PrivateKey: cred.Key}
		for _, c := range cred.Chain {
			tc.Certificate = append(tc.Certificate, c.Raw)
		}
		cfg.Certificates = []tls.Certificate{tc}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

func (x *exchange) get(c *http.Client, spoof string) (int, string) {
	x.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, x.gw.URL+"/fhir/Patient", nil)
	if spoof != "" {
		req.Header.Set(adapter.HeaderSIAMID, spoof)
	}
	resp, err := c.Do(req)
	if err != nil {
		x.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (x *exchange) lastReject() error {
	select {
	case err := <-x.rejects:
		return err
	case <-time.After(5 * time.Second):
		return nil
	}
}

func (x *exchange) drainRejects() {
	for {
		select {
		case <-x.rejects:
		default:
			return
		}
	}
}

func TestEndToEnd(t *testing.T) {
	x := newExchange(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cred := x.enrol("SIAM-1001")

	// The facility side: the adapter on 127.0.0.1.
	a, err := adapter.NewAdapter(x.gwURL, cred)
	if err != nil {
		t.Fatal(err)
	}
	a.RootCAs = x.serverRoots()
	a.Clock = x.clock.Now
	a.Renewer = &adapter.HTTPRenewer{URL: x.gw.URL + "/hix/renew", RootCAs: x.serverRoots()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve(ctx, l)
	local := "http://" + l.Addr().String()

	req, _ := http.NewRequest(http.MethodGet, local+"/fhir/Patient", nil)
	req.Header.Set(adapter.HeaderSIAMID, "SIAM-6666") // a spoofing local system
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello SIAM-1001 SIAM-1001" {
		t.Fatalf("through the adapter: %d %q", resp.StatusCode, body)
	}

	// A client with the token that sends its own X-HIX-SIAM-ID straight to the gateway: stripped, replaced.
	if code, body := x.get(x.client(cred), "SIAM-2002"); code != 200 || body != "hello SIAM-1001 SIAM-1001" {
		t.Fatalf("spoofed header: %d %q", code, body)
	}

	// Renewal over mTLS through the gateway, then a rekey; the adapter keeps working with the new certificate.
	oldSerial := cred.Leaf().SerialNumber
	if err := a.Renew(ctx, false); err != nil {
		t.Fatal(err)
	}
	if a.Credential().Leaf().SerialNumber.Cmp(oldSerial) == 0 || a.Credential().Key != cred.Key {
		t.Fatal("renewal did not change the certificate or changed the key")
	}
	a.NewKey = func(context.Context) (crypto.Signer, error) { return tokens.NewSoftwareKey(rand.Reader) }
	if err := a.Renew(ctx, true); err != nil {
		t.Fatal(err)
	}
	if a.Credential().Key == cred.Key {
		t.Fatal("rekey kept the key")
	}
	resp, err = http.Get(local + "/fhir/Patient")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "hello SIAM-1001") {
		t.Fatalf("after renewal: %d %q", resp.StatusCode, body)
	}
	ts, _ := x.svc.Tokens(ctx, "SIAM-1001")
	if len(ts) != 3 || ts[0].Status != tokens.TokenSuperseded || ts[2].Status != tokens.TokenActive {
		t.Fatalf("tokens after renewals: %+v", ts)
	}

	// The adapter refuses a non-loopback listener.
	if l2, err := net.Listen("tcp", "0.0.0.0:0"); err == nil {
		if err := a.Serve(ctx, l2); !errors.Is(err, adapter.ErrNotLoopback) {
			t.Fatalf("non-loopback: %v", err)
		}
		l2.Close()
	}
}

func TestGatewayRefuses(t *testing.T) {
	x := newExchange(t)
	ctx := context.Background()
	good := x.enrol("SIAM-1001")
	f := tokentest.Facility("SIAM-1001", x.clock.Now())

	issue := func(ca *tokentest.CA, edit func(*x509.Certificate)) *adapter.Credential {
		key, _ := tokens.NewSoftwareKey(rand.Reader)
		serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
		cert, chain, err := ca.IssueWith(key.Public(), serial, f, edit)
		if err != nil {
			t.Fatal(err)
		}
		return &adapter.Credential{Key: key, Chain: append([]*x509.Certificate{cert}, chain...)}
	}
	other, err := tokentest.New("Other", x.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	revoked := x.enrol("SIAM-1001")
	if err := x.svc.Revoke(ctx, revoked.Leaf().SerialNumber.Text(16), tokens.ReasonCodeKeyCompromise, "ra"); err != nil {
		t.Fatal(err)
	}
	now := x.clock.Now()
	// Without a client certificate the TLS handshake itself fails.
	if _, err := x.client(nil).Get(x.gw.URL + "/"); err == nil {
		t.Fatal("no client certificate: admitted")
	}
	tests := []struct {
		name string
		cred *adapter.Credential
		code int
		is   error
	}{
		{"revoked", revoked, 403, adapter.ErrRevoked},
		{"expired", issue(x.ca, func(c *x509.Certificate) { c.NotBefore, c.NotAfter = now.Add(-48*time.Hour), now.Add(-time.Hour) }), 403, adapter.ErrUntrusted},
		{"another CA", issue(other, nil), 403, adapter.ErrUntrusted},
		{"serverAuth profile", issue(x.ca, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }), 403, adapter.ErrUntrusted},
		{"no EKU", issue(x.ca, func(c *x509.Certificate) { c.ExtKeyUsage = nil }), 403, adapter.ErrWrongProfile},
		{"no facility extension", issue(x.ca, func(c *x509.Certificate) { c.ExtraExtensions = nil }), 403, adapter.ErrWrongProfile},
		{"subject names another SIAM ID", issue(x.ca, func(c *x509.Certificate) { c.Subject = pkix.Name{SerialNumber: "SIAM-2002"} }), 403, adapter.ErrWrongProfile},
		{"control: right profile, same CA", issue(x.ca, nil), 200, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x.drainRejects()
			code, body := x.get(x.client(tt.cred), "")
			if code != tt.code {
				t.Fatalf("status %d (%q), want %d", code, body, tt.code)
			}
			if tt.is != nil {
				if err := x.lastReject(); !errors.Is(err, tt.is) {
					t.Fatalf("reject reason %v, want %v", err, tt.is)
				}
			}
		})
	}

	// A facility whose licence lapses is refused within the propagation time, not before the cache says so.
	if code, _ := x.get(x.client(good), ""); code != 200 {
		t.Fatalf("good token refused: %d", code)
	}
	lapsed := f
	lapsed.LicenceStatus = tokens.StatusSuspended
	if err := x.store.PutFacilities(ctx, []tokens.Facility{lapsed}, tokentestEvent()); err != nil {
		t.Fatal(err)
	}
	x.clock.Advance(propagation - time.Second)
	if code, _ := x.get(x.client(good), ""); code != 200 {
		t.Fatalf("refused before the propagation time: %d", code)
	}
	x.clock.Advance(2 * time.Second)
	x.drainRejects()
	if code, _ := x.get(x.client(good), ""); code != 403 {
		t.Fatalf("lapsed licence admitted after the propagation time: %d", code)
	}
	if err := x.lastReject(); !errors.Is(err, adapter.ErrNotInGoodStanding) {
		t.Fatalf("reason %v", err)
	}
	// The sync puts the token on hold; once the licence is back and the hold released, the OCSP cache
	// (bounded by MaxTTL) and the standing cache let it in again.
	rep, err := x.svc.Sync(ctx, nil, "system:sync")
	if err != nil || len(rep.Actions) == 0 || rep.Actions[0].Did != "hold" {
		t.Fatalf("sync: %+v %v", rep, err)
	}
	x.store.PutFacilities(ctx, []tokens.Facility{f}, tokentestEvent())
	if rep, _ := x.svc.Sync(ctx, nil, "system:sync"); len(rep.Actions) == 0 || rep.Actions[0].Did != "release" {
		t.Fatalf("release: %+v", rep)
	}
	x.clock.Advance(2 * time.Minute)
	if code, _ := x.get(x.client(good), ""); code != 200 {
		t.Fatalf("restored facility refused: %d", code)
	}
}

func TestRevocationFailsClosed(t *testing.T) {
	x := newExchange(t)
	cred := x.enrol("SIAM-1001")
	x.ca.OCSPURL = ""
	ocspDown := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer ocspDown.Close()
	g := &adapter.Gateway{Roots: x.ca.Pool(), Intermediate: x.ca.Intermediate, Clock: x.clock.Now,
		Revocation: &adapter.OCSPChecker{URL: ocspDown.URL, Clock: x.clock.Now},
		Standing:   adapter.StandingFunc(func(context.Context, string) (bool, error) { return true, nil }),
		Upstream:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
	}
	_, err := g.Authorize(context.Background(), &tls.ConnectionState{PeerCertificates: cred.Chain})
	if !errors.Is(err, adapter.ErrRevocationUnknown) {
		t.Fatalf("OCSP down: %v", err)
	}
	g.Revocation = &adapter.OCSPChecker{Clock: x.clock.Now} // the responder named in the certificate
	g.Standing = adapter.StandingFunc(func(context.Context, string) (bool, error) { return false, errors.New("registry down") })
	if _, err := g.Authorize(context.Background(), &tls.ConnectionState{PeerCertificates: cred.Chain}); !errors.Is(err, adapter.ErrStandingUnknown) {
		t.Fatalf("registry down: %v", err)
	}
	if _, err := g.Authorize(context.Background(), nil); !errors.Is(err, adapter.ErrNoClientCert) {
		t.Fatalf("no certificate: %v", err)
	}
	// A stale OCSP answer (past nextUpdate) is not accepted.
	x.ca.OCSPValidity = time.Second
	g.Standing = adapter.StandingFunc(func(context.Context, string) (bool, error) { return true, nil })
	g.Revocation = &adapter.OCSPChecker{Clock: func() time.Time { return x.clock.Now().Add(time.Hour) }}
	if _, err := g.Authorize(context.Background(), &tls.ConnectionState{PeerCertificates: cred.Chain}); !errors.Is(err, adapter.ErrRevocationUnknown) {
		t.Fatalf("stale OCSP: %v", err)
	}
}

// TestGatewayConcurrent drives the gateway's caches from many connections at once (run with -race).
func TestGatewayConcurrent(t *testing.T) {
	x := newExchange(t)
	creds := []*adapter.Credential{x.enrol("SIAM-1001"), x.enrol("SIAM-2002"), x.enrol("SIAM-1001")}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := x.client(creds[i%len(creds)])
			for j := 0; j < 20; j++ {
				if j%7 == 0 {
					x.clock.Advance(10 * time.Second) // expire cache entries while others read them
				}
				resp, err := c.Get(x.gw.URL + "/x")
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- errors.New(resp.Status)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
