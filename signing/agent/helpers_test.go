package agent_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/agent"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

// The physician on the virtual card (virtualcard.DefaultHolder) and on the software key.
var physician = rxgen.Physician{NationalCode: "0499370899", CouncilNumber: "123456", Given: "سارا", Family: "احمدی", Specialty: "General practice"}

const goodPIN = "73915482"

// exchange is an in-process ingestion endpoint built from signing.Ingestor: it answers POST /v1/prescriptions
// as package api does ({"report", "sealedReport"}, 201; a rejection 422 with its report), and says its own
// processing time in Server-Timing.
type exchange struct {
	pki      *testpki.PKI
	ingestor *signing.Ingestor
	srv      *httptest.Server
	stored   atomic.Int64
	// struckOff makes the council registry answer "unknown physician", so validation fails and the exchange
	// refuses the prescription with 422 and its report.
	struckOff atomic.Bool
	// failNext answers that many requests 503 (with a problem document and Retry-After: 0) before ingesting.
	failNext atomic.Int64
	requests atomic.Int64
	// bodies are the SHA-256 digests of every body received, in order.
	bodiesMu sync.Mutex
	bodies   [][32]byte
}

type memStore struct{ n *atomic.Int64 }

func (m memStore) SavePrescription(context.Context, signing.Prescription) error {
	m.n.Add(1)
	return nil
}

type registry struct{ off *atomic.Bool }

func (r registry) Registration(_ context.Context, council string) (signing.Registration, error) {
	if council != physician.CouncilNumber || (r.off != nil && r.off.Load()) {
		return signing.Registration{}, signing.ErrUnknownPhysician
	}
	return signing.Registration{CouncilNumber: council, NationalCode: physician.NationalCode, Status: "active",
		ValidFrom: time.Now().AddDate(-5, 0, 0), ValidUntil: time.Now().AddDate(5, 0, 0)}, nil
}

