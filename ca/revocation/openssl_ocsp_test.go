package revocation

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"github.com/mohr-hix/mohr/internal/testenv"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// ocspHandler is the smallest HTTP mounting of a Responder (RFC 6960 Appendix A, RFC 5019 §5), as the API
// layer will do it: POST body or GET path, always 200 with application/ocsp-response.
func ocspHandler(r *Responder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var resp Response
		switch req.Method {
		case http.MethodPost:
			body, err := io.ReadAll(io.LimitReader(req.Body, MaxRequestSize+1))
			if err != nil {
				http.Error(w, "bad body", http.StatusBadRequest)
				return
			}
			resp, _ = r.Handle(req.Context(), body)
		case http.MethodGet:
			// net/http has already URL-decoded the path; RespondGET takes either form.
			resp, _ = r.HandleGET(req.Context(), req.URL.Path)
		default:
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		if req.Method == http.MethodGet { // RFC 5019 §6.2: only GET responses are cacheable
			h := w.Header()
			for k, v := range resp.CacheHeaders(r.cfg.Now()) {
				h[k] = []string{v}
			}
		}
		w.Write(resp.DER)
	})
}

// TestOCSPOpenSSL is the outside check: openssl ocsp against the responder on a loopback HTTP server
// reports good, revoked (with reason and time) and unknown, and verifies each response (signature,
// delegated responder certificate chained to root.pem, nonce).
func TestOCSPOpenSSL(t *testing.T) {
	needOpenSSL(t)
	ctx := context.Background()
	// openssl checks thisUpdate/nextUpdate against the wall clock, so the pinned clock starts at the
	// real time.
	// The policies that make the responder sign on request are on here; TestOCSPOpenSSLDefaultPolicy checks
	// the default.
	f := newOCSPFixture(t, time.Now().UTC().Truncate(time.Second), func(c *ResponderConfig) { c.SignNonces, c.SignUnknown = true, true })
	good, _ := f.p.leaf(t, true)
	rev, revS := f.p.leaf(t, true)
	hold, holdS := f.p.leaf(t, true)
	never, _ := f.p.leaf(t, false)
	if err := f.r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Revoke(ctx, revS, KeyCompromise, "cli:root"); err != nil {
		t.Fatal(err)
	}
	revokedAt := f.p.clock.Now()
	if _, err := f.svc.Hold(ctx, holdS, "cli:root"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ocspHandler(f.r))
	defer srv.Close()

	dir := t.TempDir()
	rootPEM := writePEM(t, dir, "root.pem", f.p.root)
	caPEM := writePEM(t, dir, "ca.pem", f.p.inter)
	run := func(c *x509.Certificate, extra ...string) string {
		t.Helper()
		leaf := writePEM(t, dir, "leaf.pem", c)
		args := append([]string{"ocsp", "-issuer", caPEM, "-sha256", "-cert", leaf, "-url", srv.URL, "-CAfile", rootPEM}, extra...)
		out, err := exec.Command("openssl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !strings.Contains(string(out), "Response verify OK") || strings.Contains(string(out), "WARNING") {
			t.Fatalf("openssl did not verify the response:\n%s", out)
		}
		return string(out)
	}
	for _, mode := range [][]string{nil, {"-no_nonce"}} {
		if out := run(good, mode...); !strings.Contains(out, "leaf.pem: good") {
			t.Fatalf("good:\n%s", out)
		}
		out := run(rev, mode...)
		wantTime := revokedAt.Format("Jan _2 15:04:05 2006 GMT")
		if !strings.Contains(out, "leaf.pem: revoked") || !strings.Contains(out, "Reason: keyCompromise") ||
			!strings.Contains(out, "Revocation Time: "+wantTime) {
			t.Fatalf("revoked (want time %s):\n%s", wantTime, out)
		}
		if out := run(hold, mode...); !strings.Contains(out, "leaf.pem: revoked") || !strings.Contains(out, "Reason: certificateHold") {
			t.Fatalf("hold:\n%s", out)
		}
		if out := run(never, mode...); !strings.Contains(out, "leaf.pem: unknown") {
			t.Fatalf("unknown:\n%s", out)
		}
	}
	// SHA-1 CertIDs, openssl's default digest and RFC 5019's.
	leaf := writePEM(t, dir, "leaf.pem", rev)
	out, err := exec.Command("openssl", "ocsp", "-issuer", caPEM, "-cert", leaf, "-url", srv.URL, "-CAfile", rootPEM, "-no_nonce").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "leaf.pem: revoked") || !strings.Contains(string(out), "Response verify OK") {
		t.Fatalf("SHA-1: %v\n%s", err, out)
	}
	t.Logf("openssl ocsp (SHA-1, POST):\n%s", out)
	// GET (RFC 6960 Appendix A.1): openssl 3.0 only POSTs, so openssl writes the request, the test GETs it,
	// and openssl checks the response it got.
	if out, err := exec.Command("openssl", "ocsp", "-issuer", caPEM, "-sha256", "-cert", leaf, "-no_nonce",
		"-reqout", dir+"/req.der").CombinedOutput(); err != nil {
		t.Fatalf("reqout: %v\n%s", err, out)
	}
	reqDER, err := os.ReadFile(dir + "/req.der")
	if err != nil {
		t.Fatal(err)
	}
	httpResp, err := http.Get(srv.URL + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(reqDER)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(httpResp.Body)
	httpResp.Body.Close()
	if cc := httpResp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") || httpResp.Header.Get("ETag") == "" {
		t.Fatalf("GET headers %v", httpResp.Header)
	}
	if err := os.WriteFile(dir+"/resp.der", body, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command("openssl", "ocsp", "-respin", dir+"/resp.der", "-issuer", caPEM, "-sha256", "-cert", leaf, "-CAfile", rootPEM, "-no_nonce").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "leaf.pem: revoked") || !strings.Contains(string(out), "Response verify OK") {
		t.Fatalf("GET: %v\n%s", err, out)
	}
	// Release: good again.
	if _, err := f.svc.Release(ctx, holdS, "cli:root"); err != nil {
		t.Fatal(err)
	}
	if out := run(hold); !strings.Contains(out, "leaf.pem: good") {
		t.Fatalf("released:\n%s", out)
	}
	t.Logf("openssl ocsp: good, revoked (keyCompromise, %s), certificateHold, unknown, released; nonce and -no_nonce; SHA-256 and SHA-1", revokedAt.Format(time.RFC3339))
}

