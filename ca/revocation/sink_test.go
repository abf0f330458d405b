package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/store"
	"github.com/mohr-hix/mohr/internal/testenv"
)

// staticOCSP serves dir as docs/cluster.md ("OCSP directory sink") says to: a plain static file server
// (net/http's FileServer) behind HAProxy, which refuses the sink's own files, turns a small POST into the GET
// of its path and labels the answers application/ocsp-response. It returns the base URL of HAProxy and of the
// file server.
func staticOCSP(t *testing.T, dir string) (lb, files string) {
	t.Helper()
	testenv.Tool(t, "haproxy")
	fileSrv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(fileSrv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := fmt.Sprintf(`global
  maxconn 256
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend ocsp_static
  bind 127.0.0.1:%d
  http-request deny if { path,url_dec -m sub /. }
  http-request wait-for-body time 2s if { method POST }
  http-request set-var(txn.ocspreq) req.body,base64 if { method POST } { req.hdr(content-type) -m str application/ocsp-request }
  http-request set-method GET if { var(txn.ocspreq) -m found }
  http-request set-path /%%[var(txn.ocspreq)] if { var(txn.ocspreq) -m found }
  http-response set-header Content-Type application/ocsp-response if { status 200 }
  default_backend files
backend files
  server web %s
`, port, strings.TrimPrefix(fileSrv.URL, "http://"))
	cfgPath := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("haproxy", "-f", cfgPath, "-db")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lb = fmt.Sprintf("http://127.0.0.1:%d", port)
	for end := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(end) {
			t.Fatalf("haproxy did not start:\n%s", out.String())
		}
	}
	return lb, fileSrv.URL
}

