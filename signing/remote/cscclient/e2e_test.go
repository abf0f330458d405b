package cscclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	_ "modernc.org/sqlite"

	"github.com/mohr-hix/mohr/api"
	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/hsm"
	"github.com/mohr-hix/mohr/internal/store"
	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/internal/testenv/browser"
	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/agent"
	"github.com/mohr-hix/mohr/signing/remote"
	"github.com/mohr-hix/mohr/signing/remote/cscclient"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

const e2eToken = "MohrRemoteE2E"

func TestMain(m *testing.M) { os.Exit(testenv.SoftHSMMain(m, e2eToken)) }

var physician = rxgen.Physician{NationalCode: "0499370899", CouncilNumber: "123456", Given: "سارا", Family: "احمدی", Specialty: "General practice"}

// world is everything of the end-to-end test: the PKI and a real CA, the remote signing service on SoftHSM2
// behind the real API over mTLS, an exchange that ingests, Chromium with a virtual authenticator.
type world struct {
	pki      *testpki.PKI
	ca       *ca.CA
	svc      *remote.Service
	st       *remote.SQLStore
	api      *httptest.Server
	client   *cscclient.Client
	page     string // origin of the page that runs the WebAuthn ceremonies
	b        *browser.Browser
	exchange *httptest.Server
	stored   atomic.Int64
	assert   atomic.Int64 // assertions the browser made
	agentPIN string       // the agent's PIN callback's answer (the card factor's PIN)
}

func newWorld(t *testing.T) *world { return newWorldWith(t, worldOptions{browser: true}) }

// worldOptions: browser starts Chromium with its virtual authenticator; cardIssuers are the national ID card
// issuers the service trusts (remote.Config.CardIssuers).
type worldOptions struct {
	browser     bool
	cardIssuers []*x509.Certificate
}

func newWorldWith(t *testing.T, o worldOptions) *world {
	t.Helper()
	module, pin := testenv.SoftHSM(t, e2eToken)
	w := &world{}
	var err error
	if w.pki, err = testpki.New(time.Now().UTC().Add(-2 * time.Minute).Truncate(time.Second)); err != nil {
		t.Fatal(err)
	}
	p := w.pki
	ctx := context.Background()
	cst, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cst.Close() })
	if w.ca, err = ca.New(&ca.Issuer{Cert: p.Intermediate, Signer: p.InterKey, Chain: []*x509.Certificate{p.Intermediate, p.Root}},
		cst, ca.DefaultConfig(), ca.Options{Now: p.Clock.Now}); err != nil {
		t.Fatal(err)
	}

	// The pages the browser runs the ceremonies on are the API's own (api/web/remotepage), served here over
	// plain HTTP on localhost, which is a secure context (a browser refuses WebAuthn on a TLS error).
	var pages http.Handler
	pageSrv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { pages.ServeHTTP(rw, r) }))
	t.Cleanup(pageSrv.Close)
	w.page = strings.Replace(pageSrv.URL, "127.0.0.1", "localhost", 1)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "remote.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if w.st, err = remote.NewSQLStore(ctx, db, remote.SQLOptions{}); err != nil {
		t.Fatal(err)
	}
	pinFile := filepath.Join(t.TempDir(), "pin")
	os.WriteFile(pinFile, []byte(pin), 0o600)
	op := hsm.NewOpener(module)
	t.Cleanup(func() { op.Close() })
	w.svc, err = remote.New(remote.Config{Store: w.st, Keys: op, KeyToken: "pkcs11:token=" + e2eToken + "?pin-source=file:" + pinFile,
		RPID: "localhost", RPOrigins: []string{w.page}, MaxHashes: 50, Now: p.Clock.Now, CardIssuers: o.cardIssuers,
		Issue: func(ctx context.Context, r remote.IssueRequest) ([]*x509.Certificate, error) {
			c, err := w.ca.Issue(ctx, ca.Request{Profile: ca.ProfilePhysicianSigning, RemoteSigning: true, CSR: r.CSR, CommonName: r.Name,
				NationalCode: r.NationalCode, CouncilNumber: r.CouncilNumber, Actor: r.Actor})
			if err != nil {
				return nil, err
			}
			return []*x509.Certificate{c, p.Intermediate}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}

	// The API over mTLS, with the physician's authentication certificate from the same CA.
	pool := x509.NewCertPool()
	pool.AddCert(p.Intermediate)
	srv, err := api.New(api.Config{ClientCAs: pool, AllowNoRevocationCheck: true, Now: p.Clock.Now}, api.Services{Remote: w.svc})
	if err != nil {
		t.Fatal(err)
	}
	pages = srv.Handler()
	w.api = httptest.NewUnstartedServer(srv.Handler())
	w.api.TLS = srv.TLSConfig()
	w.api.StartTLS()
	t.Cleanup(w.api.Close)
	authKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, authKey)
	csr, _ := x509.ParseCertificateRequest(csrDER)
	authCert, err := w.ca.Issue(ctx, ca.Request{Profile: ca.ProfilePhysicianAuth, CSR: csr, CommonName: "Dr Sara Ahmadi",
		NationalCode: physician.NationalCode, CouncilNumber: physician.CouncilNumber, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(w.api.Certificate())
	w.client = &cscclient.Client{BaseURL: w.api.URL + "/csc/v2", HTTP: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{{Certificate: [][]byte{authCert.Raw, p.Intermediate.Raw}, PrivateKey: authKey}}},
	}}}

	if !o.browser {
		w.newExchange(t)
		return w
	}
	// Chromium with a virtual platform authenticator that verifies the user.
	w.b = browser.Start(t)
	bctx := w.b.Context()
	if _, err := chromedp.Call(bctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(bctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
		Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21, Transport: webauthn.AuthenticatorTransportInternal,
		HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
	}}); err != nil {
		t.Fatal(err)
	}
	w.b.Do(t, chromedp.Navigate(w.page+"/remote/register"))
	w.newExchange(t)
	return w
}

