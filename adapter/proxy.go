package adapter

import (
	"net/http"
	"net/http/httputil"
	"net/url"
)

// NewReverseProxy returns the exchange-side gateway as a reverse proxy: g (whose Upstream it sets) in front of
// an httputil.ReverseProxy to upstream. The verified X-HIX-SIAM-ID header travels upstream; any copy the client
// sent is removed by g first. X-Forwarded-For and friends are set by the proxy, never taken from the client.
func NewReverseProxy(upstream *url.URL, transport http.RoundTripper, g *Gateway) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
			pr.Out.Host = upstream.Host
		},
		Transport: transport,
	}
	g.Upstream = rp
	return g
}
