package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// issueRequests makes POST /v1/certificates requests for organisation-auth certificates, each for another
// subject (a subject's earlier certificates are scanned by the key-purpose check, so one subject issued
// thousands of times would measure that scan), over a pool of CSRs made in advance.
func issueRequests(o options, base string) (func(context.Context) (*http.Request, error), error) {
	var token string
	if o.token != "" {
		b, err := os.ReadFile(o.token)
		if err != nil {
			return nil, err
		}
		token = strings.TrimSpace(string(b))
	}
	csrs := make([][]byte, 64)
	for i := range csrs {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		if csrs[i], err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, k); err != nil {
			return nil, err
		}
	}
	var n atomic.Int64
	run := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	return func(ctx context.Context) (*http.Request, error) {
		i := n.Add(1)
		body, err := json.Marshal(map[string]any{"profile": "organisation-auth", "csr": csrs[i%int64(len(csrs))],
			"subject": map[string]any{"commonName": fmt.Sprintf("Bench Pharmacy %s-%d", run, i), "role": "pharmacy"}})
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, "POST", base+"/v1/certificates", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return req, nil
	}, nil
}

// bareCreate is the baseline of the issue scenario: x509.CreateCertificate of a comparable leaf (fresh random
// serial, clientAuth) with the given issuer certificate and key, nothing else.
func bareCreate(o options) (func() error, error) {
	if o.caCert == "" || o.caKey == "" {
		return nil, errors.New("bare-create needs -ca-cert and -ca-key")
	}
	cb, err := os.ReadFile(o.caCert)
	if err != nil {
		return nil, err
	}
	p, _ := pem.Decode(cb)
	if p == nil {
		return nil, errors.New("no PEM in -ca-cert")
	}
	issuer, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		return nil, err
	}
	kb, err := os.ReadFile(o.caKey)
	if err != nil {
		return nil, err
	}
	p, _ = pem.Decode(kb)
	if p == nil {
		return nil, errors.New("no PEM in -ca-key")
	}
	var key crypto.Signer
	if k, err := x509.ParsePKCS8PrivateKey(p.Bytes); err == nil {
		key, _ = k.(crypto.Signer)
	} else if k, err := x509.ParseECPrivateKey(p.Bytes); err == nil {
		key = k
	}
	if key == nil {
		return nil, errors.New("-ca-key: not a PKCS#8 or SEC 1 signing key")
	}
	lk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return func() error {
		var sb [16]byte
		rand.Read(sb[:])
		sb[0] &= 0x7f
		tmpl := &x509.Certificate{SerialNumber: new(big.Int).SetBytes(sb[:]),
			Subject:   pkix.Name{CommonName: "Bench Pharmacy", Organization: []string{"Bench"}, Country: []string{"IR"}},
			NotBefore: now, NotAfter: now.Add(365 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		_, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, lk.Public(), key)
		return err
	}, nil
}

// loadLocal runs fn, a function run in this process, from conc goroutines for d; its latency is the whole call.
func loadLocal(fn func() error, conc int, d time.Duration) *result {
	return loadTimed(func() (time.Duration, error) {
		t0 := time.Now()
		err := fn()
		return time.Since(t0), err
	}, conc, d)
}

// stopWorker wraps an error after which a worker of loadTimed stops (it cannot make further requests).
type stopWorker struct{ error }

// loadTimed calls op from conc goroutines until d has passed; op returns the latency it measured itself (so it
// may leave preparation out) or an error, counted and not timed.
func loadTimed(op func() (time.Duration, error), conc int, d time.Duration) *result {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	res := &result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var n, nerr atomic.Int64
	var firstErr atomic.Pointer[error] // not atomic.Value: its swaps panic on errors of different types
	start := time.Now()
	for range conc {
		wg.Go(func() {
			var local []time.Duration
			defer func() {
				mu.Lock()
				res.lats = append(res.lats, local...)
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				lat, err := op()
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					nerr.Add(1)
					if _, stop := err.(stopWorker); stop {
						return
					}
					continue
				}
				local = append(local, lat)
				n.Add(1)
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.n, res.errors = n.Load(), nerr.Load()
	if p := firstErr.Load(); p != nil {
		res.firstErr = *p
	}
	slices.Sort(res.lats)
	return res
}
