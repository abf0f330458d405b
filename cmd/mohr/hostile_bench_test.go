package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/ca"
)

// hostileNode builds a node with real time in a fresh data directory; mutate sets the policies under test.
func hostileNode(tb testing.TB, mutate func(*Config)) (*node, http.Handler, *x509.Certificate) {
	tb.Helper()
	dd := tb.TempDir()
	old := flagDataDir
	flagDataDir = dd
	tb.Cleanup(func() { flagDataDir = old })
	cfg := defaultConfig(dd)
	cfg.fillDerived()
	mutate(cfg)
	if err := cfg.validate(); err != nil {
		tb.Fatal(err)
	}
	n, err := build(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(n.close)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf, err := issueFor(context.Background(), n.ca, key, ca.Request{Profile: ca.ProfileOrganisationAuth, CommonName: "Razi Pharmacy", Role: "pharmacy"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := n.ocsp.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	srv, err := n.apiServer()
	if err != nil {
		tb.Fatal(err)
	}
	return n, publicOnly(n.caFiles(srv.Handler())), leaf
}

// hostileResult is what one phase of the hostile load did.
type hostileResult struct {
	requests, limited   int64
	ocspSigs, tsaTokens int64
	elapsed             time.Duration
}

func (r hostileResult) sigsPerSec() float64 {
	return float64(r.ocspSigs+r.tsaTokens) / r.elapsed.Seconds()
}

// hostileLoad sends, from 1024 source addresses and for d, an even mix of OCSP requests with a fresh nonce for
// an issued certificate, OCSP requests for random serials, and time-stamp queries, to the public listener's
// handler. It counts the fresh signatures the answers carry: distinct OCSP signatures (pre-signed responses
// repeat theirs; ECDSA signatures never repeat) and granted time-stamp tokens (each one signed).
func hostileLoad(h http.Handler, issuer, leaf *x509.Certificate, d time.Duration, workers int) hostileResult {
	var res hostileResult
	var mu sync.Mutex
	sigs := map[string]bool{}
	var next atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := next.Add(1)
				var req *http.Request
				switch i % 3 {
				case 0: // nonce OCSP for an issued certificate
					der, _ := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
					req = httptest.NewRequest("POST", "/ocsp", bytes.NewReader(withNonce(der)))
					req.Header.Set("Content-Type", "application/ocsp-request")
				case 1: // a random serial
					fake := *leaf
					fake.SerialNumber, _ = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
					der, _ := ocsp.CreateRequest(&fake, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
					req = httptest.NewRequest("POST", "/ocsp", bytes.NewReader(der))
					req.Header.Set("Content-Type", "application/ocsp-request")
				default: // a time-stamp query
					sum := sha256.Sum256([]byte(fmt.Sprint(i)))
					req = httptest.NewRequest("POST", "/tsa", bytes.NewReader(tsQuery(sum[:])))
					req.Header.Set("Content-Type", "application/timestamp-query")
				}
				req.RemoteAddr = fmt.Sprintf("198.18.%d.%d:40000", (i/256)%4, i%256)
				rw := httptest.NewRecorder()
				h.ServeHTTP(rw, req)
				mu.Lock()
				res.requests++
				switch {
				case rw.Code == http.StatusTooManyRequests:
					res.limited++
				case req.URL.Path == "/tsa" && rw.Code == 200 && rw.Body.Len() > 100:
					res.tsaTokens++
				case rw.Code == 200:
					if r, err := ocsp.ParseResponse(rw.Body.Bytes(), nil); err == nil {
						k := hex.EncodeToString(r.Signature)
						if !sigs[k] {
							sigs[k] = true
							res.ocspSigs++
						}
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// withNonce adds an RFC 8954 nonce extension to a DER OCSPRequest made by x/crypto/ocsp (which has none).
func withNonce(der []byte) []byte {
	var req struct {
		TBS struct {
			Raw     asn1.RawContent
			List    []asn1.RawValue
			ExtsRaw asn1.RawValue `asn1:"optional,explicit,tag:2"`
		}
	}
	if _, err := asn1.Unmarshal(der, &req); err != nil {
		return der
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	inner, _ := asn1.Marshal(nonce)
	ext, _ := asn1.Marshal(struct {
		ID    asn1.ObjectIdentifier
		Value []byte
	}{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}, inner})
	exts, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: ext})
	var list []byte
	for _, r := range req.TBS.List {
		list = append(list, r.FullBytes...)
	}
	listSeq, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: list})
	extField, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: exts})
	tbs, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: append(listSeq, extField...)})
	out, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: tbs})
	return out
}

