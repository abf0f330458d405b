package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/rxgen"
	"github.com/mohr-hix/mohr/tokens"
)

// fakeClock is the node's injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// clockNode builds a node in a fresh data directory whose every service runs on clk (SQLite store).
func clockNode(t *testing.T, clk *fakeClock) *node {
	t.Helper()
	return clockNodeWith(t, clk, nil)
}

// clockNodeWith is clockNode with mutate applied to the configuration before it is derived and validated.
func clockNodeWith(t *testing.T, clk *fakeClock, mutate func(*Config)) *node {
	t.Helper()
	dd := t.TempDir()
	old := flagDataDir
	flagDataDir = dd
	t.Cleanup(func() { flagDataDir = old })
	cfg := defaultConfig(dd)
	if mutate != nil {
		mutate(cfg)
	}
	cfg.fillDerived()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	cfg.now = clk.Now
	n, err := build(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.close)
	if err := n.ocsp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}

type rxDoctor struct {
	phy  rxgen.Physician
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

// newDoctor registers a physician and issues the physician-signing certificate through the CA pipeline.
func newDoctor(t *testing.T, n *node, gen *rxgen.Generator, now time.Time) *rxDoctor {
	t.Helper()
	ctx := context.Background()
	d := &rxDoctor{phy: gen.Physician()}
	if err := n.ts.PutPhysicians(ctx, []tokens.Physician{{NationalCode: d.phy.NationalCode, CouncilNo: d.phy.CouncilNumber,
		Name: d.phy.Given + " " + d.phy.Family, Specialty: d.phy.Specialty, Status: tokens.StatusActive,
		ValidFrom: now.AddDate(-5, 0, 0), ValidUntil: now.AddDate(3, 0, 0)}}, audit.Event{Kind: "registry.import", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	d.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var err error
	d.cert, err = issueFor(ctx, n.ca, d.key, ca.Request{Profile: ca.ProfilePhysicianSigning, CommonName: "Dr " + d.phy.Family,
		NationalCode: d.phy.NationalCode, CouncilNumber: d.phy.CouncilNumber, Profession: "General Practitioner"})
	if err != nil {
		t.Fatal(err)
	}
	// As the change feed does on cert.issued: the responder pre-signs the new certificate's responses.
	if err := n.ocsp.Update(ctx, ca.SerialHex(d.cert.SerialNumber)); err != nil {
		t.Fatal(err)
	}
	return d
}

// ingestClient is an mTLS client of the node's API holding a physician-auth certificate (role physician).
func ingestClient(t *testing.T, n *node, d *rxDoctor) (*http.Client, string) {
	t.Helper()
	srv, err := n.apiServer()
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.TLS = srv.TLSConfig()
	hs.StartTLS()
	t.Cleanup(hs.Close)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := issueFor(context.Background(), n.ca, key, ca.Request{Profile: ca.ProfilePhysicianAuth, CommonName: "Dr " + d.phy.Family,
		NationalCode: d.phy.NationalCode, CouncilNumber: d.phy.CouncilNumber})
	if err != nil {
		t.Fatal(err)
	}
	c := hs.Client()
	c.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}
	return c, hs.URL
}

// submit signs a new prescription by d (B-B, signing-time from clk), waits a little, POSTs it and returns the status
// and the decoded answer.
func submit(t *testing.T, c *http.Client, url string, n *node, gen *rxgen.Generator, d *rxDoctor, clk *fakeClock) (int, map[string]any) {
	t.Helper()
	body, err := gen.Prescription(d.phy)
	if err != nil {
		t.Fatal(err)
	}
	chain := n.ca.Issuer().Chain
	der, err := signing.Sign(context.Background(), body, signing.SignOptions{Signer: d.key,
		Chain: append([]*x509.Certificate{d.cert}, chain[:len(chain)-1]...), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(3 * time.Second) // the prescription travels to the exchange
	resp, err := c.Post(url+"/v1/prescriptions", "application/cms", bytes.NewReader(der))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("answer %d: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, m
}

// TestIngestFreshRevocationAcross48Hours runs the server clock over 48 hours of ingestions at every time of day,
// with the responder's pre-signed responses refreshed on their normal cycle, for a certificate issued at the
// start and one issued seconds before its first prescription. Every ingestion must pass at B-LT, and every
// OCSP response the stored B-LT embeds must be produced (producedAt and thisUpdate) at or after the signature
// timestamp's genTime (docs/signature-policy.md §4). Before the fix the first ingestion more than five minutes
// after a refresh answered 422.
func TestIngestFreshRevocationAcross48Hours(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	n := clockNode(t, clk)
	gen := rxgen.New(7)
	gen.Now = clk.Now
	old := newDoctor(t, n, gen, clk.Now())
	c, url := ingestClient(t, n, old)
	start := clk.Now()
	var young *rxDoctor
	count := 0
	lastRefresh := start
	for step := 0; clk.Now().Sub(start) < 48*time.Hour; step++ {
		// The responder's own cycle (Run: renew when due, refresh what is near nextUpdate), every 5 minutes.
		for clk.Now().Sub(lastRefresh) >= 5*time.Minute {
			lastRefresh = lastRefresh.Add(5 * time.Minute)
			if err := n.ocsp.Refresh(ctx, false); err != nil {
				t.Fatal(err)
			}
		}
		d := old
		if clk.Now().Sub(start) > 30*time.Hour {
			if young == nil {
				young = newDoctor(t, n, gen, clk.Now())
				clk.Add(10 * time.Second)
			}
			if step%2 == 0 {
				d = young
			}
		}
		code, m := submit(t, c, url, n, gen, d, clk)
		if code != http.StatusCreated {
			t.Fatalf("ingestion %d at +%s: %d %v", count, clk.Now().Sub(start), code, m["report"])
		}
		rep, _ := m["report"].(map[string]any)
		if rep["level"] != "B-LT" || rep["indication"] != "TOTAL_PASSED" {
			t.Fatalf("ingestion %d: report %v", count, rep)
		}
		rec, err := n.st.Prescription(ctx, rep["contentSha256"].(string))
		if err != nil {
			t.Fatalf("stored prescription: %v (report %v)", err, rep)
		}
		checkEmbeddedFresh(t, rec.Signature, d.cert, n.ca.Issuer().Cert)
		count++
		clk.Add(37*time.Minute + 11*time.Second) // drifts across every time of day
	}
	if count < 70 || young == nil {
		t.Fatalf("only %d ingestions", count)
	}
}

// TestIngestAfterFiveMinutes is the case the issue reported: a prescription that arrives more than five minutes
// after the responder pre-signed its certificate's response is accepted (it was 422 "B-T").
func TestIngestAfterFiveMinutes(t *testing.T) {
	clk := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	n := clockNode(t, clk)
	gen := rxgen.New(8)
	gen.Now = clk.Now
	d := newDoctor(t, n, gen, clk.Now())
	c, url := ingestClient(t, n, d)
	clk.Add(5*time.Minute + time.Second)
	if code, m := submit(t, c, url, n, gen, d, clk); code != http.StatusCreated {
		t.Fatalf("%d %v", code, m["report"])
	}
}

// checkEmbeddedFresh reads the stored B-LT with encoding/asn1 (independently of package signing): every
// BasicOCSPResponse in revocation-values is for the signer and produced at or after every signature timestamp's
// genTime.
func checkEmbeddedFresh(t *testing.T, der []byte, signer, issuer *x509.Certificate) {
	t.Helper()
	type attribute struct {
		Type   asn1.ObjectIdentifier
		Values []asn1.RawValue `asn1:"set"`
	}
	type signerInfo struct {
		Version       int
		SID           asn1.RawValue
		DigestAlg     asn1.RawValue
		SignedAttrs   asn1.RawValue `asn1:"optional,tag:0"`
		SigAlg        asn1.RawValue
		Signature     []byte
		UnsignedAttrs []attribute `asn1:"optional,tag:1,set"`
	}
	type signedData struct {
		Version     int
		DigestAlgs  asn1.RawValue
		EncapInfo   asn1.RawValue
		Certs       asn1.RawValue `asn1:"optional,tag:0"`
		CRLs        asn1.RawValue `asn1:"optional,tag:1"`
		SignerInfos []signerInfo  `asn1:"set"`
	}
	type contentInfo struct {
		Type    asn1.ObjectIdentifier
		Content signedData `asn1:"explicit,tag:0"`
	}
	var ci contentInfo
	if _, err := asn1.Unmarshal(der, &ci); err != nil || len(ci.Content.SignerInfos) != 1 {
		t.Fatalf("stored signature: %v", err)
	}
	oidSigTS := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}
	oidRevVals := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 24}
	var genTimes []time.Time
	var basics [][]byte
	for _, a := range ci.Content.SignerInfos[0].UnsignedAttrs {
		switch {
		case a.Type.Equal(oidSigTS):
			var tok contentInfo
			if _, err := asn1.Unmarshal(a.Values[0].FullBytes, &tok); err != nil {
				t.Fatal(err)
			}
			var eci struct {
				Type    asn1.ObjectIdentifier
				Content []byte `asn1:"explicit,tag:0"`
			}
			if _, err := asn1.Unmarshal(tok.Content.EncapInfo.FullBytes, &eci); err != nil {
				t.Fatal(err)
			}
			var tst struct {
				Version  int
				Policy   asn1.ObjectIdentifier
				Imprint  asn1.RawValue
				Serial   *big.Int
				GenTime  time.Time     `asn1:"generalized"`
				Optional asn1.RawValue `asn1:"optional"`
			}
			if _, err := asn1.Unmarshal(eci.Content, &tst); err != nil {
				t.Fatalf("TSTInfo: %v", err)
			}
			genTimes = append(genTimes, tst.GenTime)
		case a.Type.Equal(oidRevVals):
			var rv struct {
				OCSP []asn1.RawValue `asn1:"optional,explicit,tag:1"`
			}
			if _, err := asn1.Unmarshal(a.Values[0].FullBytes, &rv); err != nil {
				t.Fatal(err)
			}
			for _, b := range rv.OCSP {
				basics = append(basics, b.FullBytes)
			}
		}
	}
	if len(genTimes) == 0 || len(basics) == 0 {
		t.Fatalf("B-LT has %d timestamps and %d OCSP responses", len(genTimes), len(basics))
	}
	signerResponses := 0
	defer func() {
		if signerResponses == 0 {
			t.Fatal("no embedded OCSP response for the signer")
		}
	}()
	for _, b := range basics {
		full, err := asn1.Marshal(struct {
			Status asn1.Enumerated
			Bytes  struct {
				Type asn1.ObjectIdentifier
				Resp []byte
			} `asn1:"explicit,tag:0"`
		}{0, struct {
			Type asn1.ObjectIdentifier
			Resp []byte
		}{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}, b}})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := ocsp.ParseResponse(full, nil); err == nil && r.SerialNumber.Cmp(signer.SerialNumber) != 0 {
			continue // the TSA's status (B-LT embeds the whole chain's and the TSA's revocation data)
		}
		signerResponses++
		r, err := ocsp.ParseResponseForCert(full, signer, issuer)
		if err != nil {
			t.Fatalf("embedded OCSP: %v", err)
		}
		if r.Status != ocsp.Good || r.IssuerHash != crypto.SHA256 {
			t.Fatalf("embedded OCSP status %d", r.Status)
		}
		for _, g := range genTimes {
			if r.ThisUpdate.Before(g) || r.ProducedAt.Before(g) {
				t.Fatal(fmt.Sprintf("embedded OCSP thisUpdate %s producedAt %s before the timestamp %s", r.ThisUpdate, r.ProducedAt, g))
			}
		}
	}
}

// TestArchiveRenewalJob runs the node's renewal pass (what mohr serve runs every archive.interval and
// `mohr archive renew` runs once) with the server clock over six years: nothing is due after ingestion; once the
// TSA certificate is within the window the pass refuses to renew with it (the TSA must be rotated first); after
// rotation every stored prescription gets an archive-time-stamp-v3, verifies at B-LTA, is read back through
// GET /v1/prescriptions/{id} with its sealed report, and is due again before the new TSA certificate expires.
// A second rotation renews over the first archive timestamp.
func TestArchiveRenewalJob(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	n := clockNode(t, clk)
	gen := rxgen.New(9)
	gen.Now = clk.Now
	d := newDoctor(t, n, gen, clk.Now())
	c, url := ingestClient(t, n, d)
	var ids []string
	for i := 0; i < 3; i++ {
		code, m := submit(t, c, url, n, gen, d, clk)
		if code != http.StatusCreated {
			t.Fatalf("ingest: %d %v", code, m)
		}
		ids = append(ids, m["report"].(map[string]any)["contentSha256"].(string))
	}
	window := time.Duration(n.cfg.Archive.RenewWindow)
	get := func(id string) (int, map[string]any) {
		resp, err := c.Get(url + "/v1/prescriptions/" + id)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	level := func(id string) string {
		code, m := get(id)
		if code != http.StatusOK || m["sealedReport"] == nil {
			t.Fatalf("GET %s: %d %v", id, code, m)
		}
		sig, _ := jsonBytes(m["signature"])
		r := n.vs.Load().v.Verify(ctx, sig)
		if !r.Passed() {
			t.Fatalf("stored %s: %s", id, r.Summary())
		}
		return r.Level
	}
	rotateTSA := func() {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		cert, err := issueFor(ctx, n.ca, key, ca.Request{Profile: ca.ProfileTSA, CommonName: "Mohr Time-Stamping Authority"})
		if err != nil {
			t.Fatal(err)
		}
		chain := n.ca.Issuer().Chain
		if n.tsa, err = signing.NewTSA(key, append([]*x509.Certificate{cert}, chain[:len(chain)-1]...),
			signing.TSAConfig{Policy: []int{2, 999, 1742, 5, 1}, Accuracy: time.Second, Now: clk.Now}); err != nil {
			t.Fatal(err)
		}
		n.tsaCerts = append(n.tsaCerts, cert) // the new key joins the TSA trust list; the old stays
		if err := n.reloadTrustAnchors(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if done, failed, err := n.renewArchives(ctx); err != nil || done+failed != 0 {
		t.Fatalf("right after ingestion: %d done, %d failed, %v", done, failed, err)
	}
	rec, _ := n.st.Prescription(ctx, ids[0])
	if rec.ArchiveDue.IsZero() || !rec.ArchiveDue.Equal(n.tsa.Certificate().NotAfter.Add(-window).Truncate(time.Microsecond)) {
		t.Fatalf("archive due %s, TSA certificate until %s", rec.ArchiveDue, n.tsa.Certificate().NotAfter)
	}
	if level(ids[0]) != "B-LT" {
		t.Fatal("not B-LT at ingestion")
	}
	start := clk.Now()
	for round := 1; round <= 2; round++ {
		rec, _ := n.st.Prescription(ctx, ids[0])
		clk.Add(rec.ArchiveDue.Sub(clk.Now()) + time.Hour)
		if done, failed, _ := n.renewArchives(ctx); done != 0 || failed != 3 {
			t.Fatalf("round %d with a TSA certificate inside the window: %d done, %d failed", round, done, failed)
		}
		rotateTSA()
		if done, failed, err := n.renewArchives(ctx); err != nil || done != 3 || failed != 0 {
			t.Fatalf("round %d: %d done, %d failed, %v", round, done, failed, err)
		}
		for _, id := range ids {
			if l := level(id); l != "B-LTA" {
				t.Fatalf("round %d: %s at %s", round, id, l)
			}
			rec, _ := n.st.Prescription(ctx, id)
			if !rec.ArchiveDue.After(clk.Now()) {
				t.Fatalf("round %d: still due", round)
			}
		}
		if done, _, _ := n.renewArchives(ctx); done != 0 {
			t.Fatalf("round %d: renewed twice", round)
		}
	}
	rec, _ = n.st.Prescription(ctx, ids[0])
	if st, err := signing.ArchiveStatus(rec.Signature); err != nil || st.Count != 2 || clk.Now().Sub(start) < 5*365*24*time.Hour {
		t.Fatalf("after %s: %+v %v", clk.Now().Sub(start), st, err)
	}
}

// TestUpgradeEndpoint: POST /v1/signatures/upgrade on the real node takes a B-B to B-T, B-LT and B-LTA (each
// verified at that level, the B-LTA also by openssl cms -verify), and answers 422 for a signature that does not
// validate and 400 for an unknown level.
func TestUpgradeEndpoint(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	n := clockNode(t, clk)
	gen := rxgen.New(10)
	gen.Now = clk.Now
	d := newDoctor(t, n, gen, clk.Now())
	c, url := ingestClient(t, n, d)
	body, _ := gen.Prescription(d.phy)
	chain := n.ca.Issuer().Chain
	bb, err := signing.Sign(ctx, body, signing.SignOptions{Signer: d.key, Chain: append([]*x509.Certificate{d.cert}, chain[:len(chain)-1]...), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(10 * time.Minute)
	post := func(level string, der []byte) (int, []byte) {
		resp, err := c.Post(url+"/v1/signatures/upgrade?level="+level, "application/cms", bytes.NewReader(der))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	var lta []byte
	for _, level := range []string{"B-T", "B-LT", "B-LTA"} {
		code, out := post(level, bb)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", level, code, out)
		}
		if r := n.vs.Load().v.Verify(ctx, out); !r.Passed() || r.Level != level {
			t.Fatalf("%s: %s", level, r.Summary())
		}
		lta = out
	}
	bad := bytes.Clone(bb)
	bad[len(bad)-10] ^= 1 // the signature value
	if code, out := post("B-LT", bad); code != http.StatusUnprocessableEntity {
		t.Fatalf("tampered: %d %s", code, out)
	}
	if code, _ := post("B-X", bb); code != http.StatusBadRequest {
		t.Fatalf("bad level: %d", code)
	}
	dir := t.TempDir()
	in := dir + "/lta.p7s"
	os.WriteFile(in, lta, 0o600)
	out, err := exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", in, "-CAfile",
		n.cfg.CA.Root, "-purpose", "any", "-out", "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl cms -verify B-LTA: %v\n%s", err, out)
	}
}