// TestDirSinkTwoNodes runs two responders ("nodes", each with its own responder key) on one PostgreSQL
// database, both writing one OCSP directory, served by a plain static file server: openssl ocsp -url finds
// good and, right after a revocation through one node, revoked responses there, for SHA-1 and SHA-256
// CertIDs and by GET too; a node that lags behind cannot put back an older response; both nodes re-signing
// everything at once leave every file whole, for the right serial and status, both hashes of a serial from
// one node, and no temporary file behind; refreshed files replace stale ones; the sink's own files are not
// served.
func TestDirSinkTwoNodes(t *testing.T) {
	needOpenSSL(t)
	ctx := context.Background()
	const shards = 2
	// openssl checks thisUpdate and nextUpdate against the wall clock: the pinned clock starts at the real time.
	p := newTestPKI(t, time.Now().UTC().Truncate(time.Second), shards)
	nodes, serials, _ := clusterNodes(t, p, 2, 6)
	dir := t.TempDir()
	certs := map[string]*x509.Certificate{}
	for _, s := range serials {
		rec, err := nodes[0].Certificate(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		certs[s], _ = x509.ParseCertificate(rec.DER)
	}
	var mu sync.Mutex
	var sinkErrs []error
	responder := func(st ca.Store) (*Responder, *DirSink) {
		sink, err := NewDirSink(dir, p.inter)
		if err != nil {
			t.Fatal(err)
		}
		k := newKey(t)
		r, err := NewResponder(ResponderConfig{Issuer: p.issuer, Store: st, Key: k, Shards: shards, Now: p.clock.Now,
			Issue: p.issueFunc(t, st, k), Sink: sink, OnError: func(err error) {
				mu.Lock()
				defer mu.Unlock()
				sinkErrs = append(sinkErrs, err)
			}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return r, sink
	}
	a, sinkA := responder(nodes[0])
	b, sinkB := responder(nodes[1])
	lb, files := staticOCSP(t, dir)

	pemDir := t.TempDir()
	rootPEM := writePEM(t, pemDir, "root.pem", p.root)
	caPEM := writePEM(t, pemDir, "ca.pem", p.inter)
	openssl := func(s string, extra ...string) string {
		t.Helper()
		leaf := writePEM(t, pemDir, "leaf.pem", certs[s])
		args := append(append([]string{"ocsp", "-issuer", caPEM}, extra...), "-cert", leaf, "-url", lb, "-CAfile", rootPEM, "-no_nonce")
		out, err := exec.Command("openssl", args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Response verify OK") || strings.Contains(string(out), "WARNING") {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for _, s := range serials[:2] {
		for _, h := range [][]string{nil, {"-sha256"}} {
			if out := openssl(s, h...); !strings.Contains(out, "leaf.pem: good") {
				t.Fatalf("%s %v: not good:\n%s", s, h, out)
			}
		}
	}

	// What a lagging node signed before the revocation (the record's older version).
	before, err := nodes[0].OCSPResponse(ctx, serials[0])
	if err != nil {
		t.Fatal(err)
	}
	svc := &Service{Store: nodes[0], Now: p.clock.Now, OCSP: a}
	p.clock.Add(time.Second)
	if _, err := svc.Revoke(ctx, serials[0], KeyCompromise, "test"); err != nil {
		t.Fatal(err)
	}
	// The revoking node wrote its revoked responses as part of the revocation, before the other node heard.
	for _, h := range [][]string{nil, {"-sha256"}} {
		if out := openssl(serials[0], h...); !strings.Contains(out, "leaf.pem: revoked") || !strings.Contains(out, "Reason: keyCompromise") {
			t.Fatalf("after the revocation %v:\n%s", h, out)
		}
	}
	p.clock.Add(time.Second)
	if err := b.Update(ctx, serials[0]); err != nil { // node b's change feed
		t.Fatal(err)
	}
	if err := sinkB.Put([]ca.OCSPRecord{before}); err != nil { // a late write of the good response
		t.Fatal(err)
	}
	if out := openssl(serials[0]); !strings.Contains(out, "leaf.pem: revoked") {
		t.Fatalf("a lagging node's good response replaced the revoked one:\n%s", out)
	}
	// By GET (RFC 5019 §5), straight from the file server: the bytes node a serves.
	req, err := ocsp.CreateRequest(certs[serials[0]], p.inter, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(files + "/" + base64.StdEncoding.EncodeToString(req))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want, _ := a.Respond(ctx, req)
	if resp.StatusCode != 200 || !bytes.Equal(got, want) {
		t.Fatalf("GET from the file server: %d, same bytes as the node: %v", resp.StatusCode, bytes.Equal(got, want))
	}
	parsed, err := ocsp.ParseResponse(got, p.inter)
	if err != nil {
		t.Fatal(err)
	}
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err != nil || !lm.Equal(parsed.ThisUpdate) {
		t.Errorf("Last-Modified %q, want the response's thisUpdate %v", resp.Header.Get("Last-Modified"), parsed.ThisUpdate)
	}
	// The sink's own files are not served.
	for _, path := range []string{"/.mohr/lock", "/.mohr/versions/" + serials[0], "/%2Emohr/lock"} {
		resp, err := http.Get(lb + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("%s is served", path)
		}
	}

	// Both nodes re-sign everything at once, later: stale files are replaced, and what is left is consistent.
	p.clock.Add(13 * time.Hour) // past RefreshBefore (12 h): every response is due
	var wg sync.WaitGroup
	for _, r := range []*Responder{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Refresh(ctx, true); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	if len(sinkErrs) > 0 {
		t.Fatalf("sink errors: %v", sinkErrs)
	}
	mu.Unlock()
	for _, s := range serials {
		var responders [2]string
		for i, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			path, err := sinkA.Path(s, h)
			if err != nil {
				t.Fatal(err)
			}
			der, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%s: %v", s, err)
			}
			r, err := ocsp.ParseResponseForCert(der, certs[s], p.inter)
			if err != nil {
				t.Fatalf("%s: %v", s, err)
			}
			wantStatus := ocsp.Good
			if s == serials[0] {
				wantStatus = ocsp.Revoked
			}
			if r.Status != wantStatus || !r.ThisUpdate.Equal(p.clock.Now()) {
				t.Errorf("%s: status %d thisUpdate %v, want %d at %v", s, r.Status, r.ThisUpdate, wantStatus, p.clock.Now())
			}
			if fi, err := os.Stat(path); err != nil || !fi.ModTime().Equal(r.ThisUpdate) {
				t.Errorf("%s: file time is not thisUpdate", s)
			}
			responders[i] = string(r.Certificate.Raw)
		}
		if responders[0] != responders[1] {
			t.Errorf("%s: the SHA-1 and SHA-256 files come from different nodes", s)
		}
	}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", path)
		}
		return nil
	})
}

// downStore is a store whose certificate reads fail while down is set.
type downStore struct {
	*memStore
	down atomic.Bool
}

func (s *downStore) Certificate(ctx context.Context, serial string) (ca.CertRecord, error) {
	if s.down.Load() {
		return ca.CertRecord{}, errors.New("store down")
	}
	return s.memStore.Certificate(ctx, serial)
}

// failSigner is a responder key that refuses to sign while fail is set.
type failSigner struct {
	crypto.Signer
	fail atomic.Bool
}

func (f *failSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if f.fail.Load() {
		return nil, errors.New("key unavailable")
	}
	return f.Signer.Sign(r, d, o)
}

// TestDirSinkWithdraw: a status change whose new responses cannot be signed withdraws the old ones (a static
// server then answers 404, never the previous status); a node that cannot read the record leaves the
// directory alone (another node may have written the new responses already), as does a withdrawal for a
// version the directory already has; the revoked responses replace the old ones once signed; an expired
// certificate's files go.
func TestDirSinkWithdraw(t *testing.T) {
	ctx := context.Background()
	p := newTestPKI(t, testEpoch, 1)
	st := &downStore{memStore: p.store}
	dir := t.TempDir()
	sink, err := NewDirSink(dir, p.inter)
	if err != nil {
		t.Fatal(err)
	}
	_, s := p.leaf(t, true)
	k := newKey(t)
	key := &failSigner{Signer: k}
	r, err := NewResponder(ResponderConfig{Issuer: p.issuer, Store: st, Key: key, Now: p.clock.Now, Issue: p.issueFunc(t, st, k), Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	status := func(h crypto.Hash) int {
		t.Helper()
		path, err := sink.Path(s, h)
		if err != nil {
			t.Fatal(err)
		}
		der, err := os.ReadFile(path)
		if err != nil {
			return -1
		}
		resp, err := ocsp.ParseResponse(der, p.inter)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	both := func(want int, what string) {
		t.Helper()
		if a, b := status(crypto.SHA1), status(crypto.SHA256); a != want || b != want {
			t.Fatalf("%s: SHA-1 file status %d, SHA-256 %d, want %d (-1: no file)", what, a, b, want)
		}
	}
	both(ocsp.Good, "after Start")
	p.clock.Add(time.Second)
	if _, err := st.Revoke(ctx, s, 1, time.Time{}, audit.Event{Kind: EventRevoked, Actor: "test", Subject: s}); err != nil {
		t.Fatal(err)
	}
	st.down.Store(true)
	if err := r.Update(ctx, s); err == nil {
		t.Fatal("Update with the store down succeeded")
	}
	both(ocsp.Good, "record unreadable") // this node cannot know; the feed retries it
	st.down.Store(false)
	key.fail.Store(true)
	if err := r.Update(ctx, s); err == nil {
		t.Fatal("Update with the responder key failing succeeded")
	}
	both(-1, "revocation read but not signed")
	key.fail.Store(false)
	if err := r.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	both(ocsp.Revoked, "after the revocation was signed")
	rec, err := st.Certificate(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Remove(s, rec.UpdatedAt); err != nil { // a second node's withdrawal for the same change
		t.Fatal(err)
	}
	both(ocsp.Revoked, "withdrawn for the version it holds")
	p.clock.Add(366 * 24 * time.Hour) // the certificate has expired
	if err := r.Refresh(ctx, false); err != nil {
		t.Fatal(err)
	}
	both(-1, "expired")
}

// TestDirSinkPaths serves the directory with net/http's FileServer and asks for serials whose GET path is
// awkward: ending in "/" (a directory to a static server), holding "//", and escaped (%2F, %2B, %3D), as
// clients send them. Each gets its own response.
func TestDirSinkPaths(t *testing.T) {
	p := newTestPKI(t, testEpoch, 1)
	dir := t.TempDir()
	sink, err := NewDirSink(dir, p.inter)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	want := map[string]func(string) bool{
		"ends in /": func(b string) bool { return strings.HasSuffix(b, "/") },
		"holds //":  func(b string) bool { return strings.Contains(b, "//") },
		"holds +":   func(b string) bool { return strings.Contains(b, "+") },
	}
	found := map[string]string{} // case -> serial
	var recs []ca.OCSPRecord
	for i := 0; len(found) < len(want) && i < 100000; i++ {
		// Serials of 14 to 19 bytes, so that the requests' lengths, and their base64 padding, vary.
		sum := sha256.Sum256([]byte(strconv.Itoa(i)))
		raw := sum[:14+i%6]
		raw[0] = raw[0]&0x7f | 0x10
		n := new(big.Int).SetBytes(raw)
		serial := ca.SerialHex(n)
		req, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: n}, p.inter, &ocsp.RequestOptions{Hash: crypto.SHA1})
		if err != nil {
			t.Fatal(err)
		}
		b := base64.StdEncoding.EncodeToString(req)
		for name, match := range want {
			if _, ok := found[name]; !ok && match(b) {
				found[name] = serial
				recs = append(recs, ca.OCSPRecord{Serial: serial, CertVersion: testEpoch, ThisUpdate: testEpoch,
					DER: [2][]byte{[]byte("sha1 " + serial), []byte("sha256 " + serial)}})
				break
			}
		}
	}
	if len(found) < len(want) {
		t.Fatalf("no serial for every case: %v", found)
	}
	if err := sink.Put(recs); err != nil {
		t.Fatal(err)
	}
	for name, serial := range found {
		n, _ := new(big.Int).SetString(serial, 16)
		req, _ := ocsp.CreateRequest(&x509.Certificate{SerialNumber: n}, p.inter, &ocsp.RequestOptions{Hash: crypto.SHA1})
		b := base64.StdEncoding.EncodeToString(req)
		for _, path := range []string{b, url.PathEscape(b), strings.NewReplacer("+", "%2B", "=", "%3D").Replace(b)} {
			resp, err := http.Get(srv.URL + "/" + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "sha1 "+serial {
				t.Errorf("%s: GET /%s: %d %q", name, path, resp.StatusCode, body)
			}
		}
	}
}

// TestDirSinkKilledWriter: a writer killed between creating its temporary file and renaming it leaves the file
// in .mohr/tmp (never where a web server would serve it); the next writer to take the lock removes it, and
// a new sink on the directory (a restarted node) does too.
func TestDirSinkKilledWriter(t *testing.T) {
	p := newTestPKI(t, testEpoch, 1)
	dir := t.TempDir()
	sink, err := NewDirSink(dir, p.inter)
	if err != nil {
		t.Fatal(err)
	}
	orphan := func() string {
		t.Helper()
		f, err := os.CreateTemp(filepath.Join(dir, ".mohr", "tmp"), ".tmp-*")
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("half a response")
		f.Close()
		return f.Name()
	}
	left := orphan()
	serial := ca.SerialHex(big.NewInt(0x1234567))
	if err := sink.Put([]ca.OCSPRecord{{Serial: serial, CertVersion: testEpoch, ThisUpdate: testEpoch,
		DER: [2][]byte{[]byte("sha1"), []byte("sha256")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the orphan survived a write: %v", err)
	}
	left = orphan()
	if _, err := NewDirSink(dir, p.inter); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the orphan survived a restart: %v", err)
	}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", path)
		}
		return nil
	})
}

// TestDirSinkRepairedAtStart leaves the directory as a crash of the machine can (files are not fsynced): an
// emptied response, a truncated one, an emptied version file. A node that starts on the same database puts
// back the database's bytes, and rewrites no file that is already right (same inode). A second node adopting
// the responses the first stored writes nothing either, while a newer response still replaces the file.
func TestDirSinkRepairedAtStart(t *testing.T) {
	ctx := context.Background()
	p := newTestPKI(t, testEpoch, 1)
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "mohr.db"), store.WithClock(p.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var serials []string
	for i := 0; i < 3; i++ {
		c, s := p.leaf(t, false)
		rec := ca.CertRecord{Serial: s, Profile: "physician-auth", Subject: c.Subject.String(), Subject2: "IDCIR-0499370899",
			NotBefore: c.NotBefore, NotAfter: c.NotAfter, TBSHash: make([]byte, 32), Shard: 0}
		if err := db.AddPending(ctx, rec, audit.Event{Time: p.clock.Now(), Kind: "cert.intent", Actor: "test", Subject: s}); err != nil {
			t.Fatal(err)
		}
		if err := db.MarkIssued(ctx, s, c.Raw, audit.Event{Time: p.clock.Now(), Kind: "cert.issued", Actor: "test", Subject: s}); err != nil {
			t.Fatal(err)
		}
		serials = append(serials, s)
	}
	dir := t.TempDir()
	var sinkErrs atomic.Int64
	node := func() (*Responder, *DirSink) {
		t.Helper()
		sink, err := NewDirSink(dir, p.inter)
		if err != nil {
			t.Fatal(err)
		}
		k := newKey(t)
		r, err := NewResponder(ResponderConfig{Issuer: p.issuer, Store: db, Key: k, Shards: 1, Now: p.clock.Now,
			Issue: p.issueFunc(t, db, k), Sink: sink, OnError: func(err error) { t.Log(err); sinkErrs.Add(1) }})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return r, sink
	}
	_, sinkA := node()
	path := func(s string, h crypto.Hash) string {
		t.Helper()
		p, err := sinkA.Path(s, h)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	stored := func(s string) ca.OCSPRecord {
		t.Helper()
		o, err := db.OCSPResponse(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	// whole checks that the directory holds the database's bytes for every serial.
	whole := func(when string) {
		t.Helper()
		for _, s := range serials {
			o := stored(s)
			for i, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
				if b, err := os.ReadFile(path(s, h)); err != nil || !bytes.Equal(b, o.DER[i]) {
					t.Fatalf("%s: %s %v: %d bytes, not the database's %d (%v)", when, s, h, len(b), len(o.DER[i]), err)
				}
			}
		}
	}
	whole("after the first node started")
	stat := func(s string, h crypto.Hash) os.FileInfo {
		t.Helper()
		fi, err := os.Stat(path(s, h))
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	before := map[string]os.FileInfo{}
	for _, s := range serials {
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			before[s+h.String()] = stat(s, h)
		}
	}

	// The crash: what the kernel had not written is gone.
	if err := os.Truncate(path(serials[0], crypto.SHA1), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path(serials[1], crypto.SHA256), int64(len(stored(serials[1]).DER[1])/2)); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, ".mohr", "versions", serials[2]), 0); err != nil {
		t.Fatal(err)
	}
	// Put trusts the version file (it does not read every file back on every write): the damage stays...
	if err := sinkA.Put([]ca.OCSPRecord{stored(serials[0])}); err != nil {
		t.Fatal(err)
	}
	if fi := stat(serials[0], crypto.SHA1); fi.Size() != 0 {
		t.Fatalf("Put read the file back: %d bytes", fi.Size())
	}
	// ...until a node starts.
	b, _ := node()
	whole("after the second node started")
	damaged := map[string]bool{serials[0] + crypto.SHA1.String(): true, serials[1] + crypto.SHA256.String(): true}
	for _, s := range serials {
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			if same := os.SameFile(before[s+h.String()], stat(s, h)); same == damaged[s+h.String()] {
				t.Errorf("%s %v: damaged %v, rewritten %v", s, h, damaged[s+h.String()], !same)
			}
		}
	}
	if v, tu, ok := readVersion(filepath.Join(dir, ".mohr", "versions", serials[2])); !ok || !v.Equal(stored(serials[2]).CertVersion) || !tu.Equal(stored(serials[2]).ThisUpdate) {
		t.Fatalf("version file not repaired: %v %v %v", v, tu, ok)
	}

	// The second node hears of the certificates through its change feed and adopts what the first stored:
	// nothing is written.
	for _, s := range serials {
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			before[s+h.String()] = stat(s, h)
		}
	}
	if _, err := b.UpdateIssued(ctx, serials); err != nil {
		t.Fatal(err)
	}
	for _, s := range serials {
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			if !os.SameFile(before[s+h.String()], stat(s, h)) {
				t.Errorf("%s %v: rewritten with the same response", s, h)
			}
		}
	}
	whole("after the change feed")

	// A response signed later (a refresh) still replaces the file; the older one does not come back.
	old := stored(serials[0])
	p.clock.Add(time.Hour)
	if err := b.Refresh(ctx, true); err != nil {
		t.Fatal(err)
	}
	if newer := stored(serials[0]); !newer.ThisUpdate.After(old.ThisUpdate) {
		t.Fatalf("refresh did not sign anew: %v, was %v", newer.ThisUpdate, old.ThisUpdate)
	}
	whole("after the refresh")
	if err := sinkA.Put([]ca.OCSPRecord{old}); err != nil {
		t.Fatal(err)
	}
	if err := sinkA.Reconcile([]ca.OCSPRecord{old}); err != nil {
		t.Fatal(err)
	}
	whole("after a late write of the older response")
	if n := sinkErrs.Load(); n != 0 {
		t.Fatalf("%d sink errors", n)
	}
}
