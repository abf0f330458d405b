package main

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// ocspCacheSeconds is how long HAProxy may answer an OCSP request from its own cache (scripts/cluster.sh,
// MOHR_OCSP_CACHE_SECONDS; the failure suite sets it to this value).
const ocspCacheSeconds = 2

// ocspAnswer is one OCSP answer as a client saw it.
type ocspAnswer struct {
	status  int // ocsp.Good, ocsp.Revoked, ocsp.Unknown; -1 when it was no successful signed response
	age     int // HAProxy's Age header in seconds (RFC 9111 §5.1): -1 when the answer did not come from its cache
	next    time.Time
	at      time.Time // when the answer arrived
	problem string
}

// askOCSP sends req to base's /ocsp by GET (the request in the path, RFC 6960 A.1) or POST and reads the answer.
func (c *clusterEnv) askOCSP(base, method string, req []byte) ocspAnswer {
	var (
		resp *http.Response
		err  error
	)
	cl := &http.Client{Timeout: 10 * time.Second}
	if method == "GET" {
		resp, err = cl.Get(base + "/ocsp/" + base64.StdEncoding.EncodeToString(req))
	} else {
		resp, err = cl.Post(base+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
	}
	a := ocspAnswer{status: -1, age: -1}
	if err != nil {
		a.problem = err.Error()
		return a
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	a.at = time.Now()
	if v := resp.Header.Get("Age"); v != "" {
		a.age, _ = strconv.Atoi(v)
	}
	if resp.StatusCode != 200 {
		a.problem = fmt.Sprintf("HTTP %d", resp.StatusCode)
		return a
	}
	r, err := ocsp.ParseResponse(b, c.issuer)
	if err != nil {
		a.problem = err.Error()
		return a
	}
	a.status, a.next = r.Status, r.NextUpdate
	return a
}

// checkOCSPThroughCache proves the bound docs/cluster.md gives for HAProxy's OCSP cache: it issues a
// certificate through HAProxy, asks HAProxy by GET and POST until both answers come from its cache, revokes
// the certificate through HAProxy, then asks HAProxy and every node directly until HAProxy says revoked.
// Every answer must be within its nextUpdate, come from a cache entry no older than ocspCacheSeconds, and
// once every node says revoked, a "good" from HAProxy must come from an entry stored before that (its Age
// says when it was stored; 2 s of slack for Age's whole seconds and the order of the probes). So HAProxy says
// revoked at most ocspCacheSeconds after every node does, whatever max-age the nodes send. It returns the
// time from the acknowledged revocation until every node said revoked and until HAProxy did.
func (c *clusterEnv) checkOCSPThroughCache() (nodes, proxy time.Duration) {
	t := c.t
	t.Helper()
	csr, _ := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{}, newP256(t))
	body, _ := json.Marshal(map[string]any{"profile": "organisation-auth", "csr": csr,
		"subject": map[string]any{"commonName": "OCSP Cache Pharmacy", "role": "pharmacy"}})
	var serial string
	if !waitFor(clusterWait, func() bool {
		resp, err := c.op.Post(c.lbAPI+"/v1/certificates", "application/json", bytes.NewReader(body))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		serial, _ = m["serial"].(string)
		return resp.StatusCode == 201 && serial != ""
	}) {
		t.Fatal("OCSP cache: no certificate issued through HAProxy")
	}
	req := ocspRequestFor(t, c.issuer, serial)
	check := func(a ocspAnswer, what string) {
		t.Helper()
		if a.status < 0 {
			return // a failed request (counted by the caller's wait), not a wrong answer
		}
		if !a.at.Before(a.next) {
			t.Errorf("OCSP cache: %s served a response past its nextUpdate %v", what, a.next)
		}
		if a.age > ocspCacheSeconds {
			t.Errorf("OCSP cache: %s served a response %d s old (HAProxy keeps them %d s)", what, a.age, ocspCacheSeconds)
		}
	}
	for _, m := range []string{"GET", "POST"} {
		if !waitFor(clusterWait, func() bool {
			a := c.askOCSP(c.lbPub, m, req)
			check(a, "HAProxy "+m)
			return a.status == ocsp.Good && a.age >= 0
		}) {
			t.Fatalf("OCSP cache: HAProxy never answered %s for a good certificate from its cache", m)
		}
	}

	rev := []byte(`{"reason":1}`)
	if !waitFor(clusterWait, func() bool {
		resp, err := c.op.Post(c.lbAPI+"/v1/certificates/"+serial+"/revoke", "application/json", bytes.NewReader(rev))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}) {
		t.Fatal("OCSP cache: revocation through HAProxy not acknowledged")
	}
	revoked := time.Now()
	var allNodes, lbGet, lbPost time.Time
	if !waitEvery(clusterWait, 50*time.Millisecond, func() bool {
		if allNodes.IsZero() {
			all := true
			for _, p := range c.pubs {
				a := c.askOCSP(p, "GET", req)
				check(a, p)
				all = all && a.status == ocsp.Revoked
			}
			if all {
				allNodes = time.Now()
			}
		}
		for m, seen := range map[string]*time.Time{"GET": &lbGet, "POST": &lbPost} {
			a := c.askOCSP(c.lbPub, m, req)
			check(a, "HAProxy "+m)
			switch {
			case a.status == ocsp.Revoked && seen.IsZero():
				*seen = a.at
			case a.status == ocsp.Good && !allNodes.IsZero() && a.at.Sub(allNodes) > time.Duration(a.age+2)*time.Second:
				t.Errorf("OCSP cache: HAProxy %s said good %v after every node said revoked, from an entry %d s old",
					m, a.at.Sub(allNodes).Round(time.Millisecond), a.age)
			}
		}
		return !allNodes.IsZero() && !lbGet.IsZero() && !lbPost.IsZero()
	}) {
		t.Fatalf("OCSP cache: HAProxy did not say revoked within %v (every node did: %v)", clusterWait, !allNodes.IsZero())
	}
	last := lbGet
	if lbPost.After(last) {
		last = lbPost
	}
	return allNodes.Sub(revoked), last.Sub(revoked)
}

// ocspRates measures OCSP requests/s for one pre-signed serial with 8 keep-alive clients: node1 alone and
// HAProxy over the three nodes, by POST and by GET, interleaved over three rounds of dur each (the same
// client for every target). It returns the medians by "method target".
func (c *clusterEnv) ocspRates(serial string, dur time.Duration) map[string]float64 {
	req := ocspRequestFor(c.t, c.issuer, serial)
	get := "/ocsp/" + base64.StdEncoding.EncodeToString(req)
	rate := func(base, method string) float64 {
		var n atomic.Int64
		end := time.Now().Add(dur)
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
				defer cl.CloseIdleConnections()
				for time.Now().Before(end) {
					var resp *http.Response
					var err error
					if method == "GET" {
						resp, err = cl.Get(base + get)
					} else {
						resp, err = cl.Post(base+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
					}
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == 200 {
							n.Add(1)
						}
					}
				}
			}()
		}
		wg.Wait()
		return float64(n.Load()) / dur.Seconds()
	}
	runs := map[string][]float64{}
	for round := 0; round < 3; round++ {
		for _, m := range []string{"POST", "GET"} {
			runs[m+" node1"] = append(runs[m+" node1"], rate(c.pubs[0], m))
			runs[m+" haproxy"] = append(runs[m+" haproxy"], rate(c.lbPub, m))
		}
	}
	med := map[string]float64{}
	for k, v := range runs {
		slices.Sort(v)
		med[k] = v[len(v)/2]
	}
	return med
}

