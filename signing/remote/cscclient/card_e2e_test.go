package cscclient_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/agent"
	"github.com/mohr-hix/mohr/signing/remote"
	"github.com/mohr-hix/mohr/signing/remote/cscclient"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

const (
	vpcdAddr   = "127.0.0.1:35963"
	vpcdReader = "Virtual PCD 00 00"
)

// insertCard puts vc into vpcd reader 0 of the real pcscd until the test ends. The caller holds
// testenv.LockPCSCD.
func insertCard(t *testing.T, vc *virtualcard.Card) {
	t.Helper()
	ctx := context.Background()
	pc, err := cardreader.Establish(ctx)
	if err != nil {
		testenv.Missing(t, "pcscd: "+err.Error())
	}
	t.Cleanup(func() { pc.Release() })
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
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
		rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		pc.WaitForRemoval(rctx, vpcdReader)
	})
	if err := pc.WaitForCard(wctx, vpcdReader); err != nil {
		t.Fatalf("card did not appear: %v", err)
	}
}

// pcscCard is the card factor as the agent runs it (cmd/mohr's agentcsc.go does the same): the national ID
// card in the reader, through pcscd, signs the challenge after the PIN the agent's callback gives.
func pcscCard(ctx context.Context, pin keys.PINFunc, challenge []byte) ([]byte, []byte, error) {
	pc, err := cardreader.Establish(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer pc.Release()
	card, err := pc.Connect(ctx, vpcdReader)
	if err != nil {
		return nil, nil, err
	}
	defer card.Close()
	nid, err := cardreader.NationalID(ctx, card, cardreader.DefaultNationalIDProfile())
	if err != nil {
		return nil, nil, err
	}
	cert, err := nid.Certificate(ctx)
	if err != nil {
		return nil, nil, err
	}
	sig, err := nid.SignChallenge(ctx, pin, challenge)
	if err != nil {
		return nil, nil, err
	}
	return cert.Raw, sig, nil
}

// TestEndToEndCard: the national ID card as the activation factor through the agent. The exchange trusts a
// national ID card issuer; the RA enrols the physician with the card (the exchange verifies its answer to
// its own challenge) and registers it as the factor; the agent with csc:credential=<id>;factor=card signs a
// batch of 10 prescriptions: the card, through the real pcscd, signs one challenge after its PIN (the
// agent's PIN callback); ingested: TOTAL_PASSED with the remote-signing policy; audit: one activation
// naming the card factor, ten signatures. With a wrong PIN the card refuses: nothing is sent to the
// exchange's authorize step 2 and nothing is signed.
func TestEndToEndCard(t *testing.T) {
	testenv.LockPCSCD(t)
	iss, err := virtualcard.NewIssuer(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	w := newWorldWith(t, worldOptions{cardIssuers: []*x509.Certificate{iss.Cert}})
	h := virtualcard.DefaultHolder
	h.NationalCode = physician.NationalCode
	vc, err := virtualcard.New(virtualcard.Config{Profile: virtualcard.ProfileNationalID, Holder: h, Issuer: iss, Now: w.pki.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	insertCard(t, vc)
	ctx := context.Background()
	ra := remote.Caller{Role: remote.RoleRAOfficer, Actor: "test:ra-officer"}
	ch, err := w.svc.BeginCardChallenge(ctx, ra, remote.PurposeEnrol, "")
	if err != nil {
		t.Fatal(err)
	}
	pin := func(context.Context, string) ([]byte, error) { return []byte("123456"), nil }
	cert, sig, err := pcscCard(ctx, pin, ch.Challenge)
	if err != nil {
		t.Fatal(err)
	}
	cred, _, err := w.svc.Enrol(ctx, ra, remote.EnrolRequest{NationalCode: physician.NationalCode, CouncilNumber: physician.CouncilNumber,
		Name: "Dr Sara Ahmadi", Card: &remote.EnrolCard{ChallengeID: ch.ID, Answer: remote.CardAnswer{Certificate: cert, Signature: sig}, Register: true}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := cscclient.ParseKeyURI("csc:credential=" + cred.ID + ";factor=card")
	if err != nil || u.Factor != "card" || u.Credential != cred.ID {
		t.Fatalf("ParseKeyURI: %+v %v", u, err)
	}
	if _, err := cscclient.ParseKeyURI("csc:credential=" + cred.ID + ";factor=sms"); err == nil {
		t.Fatal("factor=sms accepted")
	}

	gen := rxgen.New(21)
	gen.Now = w.pki.Clock.Now
	docs := func(n int) []agent.Document {
		var out []agent.Document
		for i := 0; i < n; i++ {
			b, err := gen.Prescription(physician)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, agent.Document{ID: fmt.Sprintf("rx-%d", i), Content: b})
		}
		return out
	}

	// A wrong PIN first: the card refuses; nothing is signed or submitted.
	w.agentPIN = "999999"
	a := w.agentWith(t, &cscclient.AgentKey{Client: w.client, CredentialID: u.Credential, Card: pcscCard, Now: w.pki.Clock.Now})
	var bad []agent.Result
	sum, err := a.SignBatch(ctx, docs(3), agent.SignOptions{}, func(r agent.Result) { bad = append(bad, r) })
	var ae *cardreader.AuthError
	if !errors.As(err, &ae) || sum.Signed != 0 || sum.Submitted != 0 {
		t.Fatalf("a batch with a wrong card PIN: %+v, %v, %+v", sum, err, bad)
	}
	if vc.TriesLeft() != 2 || w.count(t, "remote.activation.granted") != 0 || w.count(t, "remote.signature") != 0 || w.stored.Load() != 0 {
		t.Fatalf("after a wrong PIN: tries %d, %d grants, %d signatures, %d stored", vc.TriesLeft(),
			w.count(t, "remote.activation.granted"), w.count(t, "remote.signature"), w.stored.Load())
	}

	w.agentPIN = "123456"
	a = w.agentWith(t, &cscclient.AgentKey{Client: w.client, CredentialID: u.Credential, Card: pcscCard, Now: w.pki.Clock.Now})
	var results []agent.Result
	sum, err = a.SignBatch(ctx, docs(10), agent.SignOptions{}, func(r agent.Result) { results = append(results, r) })
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
	evs, err := w.st.OutboxEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	grants := 0
	for _, e := range evs {
		var d struct{ Factor string }
		json.Unmarshal(e.Data, &d)
		if e.Kind == "remote.activation.granted" && d.Factor == remote.FactorCard {
			grants++
		}
	}
	if grants != 1 || w.count(t, "remote.activation.granted") != 1 || w.count(t, "remote.signature") != 10 {
		t.Fatalf("audit: %d card activations of %d, %d signatures; want 1, 1, 10", grants, w.count(t, "remote.activation.granted"), w.count(t, "remote.signature"))
	}
	if vc.TriesLeft() != 3 {
		t.Errorf("PIN tries after the right PIN: %d", vc.TriesLeft())
	}
}
