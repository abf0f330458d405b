package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest sends req as bytes to addr and returns the parsed response.
func rawRequest(t *testing.T, addr, req string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// TestUnparseableRequestsGetProblems: requests net/http refuses before any handler (a malformed escape in an
// OCSP GET path, a bad header line, an oversized header block) are answered with problem documents on the
// plain-HTTP listener, like every other answer.
func TestUnparseableRequestsGetProblems(t *testing.T) {
	e := newEnv(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := e.srv.HTTPServer("")
	hs.MaxHeaderBytes = 4096
	go hs.Serve(ProblemListener(ln))
	t.Cleanup(func() { hs.Close() })
	addr := ln.Addr().String()
	cases := []struct {
		name, req string
		status    int
	}{
		{"bad escape in OCSP GET", "GET /ocsp/MFMw%zz%%UTBP HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"bad header line", "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400},
		{"headers too large", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70000) + "\r\n\r\n", 431},
		{"unsupported transfer encoding", "POST /ocsp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"bad OCSP base64", "GET /ocsp/%21%21%21 HTTP/1.1\r\nHost: x\r\n\r\n", 200}, // an OCSP malformedRequest, by RFC 6960
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := rawRequest(t, addr, c.req)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if c.status == 200 {
				return
			}
			checkProblem(t, response{status: resp.StatusCode, header: resp.Header, body: body}, c.status)
		})
	}
	// Ordinary traffic passes untouched.
	resp, body := rawRequest(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	var m map[string]any
	if resp.StatusCode != 200 || json.Unmarshal(body, &m) != nil {
		t.Fatalf("healthz through ProblemListener: %d %s", resp.StatusCode, body)
	}
	if !bytes.Contains(body, []byte("{")) {
		t.Fatal(string(body))
	}
}

// TestCRLCanonicalShard: only the canonical decimal shard number names a CRL.
func TestCRLCanonicalShard(t *testing.T) {
	e := newEnv(t, nil)
	if r := e.do(callerNone, "GET", "/crl/1.crl", "", nil); r.status != 200 {
		t.Fatalf("/crl/1.crl: %d", r.status)
	}
	for _, p := range []string{"/crl/00.crl", "/crl/01.crl", "/crl/+1.crl", "/crl/-0.crl", "/crl/0x1.crl", "/crl/1e0.crl", "/crl/%2B1.crl", "/crl/99999999999.crl"} {
		e.rec.reset()
		r := e.do(callerNone, "GET", p, "", nil)
		checkProblem(t, r, http.StatusNotFound)
		if e.rec.total() != 0 {
			t.Fatalf("%s reached the CRL source", p)
		}
	}
	// A byte range never produces net/http's text/plain 416.
	req, _ := http.NewRequest("GET", e.ts.URL+"/crl/1.crl", nil)
	req.Header.Set("Range", "bytes=9999-10000")
	resp, err := e.client(callerNone).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("range request: %d", resp.StatusCode)
	}
}

// TestRevocationFeedQuery: the feed answers the head without from, a page with it, and refuses a from that is
// not a non-negative integer or a profile the CA does not know (400), never reaching the feed.
func TestRevocationFeedQuery(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do(callerNone, "GET", "/v1/revocations", "", nil)
	var page RevocationChanges
	if r.status != 200 || json.Unmarshal(r.body, &page) != nil || page.Next != 7 || page.Changes == nil || len(page.Changes) != 0 {
		t.Fatalf("head: %d %s", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("feed answers are cacheable: %q", r.header.Get("Cache-Control"))
	}
	r = e.do(callerNone, "GET", "/v1/revocations?from=3", "", nil)
	if r.status != 200 || json.Unmarshal(r.body, &page) != nil || len(page.Changes) != 1 || page.Changes[0].Serial != "0a" {
		t.Fatalf("page: %d %s", r.status, r.body)
	}
	for _, q := range []string{"from=-1", "from=x", "from=", "from=1&profile=nope"} {
		r := e.do(callerNone, "GET", "/v1/revocations?"+q, "", nil)
		checkProblem(t, r, http.StatusBadRequest)
	}
}

// TestRevokeTokenReason: a facility revoking its own token gives the reason (keyCompromise for a stolen one) by
// name or code; without one it is cessationOfOperation; a hold, removeFromCRL or an unknown name is refused
// (400) before the token service is called.
func TestRevokeTokenReason(t *testing.T) {
	e := newEnv(t, nil)
	path := "/v1/facilities/" + testSIAM + "/tokens/tok1/revoke"
	for q, want := range map[string]float64{"": 5, "?reason=keyCompromise": 1, "?reason=keycompromise": 1, "?reason=1": 1, "?reason=superseded": 4} {
		r := e.do(string(RoleFacility), "POST", path+q, "", nil)
		var got map[string]any
		if r.status != 200 || json.Unmarshal(r.body, &got) != nil || got["reason"] != want {
			t.Fatalf("%q: %d %s, want reason %v", q, r.status, r.body, want)
		}
	}
	for _, q := range []string{"?reason=certificateHold", "?reason=6", "?reason=8", "?reason=stolen", "?reason=-1"} {
		checkProblem(t, e.do(string(RoleFacility), "POST", path+q, "", nil), http.StatusBadRequest)
	}
}