// checkOCSPDir checks the nodes' shared OCSP directory (services.ocsp_dir, docs/cluster.md "OCSP directory
// sink") against the database: every unexpired issued, revoked or held certificate has its response under the
// path of its RFC 5019 GET request (SHA-1 CertID), whole, for its serial, saying what the database says, within
// the propagation time; and no temporary file is left. Three nodes wrote it at once through every fault.
func (c *clusterEnv) checkOCSPDir(dir string) int {
	t := c.t
	t.Helper()
	var problems []string
	n := 0
	if !waitFor(clusterWait, func() bool {
		problems, n = nil, 0
		rows := c.sql(`SELECT serial, status FROM certificates WHERE status IN ('issued', 'revoked', 'held')
			AND not_after_us > (extract(epoch FROM now()) * 1000000)::bigint ORDER BY serial`)
		for _, line := range strings.Split(rows, "\n") {
			serial, st, ok := strings.Cut(line, "|")
			if !ok {
				continue
			}
			n++
			req := ocspRequestFor1(t, c.issuer, serial)
			der, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(base64.StdEncoding.EncodeToString(req))))
			if err != nil {
				problems = append(problems, serial+": "+err.Error())
				continue
			}
			r, err := ocsp.ParseResponse(der, c.issuer)
			want := map[string]int{"issued": ocsp.Good, "revoked": ocsp.Revoked, "held": ocsp.Revoked}[st]
			switch {
			case err != nil:
				problems = append(problems, serial+": "+err.Error())
			case r.SerialNumber.Text(16) != strings.TrimLeft(strings.ToLower(serial), "0"):
				problems = append(problems, serial+": the file answers for "+r.SerialNumber.Text(16))
			case r.Status != want:
				problems = append(problems, fmt.Sprintf("%s: %s in the database, status %d in the directory", serial, st, r.Status))
			}
		}
		return len(problems) == 0 && n > 0
	}) {
		t.Errorf("OCSP directory: %d certificates, %d problems, e.g. %v", n, len(problems), problems[:min(5, len(problems))])
	}
	// Nodes killed mid-write leave temporary files in .mohr/tmp (not served; the next writer removes them);
	// none may lie where a web server would serve it.
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == ".mohr" {
			return filepath.SkipDir
		}
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("OCSP directory: temporary file left: %s", path)
		}
		return nil
	})
	return n
}

// ocspRequestFor1 is ocspRequestFor with a SHA-1 CertID, what RFC 5019 clients send.
func ocspRequestFor1(t *testing.T, issuer *x509.Certificate, serial string) []byte {
	n, _ := new(big.Int).SetString(serial, 16)
	req, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: n}, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		t.Fatal(err)
	}
	return req
}
