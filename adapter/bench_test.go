package adapter_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/adapter"
)

// benchTarget is a TLS server requiring a client certificate, in front of the exchange's upstream: either a
// plain httputil.ReverseProxy (the baseline) or the Gateway with its checks.
func benchTarget(b *testing.B, x *exchange, gateway bool) *httptest.Server {
	upURL, _ := url.Parse(x.upstream.URL)
	var h http.Handler
	if gateway {
		g := &adapter.Gateway{Roots: x.ca.Pool(), Intermediate: x.ca.Intermediate, Clock: x.clock.Now,
			Revocation: &adapter.RevocationCache{Checker: &adapter.OCSPChecker{Clock: x.clock.Now}, Clock: x.clock.Now, MaxTTL: time.Hour},
			Standing:   &adapter.StandingCache{Checker: tokensStanding(x), TTL: time.Hour, Clock: x.clock.Now}}
		h = adapter.NewReverseProxy(upURL, benchUpstreamTransport(), g)
	} else {
		rp := httputil.NewSingleHostReverseProxy(upURL)
		rp.Transport = benchUpstreamTransport()
		h = rp
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	b.Cleanup(srv.Close)
	return srv
}

func benchUpstreamTransport() http.RoundTripper {
	return &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
}

func benchClient(x *exchange, srv *httptest.Server, cred *adapter.Credential, keepAlive bool) *http.Client {
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	tc := tls.Certificate{PrivateKey: cred.Key}
	for _, c := range cred.Chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{tc}, MinVersion: tls.VersionTLS13},
		DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 256,
	}}
}

func benchRequests(b *testing.B, gateway, keepAlive bool) {
	x := newExchange(b)
	cred := x.enrol("SIAM-1001")
	srv := benchTarget(b, x, gateway)
	c := benchClient(x, srv, cred, keepAlive)
	do := func() {
		resp, err := c.Get(srv.URL + "/fhir/Patient/1")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	do() // warm the caches
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			do()
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkProxy compares requests/s over kept-alive mTLS connections: plain reverse proxy vs the Gateway.
func BenchmarkProxy(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchRequests(b, false, true) })
	b.Run("gateway", func(b *testing.B) { benchRequests(b, true, true) })
}

// BenchmarkHandshake opens a new mTLS connection for every request (TLS 1.3 full handshake, ECDSA P-256 on
// both sides): without and with the Gateway's checks.
func BenchmarkHandshake(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchRequests(b, false, false) })
	b.Run("gateway", func(b *testing.B) { benchRequests(b, true, false) })
}

// BenchmarkPaired alternates one request through the plain proxy and one through the gateway in the same loop,
// so background load on a shared machine hits both alike; it reports each one's rate and the ratio.
func BenchmarkPaired(b *testing.B) {
	for _, keepAlive := range []bool{true, false} {
		name := "keepalive"
		if !keepAlive {
			name = "handshake"
		}
		b.Run(name, func(b *testing.B) {
			x := newExchange(b)
			cred := x.enrol("SIAM-1001")
			plainSrv, gwSrv := benchTarget(b, x, false), benchTarget(b, x, true)
			plain, gw := benchClient(x, plainSrv, cred, keepAlive), benchClient(x, gwSrv, cred, keepAlive)
			do := func(c *http.Client, url string) time.Duration {
				start := time.Now()
				resp, err := c.Get(url + "/fhir/Patient/1")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
				return time.Since(start)
			}
			do(plain, plainSrv.URL)
			do(gw, gwSrv.URL)
			b.ResetTimer()
			var tp, tg time.Duration
			for i := 0; i < b.N; i++ {
				if i%2 == 0 {
					tp += do(plain, plainSrv.URL)
					tg += do(gw, gwSrv.URL)
				} else {
					tg += do(gw, gwSrv.URL)
					tp += do(plain, plainSrv.URL)
				}
			}
			b.ReportMetric(float64(b.N)/tp.Seconds(), "plain-req/s")
			b.ReportMetric(float64(b.N)/tg.Seconds(), "gateway-req/s")
			b.ReportMetric(tp.Seconds()/tg.Seconds(), "gateway/plain")
		})
	}
}

// BenchmarkAuthorize measures the gateway's checks in process: with warm caches, and with path validation and
// profile checks redone each time (a fresh Gateway sharing the warm revocation and standing caches).
func BenchmarkAuthorize(b *testing.B) {
	x := newExchange(b)
	cred := x.enrol("SIAM-1001")
	cs := &tls.ConnectionState{PeerCertificates: cred.Chain}
	rev := &adapter.RevocationCache{Checker: &adapter.OCSPChecker{Clock: x.clock.Now}, Clock: x.clock.Now, MaxTTL: time.Hour}
	st := &adapter.StandingCache{Checker: tokensStanding(x), TTL: time.Hour, Clock: x.clock.Now}
	newGW := func() *adapter.Gateway {
		return &adapter.Gateway{Roots: x.ca.Pool(), Intermediate: x.ca.Intermediate, Clock: x.clock.Now, Revocation: rev, Standing: st}
	}
	g := newGW()
	if _, err := g.Authorize(context.Background(), cs); err != nil {
		b.Fatal(err)
	}
	b.Run("warm", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := g.Authorize(context.Background(), cs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("path-validation", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := newGW().Authorize(context.Background(), cs); err != nil {
				b.Fatal(err)
			}
		}
	})
}
