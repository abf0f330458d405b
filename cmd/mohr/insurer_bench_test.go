package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// TestInsurerBatchThroughput measures POST /v1/verify/batch as an insurer over the real node (SQLite registry,
// 3 physicians, half B-LT from ingestion, half B-B), as issue 20 did. MOHR_BENCH_INSURER=1 runs it.
func TestInsurerBatchThroughput(t *testing.T) {
	if os.Getenv("MOHR_BENCH_INSURER") == "" {
		t.Skip("MOHR_BENCH_INSURER not set")
	}
	clk := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	n := clockNode(t, clk)
	gen := rxgen.New(99)
	gen.Now = clk.Now
	var docs [][]byte
	perDoc := 334
	if v, _ := strconv.Atoi(os.Getenv("MOHR_BENCH_PER_DOC")); v > 0 {
		perDoc = v
	}
	var url string
	var hc *http.Client
	for d := 0; d < 3; d++ {
		doc := newDoctor(t, n, gen, clk.Now())
		c, u := ingestClient(t, n, doc)
		url, hc = u, c
		chain := n.ca.Issuer().Chain
		for i := 0; i < perDoc; i++ {
			body, _ := gen.Prescription(doc.phy)
			der, err := signing.Sign(context.Background(), body, signing.SignOptions{Signer: doc.key,
				Chain: append([]*x509.Certificate{doc.cert}, chain[:len(chain)-1]...), Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 {
				docs = append(docs, der)
				continue
			}
			resp, err := c.Post(u+"/v1/prescriptions", "application/cms", bytes.NewReader(der))
			if err != nil {
				t.Fatal(err)
			}
			var m struct {
				Report struct{ ContentSha256 string }
			}
			json.NewDecoder(resp.Body).Decode(&m)
			resp.Body.Close()
			rec, err := n.st.Prescription(context.Background(), m.Report.ContentSha256)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, rec.Signature)
		}
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := issueFor(context.Background(), n.ca, key, ca.Request{Profile: ca.ProfileOrganisationAuth, CommonName: "Salamat", Role: "insurer"})
	if err != nil {
		t.Fatal(err)
	}
	tr := hc.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}
	ins := &http.Client{Transport: tr}
	var body bytes.Buffer
	const total = 10000
	for i := 0; i < total; i++ {
		b, _ := json.Marshal(map[string]any{"name": strconv.Itoa(i), "cms": docs[i%len(docs)]})
		body.Write(append(b, '\n'))
	}
	for round := 0; round < 3; round++ {
		start := time.Now()
		resp, err := ins.Post(url+"/v1/verify/batch", "application/x-ndjson", bytes.NewReader(body.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		lines, passed := 0, 0
		for sc.Scan() {
			lines++
			if bytes.Contains(sc.Bytes(), []byte(`"indication":"TOTAL_PASSED"`)) {
				passed++
			}
		}
		resp.Body.Close()
		el := time.Since(start)
		t.Logf("round %d: %d lines, %d passed, %.0f docs/s", round, lines, passed, float64(passed)/el.Seconds())
		if passed != total {
			t.Fatalf("%d of %d passed", passed, total)
		}
	}
}