// tsQuery is an RFC 3161 TimeStampReq for a SHA-256 digest with certReq.
func tsQuery(digest []byte) []byte {
	type algID struct{ Algorithm asn1.ObjectIdentifier }
	q := struct {
		Version int
		Imprint struct {
			Alg    algID
			Digest []byte
		}
		CertReq bool `asn1:"optional"`
	}{Version: 1, CertReq: true}
	q.Imprint.Alg = algID{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}}
	q.Imprint.Digest = digest
	der, _ := asn1.Marshal(q)
	return der
}

// BenchmarkHostilePublicListener measures the responder and TSA keys' signatures per second under a hostile mix
// (nonce OCSP, random serials, time-stamp queries from 1024 addresses), in the same run: with the old behaviour
// (the OCSP nonce and unknown-serial policies on, no signing limits) and with the new defaults (policies off,
// signing limits 120 per IP and 3000 overall per minute, scaled here to a 1 s window: 2 and 50 per second).
// MOHR_HOSTILE_SECONDS sets each phase's length (default 3).
func BenchmarkHostilePublicListener(b *testing.B) {
	d := 3 * time.Second
	if s := os.Getenv("MOHR_HOSTILE_SECONDS"); s != "" {
		if v, err := time.ParseDuration(s + "s"); err == nil {
			d = v
		}
	}
	oldN, oldH, oldLeaf := hostileNode(b, func(c *Config) {
		c.Services.OCSPSignNonces, c.Services.OCSPSignUnknown = true, true
		c.API.SignRateLimit, c.API.SignGlobalRateLimit, c.API.PublicRateLimit = 1<<30, 1<<30, 1<<30
	})
	newN, newH, newLeaf := hostileNode(b, func(c *Config) {
		c.API.RateWindow = ca.Duration(time.Second)
		c.API.SignRateLimit, c.API.SignGlobalRateLimit, c.API.PublicRateLimit = 2, 50, 1<<30
	})
	b.ResetTimer()
	var before, after hostileResult
	for i := 0; i < b.N; i++ {
		before = hostileLoad(oldH, oldN.ca.Issuer().Cert, oldLeaf, d, 8)
		after = hostileLoad(newH, newN.ca.Issuer().Cert, newLeaf, d, 8)
	}
	b.StopTimer()
	b.ReportMetric(before.sigsPerSec(), "old-sigs/s")
	b.ReportMetric(after.sigsPerSec(), "new-sigs/s")
	b.ReportMetric(float64(before.requests)/before.elapsed.Seconds(), "old-req/s")
	b.ReportMetric(float64(after.requests)/after.elapsed.Seconds(), "new-req/s")
	b.Logf("old: %d requests, %d OCSP signatures, %d TSA tokens, %d limited, %.0f signatures/s", before.requests,
		before.ocspSigs, before.tsaTokens, before.limited, before.sigsPerSec())
	b.Logf("new: %d requests, %d OCSP signatures, %d TSA tokens, %d limited, %.0f signatures/s (%.1f%% of old)", after.requests,
		after.ocspSigs, after.tsaTokens, after.limited, after.sigsPerSec(), 100*after.sigsPerSec()/before.sigsPerSec())
}

// TestHostileLoadSignsLittle: a short hostile load against the default policies makes the service keys sign no
// more than the global signing limit allows, while the old behaviour signs for every request.
func TestHostileLoadSignsLittle(t *testing.T) {
	oldN, oldH, oldLeaf := hostileNode(t, func(c *Config) {
		c.Services.OCSPSignNonces, c.Services.OCSPSignUnknown = true, true
		c.API.SignRateLimit, c.API.SignGlobalRateLimit, c.API.PublicRateLimit = 1<<30, 1<<30, 1<<30
	})
	newN, newH, newLeaf := hostileNode(t, func(c *Config) { c.API.PublicRateLimit, c.API.SignGlobalRateLimit = 1<<30, 50 })
	before := hostileLoad(oldH, oldN.ca.Issuer().Cert, oldLeaf, 500*time.Millisecond, 4)
	t0 := time.Now()
	after := hostileLoad(newH, newN.ca.Issuer().Cert, newLeaf, 500*time.Millisecond, 4)
	// The limiter counts in fixed windows aligned to the minute: a run that crosses a boundary may sign the
	// limit in each window it touched.
	windows := int64(time.Now().Truncate(time.Minute).Sub(t0.Truncate(time.Minute))/time.Minute) + 1
	t.Logf("old %+v; new %+v", before, after)
	if before.ocspSigs < before.requests/2 {
		t.Fatalf("old behaviour: %d OCSP signatures for %d requests", before.ocspSigs, before.requests)
	}
	// New: OCSP answers only pre-signed responses (one distinct signature: the issued certificate's) and the
	// TSA signs at most the global limit (here 50 per minute window) in the run; the rest is refused with 429.
	if after.ocspSigs > 1 || after.tsaTokens > 50*windows || after.limited == 0 {
		t.Fatalf("new behaviour (%d limiter windows): %+v", windows, after)
	}
}