// ceremony runs navigator.credentials.create or .get in the page with the server's JSON options and returns
// the credential's toJSON().
func (w *world) ceremony(ctx context.Context, fn string, options []byte) ([]byte, error) {
	parse := "parseRequestOptionsFromJSON"
	if fn == "create" {
		parse = "parseCreationOptionsFromJSON"
	}
	js := fmt.Sprintf(`(async () => { const o = %s; const c = await navigator.credentials.%s({publicKey: PublicKeyCredential.%s(o.publicKey)});
		return JSON.stringify(c.toJSON()); })()`, options, fn, parse)
	cctx, cancel := context.WithTimeout(w.b.Context(), 3*time.Minute)
	defer cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	s, err := chromedp.Run(cctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		return nil, err
	}
	if fn == "get" {
		w.assert.Add(1)
	}
	return []byte(s), nil
}

func (w *world) activator(ctx context.Context, options []byte) ([]byte, error) {
	return w.ceremony(ctx, "get", options)
}

// enrol enrols the physician (the RA's call) and has the physician register a passkey in Chromium's virtual
// authenticator on the registration page with the code the RA handed over.
func (w *world) enrol(t *testing.T) remote.Credential {
	t.Helper()
	ra := remote.Caller{Role: remote.RoleRAOfficer, Actor: "test:ra-officer"}
	cred, reg, err := w.svc.Enrol(context.Background(), ra, remote.EnrolRequest{NationalCode: physician.NationalCode,
		CouncilNumber: physician.CouncilNumber, Name: "Dr Sara Ahmadi", IdentityCheck: "national ID card INTERNAL AUTHENTICATE"})
	if err != nil {
		t.Fatal(err)
	}
	w.b.Do(t, chromedp.Navigate(w.page+"/remote/register?lang=en"), chromedp.WaitVisible(chromedp.CSS(`#code`)),
		chromedp.SendKeys(chromedp.CSS(`#code`), strings.ToLower(reg.Code)), chromedp.Click(chromedp.CSS(`#register button`)),
		chromedp.WaitVisible(chromedp.CSS(`#status.ok`)))
	if got := browser.Get(t, w.b, chromedp.Evaluate[string](`document.getElementById("status").textContent`)); !strings.Contains(got, "passkey is registered") {
		t.Fatalf("registration page says %q", got)
	}
	return cred
}

type registry struct{}

func (registry) Registration(_ context.Context, council string) (signing.Registration, error) {
	if council != physician.CouncilNumber {
		return signing.Registration{}, signing.ErrUnknownPhysician
	}
	return signing.Registration{CouncilNumber: council, NationalCode: physician.NationalCode, Status: "active",
		ValidFrom: time.Now().AddDate(-5, 0, 0), ValidUntil: time.Now().AddDate(5, 0, 0)}, nil
}