// TestOCSPOpenSSLDefaultPolicy: with the default policy openssl's nonce is ignored (openssl warns and still
// verifies the pre-signed response) and a serial that was never issued gets the unsigned unauthorized error.
func TestOCSPOpenSSLDefaultPolicy(t *testing.T) {
	testenv.Tool(t, "openssl")
	ctx := context.Background()
	f := newOCSPFixture(t, time.Now().UTC().Truncate(time.Second))
	good, _ := f.p.leaf(t, true)
	never, _ := f.p.leaf(t, false)
	if err := f.r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ocspHandler(f.r))
	defer srv.Close()
	dir := t.TempDir()
	rootPEM := writePEM(t, dir, "root.pem", f.p.root)
	caPEM := writePEM(t, dir, "ca.pem", f.p.inter)
	n := f.key.n.Load()
	leaf := writePEM(t, dir, "good.pem", good)
	out, err := exec.Command("openssl", "ocsp", "-issuer", caPEM, "-sha256", "-cert", leaf, "-url", srv.URL, "-CAfile", rootPEM).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "WARNING: no nonce in response") || !strings.Contains(string(out), "Response verify OK") ||
		!strings.Contains(string(out), "good.pem: good") {
		t.Fatalf("nonce ignored: %v\n%s", err, out)
	}
	leaf = writePEM(t, dir, "never.pem", never)
	out, _ = exec.Command("openssl", "ocsp", "-issuer", caPEM, "-sha256", "-cert", leaf, "-url", srv.URL, "-CAfile", rootPEM).CombinedOutput()
	if !strings.Contains(string(out), "unauthorized") {
		t.Fatalf("never issued:\n%s", out)
	}
	if d := f.key.n.Load() - n; d != 0 {
		t.Fatalf("the responder key signed %d times for these requests", d)
	}
}
