package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader/virtualcard"
)

// TestCSCActivationPage: credentials/authorize with the activation page. Step 1 gives the handle; step 2
// with the handle alone answers 202 pending until the physician approves on /remote/activate (the page's
// calls, without a client certificate), then the SAD once; signHash signs. An operator asking with the
// handle is refused by the access matrix; a second step 2 is refused.
func TestCSCActivationPage(t *testing.T) {
	e := newCSCEnv(t)
	phys := string(RolePhysician)
	hashes := docHashes(3)
	req := map[string]any{"credentialID": e.cred.ID, "numSignatures": 3, "hashes": b64hashes(hashes)}
	st, m := e.post(phys, "/csc/v2/credentials/authorize", req)
	if st != http.StatusAccepted {
		t.Fatalf("step 1: %d %v", st, m)
	}
	handle := m["handle"].(string)
	req["authData"] = []map[string]string{{"id": "webauthn_handle", "value": handle}}
	if st, m = e.post(phys, "/csc/v2/credentials/authorize", req); st != http.StatusAccepted || m["status"] != "pending" {
		t.Fatalf("step 2 before approval: %d %v", st, m)
	}
	// The page: the request, then the approval.
	r := e.doJSON(callerNone, "POST", "/remote/activate/options", map[string]string{"handle": handle})
	var opts struct {
		Count     int             `json:"count"`
		Hashes    []string        `json:"hashes"`
		PublicKey json.RawMessage `json:"publicKey"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &opts) != nil || opts.Count != 3 || len(opts.Hashes) != 3 {
		t.Fatalf("activation options: %d %s", r.status, r.body)
	}
	if r.header.Get("Content-Security-Policy") == "" || !strings.Contains(r.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("no CSP on the page's answers")
	}
	pk, _ := json.Marshal(map[string]json.RawMessage{"publicKey": opts.PublicKey})
	asn, err := e.auth.Assert(pk)
	if err != nil {
		t.Fatal(err)
	}
	if r = e.doJSON(callerNone, "POST", "/remote/activate/approve", map[string]any{"handle": handle, "credential": json.RawMessage(asn)}); r.status != 200 {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	if r = e.do(callerNone, "POST", "/remote/activate/approve", "text/plain", []byte(`{}`)); r.status != http.StatusUnsupportedMediaType {
		t.Fatalf("approve as a plain form: %d", r.status)
	}
	if st, _ := e.post(string(RoleOperator), "/csc/v2/credentials/authorize", req); st != http.StatusForbidden {
		t.Fatalf("operator with the handle: %d", st)
	}
	st, m = e.post(phys, "/csc/v2/credentials/authorize", req)
	if st != http.StatusOK || m["SAD"] == nil {
		t.Fatalf("step 2 after approval: %d %v", st, m)
	}
	if st, m2 := e.post(phys, "/csc/v2/credentials/authorize", req); st != http.StatusBadRequest || m2["error"] != "invalid_authentication_data" {
		t.Fatalf("step 2 again: %d %v", st, m2)
	}
	st, s := e.post(phys, "/csc/v2/signatures/signHash", map[string]any{"credentialID": e.cred.ID, "SAD": m["SAD"], "hashes": b64hashes(hashes),
		"signAlgo": oidECDSAWithSHA256})
	if st != 200 || len(s["signatures"].([]any)) != 3 {
		t.Fatalf("signHash: %d %v", st, s)
	}
	// The pages in both languages.
	for _, lang := range []string{"", "?lang=en"} {
		r := e.do(callerNone, "GET", "/remote/activate"+lang, "", nil)
		if r.status != 200 || !strings.Contains(string(r.body), `id="approve"`) {
			t.Fatalf("activation page %q: %d", lang, r.status)
		}
	}
}

// TestRemoteRARefusedRoles: every role the access matrix refuses on the RA and lifecycle routes gets a 403
// problem document, reaches no service, and the attempt is in the audit log; the RA officer enrols.
func TestRemoteRARefusedRoles(t *testing.T) {
	e := newCSCEnv(t)
	enrol := map[string]any{"nationalCode": testNatCode, "councilNumber": testCouncil, "name": "Dr Test",
		"identityCheck": map[string]string{"method": "national ID card"}}
	for _, c := range []struct{ caller, method, path string }{
		{string(RoleOperator), "POST", "/v1/remote/credentials"},
		{string(RolePhysician), "POST", "/v1/remote/credentials"},
		{string(RoleAuditor), "POST", "/v1/remote/credentials/" + e.cred.ID + "/suspend"},
		{string(RoleOperator), "POST", "/v1/remote/credentials/" + e.cred.ID + "/rekey"},
		{string(RolePhysician), "POST", "/v1/remote/credentials/" + e.cred.ID + "/registration"},
	} {
		e.rec.reset()
		r := e.doJSON(c.caller, c.method, c.path, enrol)
		if r.status != http.StatusForbidden {
			t.Fatalf("%s %s as %s: %d %s", c.method, c.path, c.caller, r.status, r.body)
		}
		e.rec.mu.Lock()
		evs := e.rec.events
		e.rec.mu.Unlock()
		if len(evs) != 1 || evs[0].Kind != "remote.refused" {
			t.Fatalf("audit after %s %s as %s: %+v", c.method, c.path, c.caller, evs)
		}
	}
	// The exchange checks the national ID card itself: without the card's answer to its challenge, refused.
	if r := e.doJSON(string(RoleRAOfficer), "POST", "/v1/remote/credentials", enrol); r.status != http.StatusForbidden {
		t.Fatalf("enrol without the card's answer: %d %s", r.status, r.body)
	}
	r := e.doJSON(string(RoleRAOfficer), "POST", "/v1/remote/card-challenges", map[string]string{"purpose": "enrol"})
	var ch remoteCardChallengeResponse
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &ch) != nil {
		t.Fatalf("enrolment challenge: %d %s", r.status, r.body)
	}
	chal, _ := base64.StdEncoding.DecodeString(ch.Challenge)
	h := virtualcard.DefaultHolder
	h.NationalCode = testNatCode
	vc, err := virtualcard.New(virtualcard.Config{Profile: virtualcard.ProfileNationalID, Holder: h, Issuer: e.cardIssuer,
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	ans := processAnswer(t, vc, "123456", chal)
	enrol["card"] = map[string]string{"challengeId": ch.ID, "certificate": base64.StdEncoding.EncodeToString(ans.Certificate),
		"signature": base64.StdEncoding.EncodeToString(ans.Signature)}
	r = e.doJSON(string(RoleRAOfficer), "POST", "/v1/remote/credentials", enrol)
	var m struct {
		Credential   struct{ ID, Status string }
		Registration struct{ Code, Page string }
	}
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &m) != nil || m.Credential.Status != "pending" || len(m.Registration.Code) != 23 ||
		m.Registration.Page != "/remote/register" {
		t.Fatalf("enrol: %d %s", r.status, r.body)
	}
	// The same answer again: the challenge is used up.
	if r := e.doJSON(string(RoleRAOfficer), "POST", "/v1/remote/credentials", enrol); r.status != http.StatusForbidden {
		t.Fatalf("enrol with a replayed card answer: %d %s", r.status, r.body)
	}
	// No identity check and no card: refused.
	delete(enrol, "identityCheck")
	delete(enrol, "card")
	if r := e.doJSON(string(RoleRAOfficer), "POST", "/v1/remote/credentials", enrol); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("enrol without the identity check: %d %s", r.status, r.body)
	}
}