type memStore struct{ n *atomic.Int64 }

func (m memStore) SavePrescription(context.Context, signing.Prescription) error {
	m.n.Add(1)
	return nil
}

// newExchange is an in-process ingestion endpoint (signing.Ingestor: validation, B-T, B-LT, sealed report)
// answering POST /v1/prescriptions as package api does.
func (w *world) newExchange(t *testing.T) {
	t.Helper()
	p := w.pki
	ocspFn := signing.RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return p.OCSP(c) })
	tsaLeaf, err := p.Issue(testpki.TSA, testpki.LeafOptions{CommonName: "Mohr Test TSA"})
	if err != nil {
		t.Fatal(err)
	}
	tsa, err := signing.NewTSA(tsaLeaf.Key, tsaLeaf.Chain, signing.TSAConfig{Policy: asn1.ObjectIdentifier{2, 999, 1742, 9, 1}, Accuracy: time.Second, Now: p.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	trust := &signing.TrustPolicy{Anchors: []*x509.Certificate{p.Root}, SignerCAs: []*x509.Certificate{p.Intermediate},
		PrescriberPolicies: []asn1.ObjectIdentifier{testpki.OIDPhysicianSigningPolicy}, TSAs: []signing.TrustedTSA{{Cert: tsaLeaf.Cert}}}
	v, err := signing.NewVerifier(signing.VerifierConfig{Trust: trust, Registry: registry{}, Revocation: ocspFn, Now: p.Clock.Now,
		CRLs: signing.CRLFunc(func(context.Context, string) ([]byte, error) { return p.RootCRL() })})
	if err != nil {
		t.Fatal(err)
	}
	seal, err := p.Issue(testpki.OrganisationSeal, testpki.LeafOptions{CommonName: "Mohr Test Exchange"})
	if err != nil {
		t.Fatal(err)
	}
	ing := &signing.Ingestor{Verifier: v, Timestamper: tsa, Revocation: ocspFn, Store: memStore{&w.stored},
		Seal: signing.Seal{Signer: seal.Key, Chain: seal.Chain}, Now: p.Clock.Now}
	w.exchange = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		res, err := ing.Ingest(r.Context(), body)
		status := http.StatusCreated
		switch {
		case errors.Is(err, signing.ErrRejected):
			status = http.StatusUnprocessableEntity
		case err != nil:
			http.Error(rw, "ingestion failed", http.StatusServiceUnavailable)
			return
		}
		rep, _ := json.Marshal(res.Report)
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(status)
		json.NewEncoder(rw).Encode(map[string]any{"report": json.RawMessage(rep), "sealedReport": res.SealedReport})
	}))
	t.Cleanup(w.exchange.Close)
}

func (w *world) agent(t *testing.T, credID string) *agent.Agent {
	t.Helper()
	return w.agentWith(t, &cscclient.AgentKey{Client: w.client, CredentialID: credID, Activate: w.activator, Now: w.pki.Clock.Now})
}

