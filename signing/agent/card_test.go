package agent_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing/agent"
	"github.com/mohr-hix/mohr/signing/agent/agentcard"
)

const (
	vpcdAddr   = "127.0.0.1:35963"
	vpcdReader = "Virtual PCD 00 00"
	cardURI    = "card:reader=Virtual%20PCD%2000%2000;profile=medical-council;key=sign"
)

// insertCard makes a medical-council virtual card with PIN goodPIN, puts it into vpcd reader 0 through the
// machine's pcscd, and writes onto it a physician-signing certificate from p's intermediate for the card's own
// key (the virtual card's factory certificate lacks the HIX admission extension). The card is pulled when
// the test ends. The card allows comfort signatures (the agent's ceiling, 250 per VERIFY).
func insertCard(t testing.TB, p *testpki.PKI) *virtualcard.Card {
	t.Helper()
	return insertCardComfort(t, p, agent.MaxSessionSignatures)
}

// insertCardComfort is insertCard with a card whose comfort-signature counter is comfort (0: "PIN always").
func insertCardComfort(t testing.TB, p *testpki.PKI, comfort int) *virtualcard.Card {
	t.Helper()
	testenv.LockPCSCD(t)
	vc, err := virtualcard.New(virtualcard.Config{Profile: virtualcard.ProfileCouncil, PIN: []byte(goodPIN), MaxTries: 3, ComfortSignatures: comfort})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pc, err := cardreader.Establish(ctx)
	if err != nil {
		testenv.Missing(t, "pcscd: "+err.Error())
	}
	defer pc.Release()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pc.WaitForRemoval(wctx, vpcdReader); err != nil {
		if errors.Is(err, cardreader.ErrNoReader) {
			testenv.Missing(t, "vpcd reader "+vpcdReader)
		}
		t.Fatalf("reader not empty: %v", err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- vc.ConnectVPCD(cctx, vpcdAddr) }()
	t.Cleanup(func() {
		stop()
		<-done
		pc, err := cardreader.Establish(context.Background())
		if err == nil {
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			pc.WaitForRemoval(rctx, vpcdReader)
			cancel()
			pc.Release()
		}
	})
	if err := pc.WaitForCard(wctx, vpcdReader); err != nil {
		t.Fatalf("card did not appear: %v", err)
	}
	card, err := pc.Connect(ctx, vpcdReader)
	if err != nil {
		t.Fatal(err)
	}
	defer card.Close()
	cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cc.PublicKey(ctx, cardreader.SlotSign)
	if err != nil {
		t.Fatal(err)
	}
	cert := physicianCert(t, p, pub)
	pin := func(context.Context, string) ([]byte, error) { return []byte(goodPIN), nil }
	if err := cc.WriteCertificate(ctx, cardreader.SlotSign, pin, cert); err != nil {
		t.Fatal(err)
	}
	return vc
}

func physicianCert(t testing.TB, p *testpki.PKI, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	adm, err := hixext.Admission{Authority: "Iran Medical Council", Profession: "Physician", RegistrationNumber: physician.CouncilNumber}.Extension()
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	now := p.Clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn.Add(sn, big.NewInt(1)),
		Subject: pkix.Name{CommonName: "Dr. " + physician.Given + " " + physician.Family, Country: []string{"IR"},
			SerialNumber: hixext.NationalCodePrefix + physician.NationalCode},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageContentCommitment, BasicConstraintsValid: true,
		ExtraExtensions: []pkix.Extension{adm},
	}
	pol, err := x509.OIDFromInts([]uint64{2, 999, 1742, 2, 3}) // testpki.OIDPhysicianSigningPolicy
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Policies = []x509.OID{pol}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.Intermediate, pub, p.InterKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cardKey is the agent's card opener for the test card, with a hook run before each signature.
type cardKey struct {
	o      *agentcard.Opener
	before func(n int)
	n      atomic.Int64
}

func (k *cardKey) OpenKey(ctx context.Context, pin keys.PINFunc) (*agent.Key, error) {
	key, err := k.o.OpenKey(ctx, pin)
	if err != nil || k.before == nil {
		return key, err
	}
	key.Signer = &hookSigner{Signer: key.Signer, k: k}
	return key, nil
}

type hookSigner struct {
	crypto.Signer
	k *cardKey
}

func (h *hookSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	h.k.before(int(h.k.n.Add(1)))
	return h.Signer.Sign(r, d, o)
}

func cardEnv(t testing.TB, before func(n int), opts ...envOpt) (*env, *virtualcard.Card) {
	t.Helper()
	return cardEnvComfort(t, agent.MaxSessionSignatures, before, opts...)
}

// cardEnvComfort is cardEnv with a card whose comfort-signature counter is comfort.
func cardEnvComfort(t testing.TB, comfort int, before func(n int), opts ...envOpt) (*env, *virtualcard.Card) {
	t.Helper()
	p, err := testpki.New(pkiStart())
	if err != nil {
		t.Fatal(err)
	}
	vc := insertCardComfort(t, p, comfort)
	key := &cardKey{o: &agentcard.Opener{URI: cardURI, Intermediates: []*x509.Certificate{p.Intermediate}}, before: before}
	return newEnvPKI(t, p, key, opts...), vc
}

// TestCardEndToEnd: EMR request -> agent -> virtual card through pcscd -> ingestion -> TOTAL_PASSED.
func TestCardEndToEnd(t *testing.T) {
	e, vc := cardEnv(t, nil)
	e.startSession(10, time.Hour)
	var docs [][]byte
	for i := 0; i < 3; i++ {
		doc := e.rx()
		docs = append(docs, doc)
		code, l, p := e.sign(doc, map[string]any{"requireSession": true})
		if code != 200 || l.Status != "submitted" || l.Indication != "TOTAL_PASSED" {
			t.Fatalf("sign %d: %d %+v %+v", i, code, p, l)
		}
		if l.Timings.CardIO <= 0 || l.Timings.CardSign <= 0 || l.Timings.CardSign > l.Timings.CardIO {
			t.Fatalf("timings %+v", l.Timings)
		}
	}
	if vc.Stats()[0x2A].Count != 3 {
		t.Fatalf("card computed %d signatures", vc.Stats()[0x2A].Count)
	}
	if e.pad.count() != 1 || e.x.stored.Load() != 3 {
		t.Fatalf("%d prompts, %d stored", e.pad.count(), e.x.stored.Load())
	}
	e.checkAudit(docs...)
}

// TestCardRemovedMidBatch: the card leaves the reader during the 4th signature of a batch of 10 (at the PSO
// command): the three signed stay valid (TOTAL_PASSED at the exchange), the rest fail cleanly, the session
// is over.
func TestCardRemovedMidBatch(t *testing.T) {
	var vc *virtualcard.Card
	e, vc := cardEnv(t, func(n int) {
		if n == 4 {
			vc.RemoveOn(0x2A)
		}
	})
	var docs [][]byte
	for i := 0; i < 10; i++ {
		docs = append(docs, e.rx())
	}
	code, lines, end, p := e.batch(docs, nil, nil)
	if code != 200 {
		t.Fatalf("batch: %d %+v", code, p)
	}
	checkRemovedBatch(t, lines, end, 3)
	for _, l := range lines {
		if l.Index < 3 && l.Indication != "TOTAL_PASSED" {
			t.Fatalf("document %d: %+v", l.Index, l)
		}
	}
	if _, ok := e.agent.Session(); ok {
		t.Fatal("session survived the removal")
	}
	recs := e.checkAudit(docs...)
	if countEvents(recs, "sign") != 3 || e.x.stored.Load() != 3 {
		t.Fatalf("audit %d signatures, exchange %d", countEvents(recs, "sign"), e.x.stored.Load())
	}
}

// TestCardRemovedEndsSession: pulling the card between signatures ends the comfort session at once (the
// watcher sees it through pcscd); the PIN is gone with it.
func TestCardRemovedEndsSession(t *testing.T) {
	e, vc := cardEnv(t, nil)
	e.startSession(10, time.Hour)
	if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true, "submit": false}); code != 200 {
		t.Fatalf("sign: %d %+v", code, p)
	}
	vc.Remove()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := e.agent.Session(); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("session still open 5 s after the card was pulled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	recs := e.checkAudit()
	if last := recs[len(recs)-1]; last.Event != "session-end" || last.Reason != agent.EndCardRemoved {
		t.Fatalf("last audit record %+v", last)
	}
}

