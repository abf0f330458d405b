// Command mohr-bench is a small load generator for the Mohr API on loopback: it sends one kind of request
// from a fixed number of concurrent clients for a fixed time and prints requests/s, latency percentiles and
// the error count (any transport error or non-2xx answer). It exits 1 when there were errors.
//
// Without -url it starts an in-process API server (package api) with stub services on 127.0.0.1, so the
// numbers measure the API layer alone: TLS, routing, authentication, the access matrix, limits, metrics.
// With -url it loads a running `mohr serve`; the URL must point at a loopback address.
//
//	mohr-bench -scenario verify -c 32 -d 10s
//	mohr-bench -url https://127.0.0.1:8443 -cacert ca.pem -cert pharmacy.pem -key pharmacy.key \
//	    -scenario verify -body rx.p7s -c 32 -d 10s
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mohr-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	url, scenario            string
	conc                     int
	dur, warmup, timeout     time.Duration
	cacert, cert, key        string
	bodyFile, ocspFile       string
	token, caCert, caKey     string
	signers, chain           string
	pool                     int
	insecureSkipServerVerify bool
}

func run() error {
	var o options
	flag.StringVar(&o.url, "url", "", "base URL of a running API on loopback (empty: start an in-process server with stub services)")
	flag.StringVar(&o.scenario, "scenario", "verify", "verify | ocsp-post | ocsp-get | healthz | issue | bare-create | ingest | bare-ingest")
	flag.IntVar(&o.conc, "c", 32, "concurrent clients")
	flag.DurationVar(&o.dur, "d", 10*time.Second, "measured duration (at most 5m)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "warm-up before measuring")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	flag.StringVar(&o.cacert, "cacert", "", "PEM file of the CA of the server's TLS certificate")
	flag.StringVar(&o.cert, "cert", "", "PEM client certificate (verify needs a role that may verify)")
	flag.StringVar(&o.key, "key", "", "PEM client key")
	flag.StringVar(&o.bodyFile, "body", "", "CMS (DER) to verify; default: 2 KiB of filler (fine for stubs only)")
	flag.StringVar(&o.ocspFile, "ocsp-req", "", "DER OCSP request; default: 83 bytes of filler (fine for stubs only)")
	flag.StringVar(&o.token, "token", "", "issue: file with a bearer token (else the client certificate must be an operator's or RA officer's)")
	flag.StringVar(&o.caCert, "ca-cert", "", "bare-create: PEM issuer certificate")
	flag.StringVar(&o.caKey, "ca-key", "", "bare-create: PEM issuer key (PKCS#8 or SEC 1)")
	flag.StringVar(&o.signers, "signers", "", "ingest, bare-ingest: file of physicians, one a line: key.pem cert.pem nationalCode councilNumber")
	flag.StringVar(&o.chain, "chain", "", "ingest, bare-ingest: PEM issuing CA certificate of the physicians' certificates")
	flag.IntVar(&o.pool, "pool", 20000, "ingest: prescriptions signed before the run (each request sends a new one)")
	flag.Parse()
	if o.conc < 1 || o.conc > 1024 {
		return errors.New("-c must be 1 to 1024")
	}
	if o.dur <= 0 || o.dur > 5*time.Minute {
		return errors.New("-d must be in (0, 5m]")
	}

	if o.scenario == "bare-ingest" {
		return runBareIngest(o)
	}
	if o.scenario == "bare-create" {
		fn, err := bareCreate(o)
		if err != nil {
			return err
		}
		if o.warmup > 0 {
			loadLocal(fn, o.conc, o.warmup)
		}
		res := loadLocal(fn, o.conc, o.dur)
		res.print(o)
		if res.errors > 0 {
			return fmt.Errorf("%d errors (first: %v)", res.errors, res.firstErr)
		}
		return nil
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(256)}
	base := o.url
	if base == "" {
		st, err := startStub()
		if err != nil {
			return err
		}
		defer st.close()
		base = st.url
		tlsCfg.RootCAs = st.roots
		tlsCfg.Certificates = []tls.Certificate{st.client}
	} else {
		if err := loopbackOnly(base); err != nil {
			return err
		}
		if o.cacert != "" {
			pem, err := os.ReadFile(o.cacert)
			if err != nil {
				return err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return errors.New("no certificate in -cacert")
			}
			tlsCfg.RootCAs = pool
		}
		if o.cert != "" {
			c, err := tls.LoadX509KeyPair(o.cert, o.key)
			if err != nil {
				return err
			}
			tlsCfg.Certificates = []tls.Certificate{c}
		}
	}

	mk, err := scenario(o, base)
	if err != nil {
		return err
	}
	tr := &http.Transport{
		TLSClientConfig:       tlsCfg,
		MaxIdleConnsPerHost:   o.conc,
		MaxConnsPerHost:       o.conc,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: o.timeout,
		ForceAttemptHTTP2:     false,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	client := &http.Client{Transport: tr, Timeout: o.timeout}

	if o.warmup > 0 {
		load(client, mk, o.conc, o.warmup)
	}
	res := load(client, mk, o.conc, o.dur)
	tr.CloseIdleConnections()
	res.print(o)
	if res.errors > 0 {
		return fmt.Errorf("%d errors (first: %v)", res.errors, res.firstErr)
	}
	return nil
}

// loopbackOnly refuses targets that are not on this machine.
func loopbackOnly(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing %s: mohr-bench loads loopback addresses only", host)
	}
	return nil
}

func readOr(path string, def []byte) ([]byte, error) {
	if path == "" {
		return def, nil
	}
	return os.ReadFile(path)
}

func scenario(o options, base string) (func(context.Context) (*http.Request, error), error) {
	switch o.scenario {
	case "verify":
		body, err := readOr(o.bodyFile, bytes.Repeat([]byte{0x30}, 2048))
		if err != nil {
			return nil, err
		}
		return post(base+"/v1/verify", "application/cms", body), nil
	case "ocsp-post":
		body, err := readOr(o.ocspFile, bytes.Repeat([]byte{0x30}, 83))
		if err != nil {
			return nil, err
		}
		return post(base+"/ocsp", "application/ocsp-request", body), nil
	case "ocsp-get":
		body, err := readOr(o.ocspFile, bytes.Repeat([]byte{0x30}, 83))
		if err != nil {
			return nil, err
		}
		u := base + "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(body))
		return func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, "GET", u, nil)
		}, nil
	case "issue":
		return issueRequests(o, base)
	case "ingest":
		return ingestRequests(o, base)
	case "healthz":
		return func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, "GET", base+"/healthz", nil)
		}, nil
	}
	return nil, fmt.Errorf("unknown scenario %q", o.scenario)
}