func (w *world) agentWith(t *testing.T, key *cscclient.AgentKey) *agent.Agent {
	t.Helper()
	credID := key.CredentialID
	au, err := agent.OpenAudit(filepath.Join(t.TempDir(), "audit.jsonl"), w.pki.Clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { au.Close() })
	credFromURI, err := cscclient.ParseURI("csc:credential=" + credID)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		Key: func() *cscclient.AgentKey { key.CredentialID = credFromURI; return key }(),
		// The passkey is the activation factor; the agent's PIN prompt only confirms the call. With the card
		// factor it is the national ID card's PIN (w.agentPIN).
		PIN: func(context.Context, string) ([]byte, error) {
			if w.agentPIN != "" {
				return []byte(w.agentPIN), nil
			}
			return []byte("confirm"), nil
		},
		Submitter: agent.NewHTTPSubmitter(w.exchange.URL+"/v1/prescriptions", nil, 30*time.Second),
		Audit:     au, Now: w.pki.Clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func (w *world) count(t *testing.T, kind string) int {
	t.Helper()
	evs, err := w.st.OutboxEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// TestEndToEndChromium: a passkey registered in Chromium's virtual authenticator; a batch of 10
// prescriptions signed through the agent with a csc: key (one WebAuthn assertion for the whole batch, each
// signature by the HSM through signatures/signHash), ingested: TOTAL_PASSED, and the validation report
// names the remote-signing policy.
func TestEndToEndChromium(t *testing.T) {
	w := newWorld(t)
	cred := w.enrol(t)
	if ids, err := w.client.Credentials(context.Background()); err != nil || len(ids) != 1 || ids[0] != cred.ID {
		t.Fatalf("credentials/list: %v %v", ids, err)
	}
	a := w.agent(t, cred.ID)
	gen := rxgen.New(18)
	gen.Now = w.pki.Clock.Now
	var docs []agent.Document
	for i := 0; i < 10; i++ {
		b, err := gen.Prescription(physician)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, agent.Document{ID: fmt.Sprintf("rx-%d", i), Content: b})
	}
	var results []agent.Result
	sum, err := a.SignBatch(context.Background(), docs, agent.SignOptions{}, func(r agent.Result) { results = append(results, r) })
	if err != nil {
		t.Fatal(err)
	}
	if sum.Submitted != 10 || sum.Passed != 10 || len(results) != 10 {
		for _, r := range results {
			t.Logf("%s: %v", r.ID, r.Err)
		}
		t.Fatalf("summary %+v", sum)
	}
	for _, r := range results {
		var rep signing.Report
		if err := json.Unmarshal(r.Submission.Report, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Indication != signing.TotalPassed || rep.Prescriber == nil || rep.Prescriber.RemoteSigningPolicy != "2.999.1742.6.1" {
			t.Fatalf("%s: report %s", r.ID, r.Submission.Report)
		}
	}
	if n := w.assert.Load(); n != 1 {
		t.Errorf("%d WebAuthn assertions for the batch, want 1", n)
	}
	if g, s := w.count(t, "remote.activation.granted"), w.count(t, "remote.signature"); g != 1 || s != 10 {
		t.Errorf("audit: %d activations, %d signatures; want 1 and 10", g, s)
	}
	if w.stored.Load() != 10 {
		t.Errorf("exchange stored %d", w.stored.Load())
	}
}

// TestRegistrationPageChromium: the registration page in Persian (right to left) refuses a code the RA did
// not hand out, with its message in Persian, and nothing is registered; the RA's code, typed with spaces,
// registers the passkey in Chromium's virtual authenticator and the credential becomes active; the same
// code a second time is refused.
func TestRegistrationPageChromium(t *testing.T) {
	w := newWorld(t)
	ra := remote.Caller{Role: remote.RoleRAOfficer, Actor: "test:ra-officer"}
	cred, reg, err := w.svc.Enrol(context.Background(), ra, remote.EnrolRequest{NationalCode: physician.NationalCode,
		CouncilNumber: physician.CouncilNumber, Name: "Dr Sara Ahmadi", IdentityCheck: "national ID card INTERNAL AUTHENTICATE"})
	if err != nil {
		t.Fatal(err)
	}
	status := func() string {
		return browser.Get(t, w.b, chromedp.Evaluate[string](`document.getElementById("status").className+"|"+document.getElementById("status").textContent`))
	}
	w.b.Do(t, chromedp.Navigate(w.page+"/remote/register"), chromedp.WaitVisible(chromedp.CSS(`#code`)))
	if d := browser.Get(t, w.b, chromedp.Evaluate[string](`document.documentElement.lang+"/"+document.documentElement.dir+"/"+document.querySelector("h1").textContent`)); !strings.HasPrefix(d, "fa/rtl/ثبت کلید عبور") {
		t.Fatalf("Persian page: %q", d)
	}
	w.b.Do(t, chromedp.SendKeys(chromedp.CSS(`#code`), "00000-00000-00000-00000"), chromedp.Click(chromedp.CSS(`#register button`)),
		chromedp.WaitVisible(chromedp.CSS(`#status.bad`)))
	if s := status(); !strings.Contains(s, "این کد پذیرفته نشد") {
		t.Fatalf("wrong code: %q", s)
	}
	if c, _ := w.st.Credential(context.Background(), cred.ID); c.Status != remote.StatusPending {
		t.Fatalf("status after a wrong code: %s", c.Status)
	}
	spaced := strings.ReplaceAll(reg.Code, "-", " ")
	w.b.Do(t, chromedp.SetValue(chromedp.CSS(`#code`), spaced), chromedp.Click(chromedp.CSS(`#register button`)),
		chromedp.WaitVisible(chromedp.CSS(`#status.ok`)))
	if c, _ := w.st.Credential(context.Background(), cred.ID); c.Status != remote.StatusActive {
		t.Fatalf("status after registration: %s", c.Status)
	}
	pks, err := w.st.Passkeys(context.Background(), cred.ID)
	if err != nil || len(pks) != 1 {
		t.Fatalf("passkeys: %d %v", len(pks), err)
	}
	// The same code again (the form is hidden after success: a fresh page).
	w.b.Do(t, chromedp.Navigate(w.page+"/remote/register?lang=en"), chromedp.WaitVisible(chromedp.CSS(`#code`)),
		chromedp.SendKeys(chromedp.CSS(`#code`), reg.Code), chromedp.Click(chromedp.CSS(`#register button`)),
		chromedp.WaitVisible(chromedp.CSS(`#status.bad`)))
	if s := status(); !strings.Contains(s, "not accepted") {
		t.Fatalf("used code: %q", s)
	}
}

// TestEndToEndActivationPage: the production activator. The agent's key names Mohr's activation page for the
// batch's request; the physician opens it in Chromium, sees the 10 documents and approves once; the agent
// polls credentials/authorize with the handle until the SAD comes; 10 prescriptions TOTAL_PASSED with the
// remote-signing policy; the service's audit has one approval, one activation and ten signatures.
func TestEndToEndActivationPage(t *testing.T) {
	w := newWorld(t)
	cred := w.enrol(t)
	pages := make(chan string, 1)
	approve := func(_ context.Context, u string) error { pages <- u; return nil }
	a := w.agentWith(t, &cscclient.AgentKey{Client: w.client, CredentialID: cred.ID, Page: w.page + "/remote/activate",
		Approve: approve, Poll: 250 * time.Millisecond, Now: w.pki.Clock.Now})
	gen := rxgen.New(19)
	gen.Now = w.pki.Clock.Now
	var docs []agent.Document
	for i := 0; i < 10; i++ {
		b, err := gen.Prescription(physician)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, agent.Document{ID: fmt.Sprintf("rx-%d", i), Content: b})
	}
	type out struct {
		sum agent.Summary
		res []agent.Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		var o out
		o.sum, o.err = a.SignBatch(context.Background(), docs, agent.SignOptions{}, func(r agent.Result) { o.res = append(o.res, r) })
		done <- o
	}()
	var u string
	select {
	case u = <-pages:
	case o := <-done:
		t.Fatalf("the batch ended without asking for approval: %v", o.err)
	case <-time.After(3 * time.Minute):
		t.Fatal("no activation page")
	}
	if !strings.HasPrefix(u, w.page+"/remote/activate?h=") {
		t.Fatalf("activation page %s", u)
	}
	w.b.Do(t, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS(`#approve`)))
	if n := browser.Get(t, w.b, chromedp.Evaluate[int](`document.querySelectorAll("#a-hashes li").length`)); n != 10 {
		t.Fatalf("the page lists %d hashes", n)
	}
	w.b.Do(t, chromedp.Click(chromedp.CSS(`#approve`)), chromedp.WaitVisible(chromedp.CSS(`#status.ok`)))
	var o out
	select {
	case o = <-done:
	case <-time.After(3 * time.Minute):
		t.Fatal("the batch did not finish after the approval")
	}
	if o.err != nil || o.sum.Passed != 10 {
		for _, r := range o.res {
			t.Logf("%s: %v", r.ID, r.Err)
		}
		t.Fatalf("summary %+v, %v", o.sum, o.err)
	}
	for _, r := range o.res {
		var rep signing.Report
		if err := json.Unmarshal(r.Submission.Report, &rep); err != nil || rep.Indication != signing.TotalPassed || rep.Prescriber.RemoteSigningPolicy != "2.999.1742.6.1" {
			t.Fatalf("%s: report %s", r.ID, r.Submission.Report)
		}
	}
	if p, g, s := w.count(t, "remote.activation.approved"), w.count(t, "remote.activation.granted"), w.count(t, "remote.signature"); p != 1 || g != 1 || s != 10 {
		t.Errorf("audit: %d approvals, %d activations, %d signatures; want 1, 1 and 10", p, g, s)
	}
}