func newExchange(t testing.TB, p *testpki.PKI) *exchange {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	ocspFn := signing.RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return p.OCSP(c) })
	x := &exchange{pki: p}
	tsaLeaf, err := p.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "Mohr Test TSA"})
	if err != nil {
		t.Fatal(err)
	}
	tsa, err := signing.NewTSA(tsaLeaf.Key, tsaLeaf.Chain, signing.TSAConfig{Policy: asn1.ObjectIdentifier{2, 999, 1742, 9, 1}, Accuracy: time.Second, Now: p.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	v, err := signing.NewVerifier(signing.VerifierConfig{Trust: testTrust(p, tsaLeaf.Cert), CRLs: testCRLs(p), Registry: registry{&x.struckOff}, Revocation: ocspFn, Now: p.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	seal, err := p.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Mohr Test Exchange"})
	if err != nil {
		t.Fatal(err)
	}
	x.ingestor = &signing.Ingestor{Verifier: v, Timestamper: tsa, Revocation: ocspFn, Store: memStore{&x.stored},
		Seal: signing.Seal{Signer: seal.Key, Chain: seal.Chain}, Now: p.Clock.Now}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/prescriptions", func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		x.requests.Add(1)
		x.bodiesMu.Lock()
		x.bodies = append(x.bodies, sha256.Sum256(body))
		x.bodiesMu.Unlock()
		if x.failNext.Add(-1) >= 0 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"type":"https://mohr.example/problems/unavailable","title":"Service unavailable","status":503}`)
			return
		}
		x.failNext.Store(0)
		res, err := x.ingestor.Ingest(r.Context(), body)
		status := http.StatusCreated
		switch {
		case errors.Is(err, signing.ErrRejected):
			status = http.StatusUnprocessableEntity
		case err != nil:
			t.Logf("exchange: ingestion failed: %v", err)
			http.Error(w, "ingestion failed", http.StatusServiceUnavailable)
			return
		}
		rep, _ := json.Marshal(res.Report)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Server-Timing", "ingest;dur="+ms(time.Since(t0)))
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"report": json.RawMessage(rep), "sealedReport": res.SealedReport})
	})
	x.srv = httptest.NewServer(mux)
	t.Cleanup(x.srv.Close)
	return x
}

func ms(d time.Duration) string {
	b, _ := json.Marshal(float64(d.Microseconds()) / 1000)
	return string(b)
}

func (x *exchange) submitter() agent.Submitter {
	h := agent.NewHTTPSubmitter(x.srv.URL+"/v1/prescriptions", nil, 10*time.Second)
	h.Backoff = 10 * time.Millisecond
	return h
}

// softCard is a software key that behaves like the council card's signing key in comfort-signature mode:
// a VERIFY opens comfortMax signatures; a signature past them (or after lose) asks the PIN through the
// callback, as cardreader's PINPolicyOnce does; wrong PINs count down to a block.
type softCard struct {
	key   *ecdsa.PrivateKey
	chain []*x509.Certificate

	mu         sync.Mutex
	tries      int
	signs      int
	comfortMax int
	comfort    int
	verifies   int
	// removeAt, if positive, pulls the card during that signature (1-based).
	removeAt int
	removed  bool
	gone     chan struct{}
}

func newSoftCard(t testing.TB, p *testpki.PKI) *softCard {
	t.Helper()
	leaf, err := p.Issue(testpki.PhysicianSigning, testpki.LeafOptions{CommonName: "Dr. " + physician.Given + " " + physician.Family,
		NationalCode: physician.NationalCode, CouncilNumber: physician.CouncilNumber})
	if err != nil {
		t.Fatal(err)
	}
	return &softCard{key: leaf.Key, chain: leaf.Chain, tries: 3, comfortMax: 250, gone: make(chan struct{})}
}

func (c *softCard) verify(pin []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return agent.ErrCardRemoved
	}
	c.verifies++
	if c.tries == 0 {
		return agent.NewPINError(0, keys.ErrPINBlocked)
	}
	c.comfort = 0
	if subtle.ConstantTimeCompare(pin, []byte(goodPIN)) != 1 {
		c.tries--
		return agent.NewPINError(c.tries, keys.ErrPINIncorrect)
	}
	c.tries = 3
	c.comfort = c.comfortMax
	return nil
}

// lose ends the card's comfort state, as a card reset does.
func (c *softCard) lose() {
	c.mu.Lock()
	c.comfort = 0
	c.mu.Unlock()
}

func (c *softCard) remove() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.removed {
		c.removed = true
		close(c.gone)
	}
}

type softSigner struct {
	c   *softCard
	pin keys.PINFunc
}

func (s *softSigner) Public() crypto.PublicKey { return s.c.key.Public() }

func (s *softSigner) Sign(r io.Reader, digest []byte, o crypto.SignerOpts) ([]byte, error) {
	s.c.mu.Lock()
	need := s.c.comfort == 0 && !s.c.removed
	s.c.mu.Unlock()
	if need {
		pin, err := s.pin(context.Background(), "soft card")
		if err != nil {
			return nil, err
		}
		defer clear(pin)
		if err := s.c.verify(pin); err != nil {
			return nil, err
		}
	}
	s.c.mu.Lock()
	if s.c.removed {
		s.c.mu.Unlock()
		return nil, agent.ErrCardRemoved
	}
	s.c.comfort--
	if s.c.removeAt > 0 && s.c.signs+1 == s.c.removeAt {
		s.c.mu.Unlock()
		s.c.remove()
		return nil, agent.ErrCardRemoved
	}
	s.c.signs++
	s.c.mu.Unlock()
	return s.c.key.Sign(rand.Reader, digest, o)
}

func (c *softCard) opener() agent.KeyOpener {
	return agent.KeyOpenerFunc(func(ctx context.Context, pin keys.PINFunc) (*agent.Key, error) {
		c.mu.Lock()
		removed := c.removed
		c.mu.Unlock()
		if removed {
			return nil, agent.ErrCard
		}
		return &agent.Key{
			Signer: &softSigner{c: c, pin: pin}, Chain: c.chain,
			CheckPIN: func(ctx context.Context, pin []byte) error { return c.verify(pin) },
			ComfortLimit: func(ctx context.Context) (int, error) {
				c.mu.Lock()
				defer c.mu.Unlock()
				return c.comfort, nil
			},
			WaitRemoved: func(ctx context.Context) error {
				select {
				case <-c.gone:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			},
		}, nil
	})
}

// pinPad is the physician at the keyboard: it counts prompts and answers with pin.
type pinPad struct {
	mu      sync.Mutex
	pin     string
	prompts int
}

func (p *pinPad) set(pin string) { p.mu.Lock(); p.pin = pin; p.mu.Unlock() }

func (p *pinPad) count() int { p.mu.Lock(); defer p.mu.Unlock(); return p.prompts }

func (p *pinPad) fn(ctx context.Context, prompt string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prompts++
	if p.pin == "" {
		return nil, errors.New("cancelled")
	}
	return []byte(p.pin), nil
}

// env is an agent behind its local API, with an exchange, an audit file and a clock.
type env struct {
	t       testing.TB
	pki     *testpki.PKI
	x       *exchange
	pad     *pinPad
	agent   *agent.Agent
	metrics *agent.Metrics
	audit   string
	log     *agent.Audit
	api     *httptest.Server
	token   string
	gen     *rxgen.Generator
	clock   *testpki.Clock
}

type envOpt func(*agent.Config)

func newEnv(t testing.TB, key func(*testpki.PKI) agent.KeyOpener, opts ...envOpt) *env {
	t.Helper()
	p, err := testpki.New(pkiStart())
	if err != nil {
		t.Fatal(err)
	}
	return newEnvPKI(t, p, key(p), opts...)
}

func newEnvPKI(t testing.TB, p *testpki.PKI, key agent.KeyOpener, opts ...envOpt) *env {
	t.Helper()
	e := &env{t: t, pki: p, x: newExchange(t, p), pad: &pinPad{pin: goodPIN}, metrics: agent.NewMetrics(), clock: p.Clock}
	e.audit = filepath.Join(t.TempDir(), "audit.jsonl")
	au, err := agent.OpenAudit(e.audit, p.Clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { au.Close() })
	e.log = au
	if os.Getenv("MOHR_AGENT_BENCH_NOSYNC") == "1" {
		au.SetSync(false)
	}
	cfg := agent.Config{Key: key, PIN: e.pad.fn, Submitter: e.x.submitter(), Audit: au, Metrics: e.metrics, Now: p.Clock.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if e.agent, err = agent.New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.agent.Close() })
	tokPath := filepath.Join(t.TempDir(), "agent.token")
	tok, err := agent.LoadOrCreateToken(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	e.token = string(tok)
	srv, err := agent.NewServer(agent.ServerConfig{Agent: e.agent, Token: tok, Metrics: e.metrics, AllowedOrigins: []string{"https://emr.clinic.example"}})
	if err != nil {
		t.Fatal(err)
	}
	e.api = httptest.NewServer(srv)
	t.Cleanup(e.api.Close)
	e.gen = rxgen.New(7)
	e.gen.Now = p.Clock.Now
	return e
}

func (e *env) rx() []byte {
	e.t.Helper()
	b, err := e.gen.Prescription(physician)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// call makes an EMR request with the token, the client header and a JSON body.
func (e *env) call(method, path string, body any) (*http.Response, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.api.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set(agent.ClientHeader, "test-emr")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.api.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func (e *env) startSession(n int, d time.Duration) agent.SessionInfo {
	e.t.Helper()
	resp, b := e.call("POST", "/v1/session", map[string]any{"maxSignatures": n, "durationSeconds": int64(d / time.Second)})
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("start session: %d %s", resp.StatusCode, b)
	}
	var inf agent.SessionInfo
	json.Unmarshal(b, &inf)
	return inf
}

func (e *env) sign(doc []byte, extra map[string]any) (int, agent.ResultLine, agent.Problem) {
	e.t.Helper()
	body := map[string]any{"id": "rx-1", "document": doc}
	for k, v := range extra {
		body[k] = v
	}
	resp, b := e.call("POST", "/v1/sign", body)
	var l agent.ResultLine
	var p agent.Problem
	if resp.StatusCode == http.StatusOK || strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &l); err != nil {
			e.t.Fatalf("sign answer: %v: %s", err, b)
		}
	} else {
		json.Unmarshal(b, &p)
	}
	return resp.StatusCode, l, p
}

// batch posts docs to /v1/batch and returns the NDJSON lines as they arrive (onLine sees each first).
func (e *env) batch(docs [][]byte, extra map[string]any, onLine func(n int, l agent.ResultLine)) (int, []agent.ResultLine, agent.BatchEnd, agent.Problem) {
	e.t.Helper()
	var ds []map[string]any
	for i, d := range docs {
		ds = append(ds, map[string]any{"id": "rx-" + string(rune('a'+i%26)), "document": d})
	}
	body := map[string]any{"documents": ds}
	for k, v := range extra {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", e.api.URL+"/v1/batch", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set(agent.ClientHeader, "test-emr")
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.api.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var p agent.Problem
	if resp.StatusCode != http.StatusOK {
		json.NewDecoder(resp.Body).Decode(&p)
		return resp.StatusCode, nil, agent.BatchEnd{}, p
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-ndjson") {
		e.t.Fatalf("batch content type %q", ct)
	}
	dec := json.NewDecoder(resp.Body)
	var lines []agent.ResultLine
	var end agent.BatchEnd
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if err == io.EOF {
				break
			}
			e.t.Fatalf("batch stream: %v", err)
		}
		if bytes.Contains(raw, []byte(`"done":true`)) {
			json.Unmarshal(raw, &end)
			continue
		}
		var l agent.ResultLine
		if err := json.Unmarshal(raw, &l); err != nil {
			e.t.Fatal(err)
		}
		lines = append(lines, l)
		if onLine != nil {
			onLine(len(lines), l)
		}
	}
	if !end.Done {
		e.t.Fatal("batch stream ended without its summary line")
	}
	return resp.StatusCode, lines, end, p
}

// checkAudit verifies the audit chain and that it holds no PIN and no document content.
func (e *env) checkAudit(docs ...[]byte) []agent.AuditRecord {
	e.t.Helper()
	b, err := os.ReadFile(e.audit)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := agent.VerifyAudit(bytes.NewReader(b)); err != nil {
		e.t.Fatal(err)
	}
	if bytes.Contains(b, []byte(goodPIN)) {
		e.t.Fatal("audit file contains the PIN")
	}
	for _, d := range docs {
		if bytes.Contains(b, []byte(physician.Family)) || bytes.Contains(b, d[:40]) {
			e.t.Fatal("audit file contains document content")
		}
	}
	var recs []agent.AuditRecord
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var r agent.AuditRecord
		json.Unmarshal(line, &r)
		recs = append(recs, r)
	}
	return recs
}

func countEvents(recs []agent.AuditRecord, ev string) int {
	n := 0
	for _, r := range recs {
		if r.Event == ev {
			n++
		}
	}
	return n
}

// testTrust is the trust policy of the test PKI: its root, its intermediate as signer CA, testpki's
// physician-signing policy and the TSA.
func testTrust(p *testpki.PKI, tsa *x509.Certificate) *signing.TrustPolicy {
	return &signing.TrustPolicy{Anchors: []*x509.Certificate{p.Root}, SignerCAs: []*x509.Certificate{p.Intermediate},
		PrescriberPolicies: []asn1.ObjectIdentifier{testpki.OIDPhysicianSigningPolicy}, TSAs: []signing.TrustedTSA{{Cert: tsa}}}
}

// testCRLs serves the root's CRL for the intermediate.
func testCRLs(p *testpki.PKI) signing.CRLSource {
	return signing.CRLFunc(func(_ context.Context, url string) ([]byte, error) { return p.RootCRL() })
}

// pkiStart is the test PKI's clock start: two minutes behind the wall clock. x/crypto/ocsp stamps every
// response's producedAt with the wall clock truncated to the minute, and the exchange embeds only OCSP
// responses produced at or after the signature timestamp (which follows the PKI clock); starting the PKI
// clock behind keeps testpki's responses usable as the exchange's fresh revocation data.
func pkiStart() time.Time { return time.Now().UTC().Add(-2 * time.Minute).Truncate(time.Second) }
