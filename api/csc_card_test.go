package api

import (
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/signing/remote"
)

// cardSign inserts vc into vpcd reader 0 of the real pcscd and has it sign challenge after pin (VERIFY, then
// INTERNAL AUTHENTICATE); it returns the card's certificate and answer. The test holds testenv.LockPCSCD.
func cardSign(t *testing.T, vc *virtualcard.Card, pin string, challenge []byte) ([]byte, []byte, error) {
	t.Helper()
	ctx := context.Background()
	pc, err := cardreader.Establish(ctx)
	if err != nil {
		testenv.Missing(t, "pcscd: "+err.Error())
	}
	defer pc.Release()
	const reader = "Virtual PCD 00 00"
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := pc.WaitForRemoval(wctx, reader); err != nil {
		if errors.Is(err, cardreader.ErrNoReader) {
			testenv.Missing(t, "vpcd reader "+reader)
		}
		t.Fatalf("reader not empty: %v", err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- vc.ConnectVPCD(cctx, "127.0.0.1:35963") }()
	defer func() {
		stop()
		<-done
		rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		pc.WaitForRemoval(rctx, reader)
	}()
	if err := pc.WaitForCard(wctx, reader); err != nil {
		t.Fatalf("card did not appear: %v", err)
	}
	card, err := pc.Connect(ctx, reader)
	if err != nil {
		t.Fatal(err)
	}
	defer card.Close()
	nid, err := cardreader.NationalID(ctx, card, cardreader.DefaultNationalIDProfile())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := nid.Certificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := nid.SignChallenge(ctx, func(context.Context, string) ([]byte, error) { return []byte(pin), nil }, challenge)
	return cert.Raw, sig, err
}

// TestCSCCardFactor: the RA registers the physician's national ID card over the exchange's own challenge
// (POST /v1/remote/card-challenges, POST .../cards); credentials/info lists it; credentials/authorize takes
// activation_handle + card_certificate + card_signature (the card's answer through the real pcscd) and
// answers the SAD; signHash signs; the replayed answer, an answer over other hashes, malformed card fields,
// a registration by an operator and a card answer over another officer's challenge are refused.
func TestCSCCardFactor(t *testing.T) {
	testenv.LockPCSCD(t)
	e := newCSCEnv(t)
	phys, ra := string(RolePhysician), string(RoleRAOfficer)
	h := virtualcard.DefaultHolder
	h.NationalCode = testNatCode
	vc, err := virtualcard.New(virtualcard.Config{Profile: virtualcard.ProfileNationalID, Holder: h, Issuer: e.cardIssuer,
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	// The operator may not ask for a card challenge.
	if r := e.doJSON(string(RoleOperator), "POST", "/v1/remote/card-challenges", map[string]any{"purpose": "register", "credentialId": e.cred.ID}); r.status != http.StatusForbidden {
		t.Fatalf("operator card challenge: %d %s", r.status, r.body)
	}
	r := e.doJSON(ra, "POST", "/v1/remote/card-challenges", map[string]any{"purpose": "register", "credentialId": e.cred.ID})
	var ch remoteCardChallengeResponse
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &ch) != nil {
		t.Fatalf("card challenge: %d %s", r.status, r.body)
	}
	chal, _ := base64.StdEncoding.DecodeString(ch.Challenge)
	certDER, sig, err := cardSign(t, vc, "123456", chal)
	if err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"challengeId": ch.ID, "certificate": base64.StdEncoding.EncodeToString(certDER), "signature": base64.StdEncoding.EncodeToString(sig)}
	r = e.doJSON(ra, "POST", "/v1/remote/credentials/"+e.cred.ID+"/cards", body)
	if r.status != http.StatusCreated {
		t.Fatalf("add card: %d %s", r.status, r.body)
	}
	// The same answer again: the challenge is used up.
	checkProblem(t, e.doJSON(ra, "POST", "/v1/remote/credentials/"+e.cred.ID+"/cards", body), http.StatusForbidden)

	// credentials/info lists both factors and the card's authData objects.
	st, m := e.post(phys, "/csc/v2/credentials/info", map[string]any{"credentialID": e.cred.ID, "authInfo": true})
	if st != 200 {
		t.Fatalf("info: %d %v", st, m)
	}
	factors, _ := m["factors"].([]any)
	kinds := map[string]bool{}
	for _, f := range factors {
		kinds[f.(map[string]any)["type"].(string)] = true
	}
	if len(factors) != 2 || !kinds[remote.FactorPasskey] || !kinds[remote.FactorCard] {
		t.Fatalf("factors: %v", m["factors"])
	}
	objs, _ := json.Marshal(m["auth"])
	for _, id := range []string{cscAuthActivationHandle, cscAuthCardCertificate, cscAuthCardSignature} {
		if !json.Valid(objs) || !strings.Contains(string(objs), `"id":"`+id+`"`) {
			t.Fatalf("auth objects lack %s: %s", id, objs)
		}
	}

	begin := func(hashes [][]byte) (string, []byte) {
		t.Helper()
		st, m := e.post(phys, "/csc/v2/credentials/authorize", map[string]any{"credentialID": e.cred.ID, "numSignatures": len(hashes),
			"hashes": b64hashes(hashes)})
		if st != http.StatusAccepted {
			t.Fatalf("authorize step 1: %d %v", st, m)
		}
		c, err := base64.StdEncoding.DecodeString(m["challenge"].(string))
		if err != nil || len(c) != 32 {
			t.Fatalf("challenge %v: %v", m["challenge"], err)
		}
		return m["handle"].(string), c
	}
	step2 := func(hashes [][]byte, handle string, cert, sig string) (int, map[string]any) {
		return e.post(phys, "/csc/v2/credentials/authorize", map[string]any{"credentialID": e.cred.ID, "numSignatures": len(hashes),
			"hashes": b64hashes(hashes), "authData": []map[string]string{{"id": cscAuthActivationHandle, "value": handle},
				{"id": cscAuthCardCertificate, "value": cert}, {"id": cscAuthCardSignature, "value": sig}}})
	}
	b64 := base64.StdEncoding.EncodeToString

	hashes := docHashes(5)
	handle, c := begin(hashes)
	_, sig, err = cardSign(t, vc, "123456", c)
	if err != nil {
		t.Fatal(err)
	}
	st, m = step2(hashes, handle, b64(certDER), b64(sig))
	if st != http.StatusOK {
		t.Fatalf("authorize with the card: %d %v", st, m)
	}
	sad := m["SAD"].(string)
	st, m = e.post(phys, "/csc/v2/signatures/signHash", map[string]any{"credentialID": e.cred.ID, "SAD": sad,
		"hashes": b64hashes(hashes), "signAlgo": oidECDSAWithSHA256})
	if st != 200 {
		t.Fatalf("signHash: %d %v", st, m)
	}
	chain, _ := e.cred.Certificates()
	for i, s := range m["signatures"].([]any) {
		der, _ := base64.StdEncoding.DecodeString(s.(string))
		if !ecdsa.VerifyASN1(chain[0].PublicKey.(*ecdsa.PublicKey), hashes[i], der) {
			t.Fatalf("signature %d does not verify", i)
		}
	}
	// The replayed answer.
	if st, m = step2(hashes, handle, b64(certDER), b64(sig)); st != 400 || m["error"] != "invalid_authentication_data" {
		t.Fatalf("replayed card answer: %d %v", st, m)
	}
	// An answer over other hashes (another request's challenge).
	hashes = docHashes(2)
	handle, _ = begin(hashes)
	_, c2 := begin(docHashes(2))
	_, sig, err = cardSign(t, vc, "123456", c2)
	if err != nil {
		t.Fatal(err)
	}
	if st, m = step2(hashes, handle, b64(certDER), b64(sig)); st != 400 || m["error"] != "invalid_authentication_data" {
		t.Fatalf("card answer over other hashes: %d %v", st, m)
	}
	// Malformed card fields never reach the service's checks as valid: short signature, no certificate, both factors.
	handle, _ = begin(hashes)
	for name, ad := range map[string][]map[string]string{
		"short signature": {{"id": cscAuthActivationHandle, "value": handle}, {"id": cscAuthCardCertificate, "value": b64(certDER)}, {"id": cscAuthCardSignature, "value": b64(sig[:63])}},
		"no certificate":  {{"id": cscAuthActivationHandle, "value": handle}, {"id": cscAuthCardSignature, "value": b64(sig)}},
		"both factors": {{"id": cscAuthActivationHandle, "value": handle}, {"id": cscAuthCardCertificate, "value": b64(certDER)},
			{"id": cscAuthCardSignature, "value": b64(sig)}, {"id": cscAuthAssertion, "value": "e30"}},
		"twice the handle": {{"id": cscAuthActivationHandle, "value": handle}, {"id": cscAuthHandle, "value": handle}},
	} {
		st, m := e.post(phys, "/csc/v2/credentials/authorize", map[string]any{"credentialID": e.cred.ID, "numSignatures": len(hashes),
			"hashes": b64hashes(hashes), "authData": ad})
		if st != 400 || m["error"] != "invalid_authentication_data" {
			t.Fatalf("%s: %d %v", name, st, m)
		}
	}
	// The refusals are in the audit log.
	evs, err := e.st.OutboxEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var refusals, grants int
	for _, ev := range evs {
		var d struct{ Op, Factor string }
		json.Unmarshal(ev.Data, &d)
		switch {
		case ev.Kind == "remote.refused" && d.Op == "activate-card":
			refusals++
		case ev.Kind == "remote.activation.granted" && d.Factor == remote.FactorCard:
			grants++
		}
	}
	if refusals != 2 || grants != 1 {
		t.Fatalf("audit: %d card refusals (want 2), %d card grants (want 1)", refusals, grants)
	}
}