func post(u, ct string, body []byte) func(context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, "POST", u, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", ct)
		return req, nil
	}
}

type result struct {
	n, errors int64
	firstErr  error
	elapsed   time.Duration
	lats      []time.Duration
}

// load runs HTTP requests made by mk from conc connections for d. A request's latency is from sending it to
// reading its whole answer (making it, which may sign a prescription, is not counted); an answer other than
// 2xx is an error. A worker whose mk fails stops.
func load(c *http.Client, mk func(context.Context) (*http.Request, error), conc int, d time.Duration) *result {
	return loadTimed(func() (time.Duration, error) {
		// Requests are not tied to the run's deadline: the last ones finish, so the end of the run is not an error.
		req, err := mk(context.Background())
		if err != nil {
			return 0, stopWorker{err}
		}
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(t0), err
	}, conc, d)
}

func (r *result) pct(p float64) time.Duration {
	if len(r.lats) == 0 {
		return 0
	}
	i := int(float64(len(r.lats)) * p)
	if i >= len(r.lats) {
		i = len(r.lats) - 1
	}
	return r.lats[i]
}

func (r *result) print(o options) {
	target := o.url
	if target == "" {
		target = "in-process stub"
	}
	fmt.Printf("scenario=%s target=%q concurrency=%d duration=%s requests=%d errors=%d rps=%.0f p50=%s p90=%s p99=%s max=%s\n",
		o.scenario, target, o.conc, r.elapsed.Round(time.Millisecond), r.n, r.errors,
		float64(r.n)/r.elapsed.Seconds(), r.pct(.50).Round(time.Microsecond), r.pct(.90).Round(time.Microsecond),
		r.pct(.99).Round(time.Microsecond), r.pct(1).Round(time.Microsecond))
}