// TestCardSessionLimits: N and T on the real card path, with the injected clock.
func TestCardSessionLimits(t *testing.T) {
	e, vc := cardEnv(t, nil)
	e.startSession(2, time.Hour)
	for i := 0; i < 2; i++ {
		if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true, "submit": false}); code != 200 {
			t.Fatalf("sign %d: %d %+v", i, code, p)
		}
	}
	if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true}); code != 409 || p.Code != "limit_reached" {
		t.Fatalf("beyond N: %d %+v", code, p)
	}
	e.startSession(5, time.Hour)
	e.clock.Advance(time.Hour)
	if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true}); code != 409 || p.Code != "session_expired" {
		t.Fatalf("beyond T: %d %+v", code, p)
	}
	if n := vc.Stats()[0x2A].Count; n != 2 {
		t.Fatalf("card signed %d times", n)
	}
}

// TestCardWrongPINToBlocked: wrong PINs count down on the card (63Cx) to blocking (6983), each reported with
// the tries left; the agent asks once per attempt and never retries.
func TestCardWrongPINToBlocked(t *testing.T) {
	e, vc := cardEnv(t, nil)
	e.pad.set("00000000")
	for _, want := range []int{2, 1, 0} {
		resp, b := e.call("POST", "/v1/session", map[string]any{})
		var p agent.Problem
		json.Unmarshal(b, &p)
		if p.RetriesLeft == nil || *p.RetriesLeft != want || (want == 0) != (resp.StatusCode == http.StatusLocked) {
			t.Fatalf("want %d tries left: %d %s", want, resp.StatusCode, b)
		}
		if vc.TriesLeft() != want {
			t.Fatalf("card has %d tries left, want %d", vc.TriesLeft(), want)
		}
	}
	e.pad.set(goodPIN)
	resp, b := e.call("POST", "/v1/session", map[string]any{})
	if resp.StatusCode != http.StatusLocked {
		t.Fatalf("right PIN on a blocked card: %d %s", resp.StatusCode, b)
	}
	if e.pad.count() != 4 || vc.Stats()[0x2A].Count != 0 {
		t.Fatalf("%d prompts, %d signatures", e.pad.count(), vc.Stats()[0x2A].Count)
	}
}
