package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/hsm"
	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/softauthn"
	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/signing/remote"
)

const cscToken = "MohrRemoteAPI"

// cscEnv is the API with a real remote signing service: SoftHSM2 keys, a SQLite store, certificates from the
// test CA with the remote-signing policy.
type cscEnv struct {
	*testEnv
	svc  *remote.Service
	st   *remote.SQLStore
	cred remote.Credential
	auth *softauthn.Authenticator
	op   *hsm.Opener
	// cardIssuer is the national ID card issuer the service trusts (remote.Config.CardIssuers).
	cardIssuer *virtualcard.Issuer
}

func newCSCEnv(t *testing.T) *cscEnv { return newCSCEnvTB(t) }

func newCSCEnvTB(t testing.TB) *cscEnv {
	t.Helper()
	module, pin := testenv.SoftHSM(t, cscToken)
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(pin), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "remote.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := remote.NewSQLStore(context.Background(), db, remote.SQLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	op := hsm.NewOpener(module)
	t.Cleanup(func() { op.Close() })
	var issuer *testCA
	clock := &fakeClock{t: testNow}
	cardIssuer, err := virtualcard.NewIssuer(nil, testNow)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := remote.New(remote.Config{Store: st, Keys: op, KeyToken: "pkcs11:token=" + cscToken + "?pin-source=file:" + pinFile,
		RPID: "localhost", RPOrigins: []string{"https://localhost"}, MaxHashes: 10, Now: clock.Now, CardIssuers: []*x509.Certificate{cardIssuer.Cert},
		Issue: func(_ context.Context, r remote.IssueRequest) ([]*x509.Certificate, error) {
			return []*x509.Certificate{issueRemoteCert(t, issuer, r), issuer.cert}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(_ *Config, s *Services) { s.Remote = svc })
	e.now = clock
	issuer = e.ca
	ra := remote.Caller{Role: remote.RoleRAOfficer, Actor: "ra"}
	// The enrolment's national ID card check: the exchange's challenge, answered by a virtual card (its card
	// logic without pcscd here; TestCSCCardFactor goes through pcscd).
	ch, err := svc.BeginCardChallenge(context.Background(), ra, remote.PurposeEnrol, "")
	if err != nil {
		t.Fatal(err)
	}
	h := virtualcard.DefaultHolder
	h.NationalCode = testNatCode
	idCard, err := virtualcard.New(virtualcard.Config{Profile: virtualcard.ProfileNationalID, Holder: h, Issuer: cardIssuer,
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	cred, reg, err := svc.Enrol(context.Background(), ra, remote.EnrolRequest{NationalCode: testNatCode, CouncilNumber: testCouncil,
		Name: "Dr Test", Card: &remote.EnrolCard{ChallengeID: ch.ID, Answer: processAnswer(t, idCard, "123456", ch.Challenge)}})
	if err != nil {
		t.Fatal(err)
	}
	a := softauthn.New("https://localhost")
	opts, _ := json.Marshal(reg.Options)
	resp, err := a.Register(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.FinishPasskeyRegistration(context.Background(), ra, cred.ID, reg.ID, resp); err != nil {
		t.Fatal(err)
	}
	return &cscEnv{testEnv: e, svc: svc, st: st, cred: cred, auth: a, op: op, cardIssuer: cardIssuer}
}

// issueRemoteCert issues a physician-signing certificate with the remote-signing policy from the test CA.
func issueRemoteCert(t testing.TB, ca *testCA, r remote.IssueRequest) *x509.Certificate {
	t.Helper()
	ca.next++
	phys, _ := x509.OIDFromInts([]uint64{2, 999, 1742, 2, 3})
	rem, _ := x509.OIDFromInts([]uint64{2, 999, 1742, 6, 1})
	adm, err := hixext.Admission{Authority: "Iran Medical Council", Profession: "Physician", RegistrationNumber: r.CouncilNumber}.Extension()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.next),
		Subject:   pkix.Name{CommonName: r.Name, SerialNumber: hixext.NationalCodePrefix + r.NationalCode},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageContentCommitment, Policies: []x509.OID{phys, rem}, ExtraExtensions: []pkix.Extension{adm}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, r.CSR.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func (e *cscEnv) post(caller, path string, body any) (int, map[string]any) {
	e.t.Helper()
	r := e.doJSON(caller, "POST", path, body)
	var m map[string]any
	_ = json.Unmarshal(r.body, &m)
	return r.status, m
}

func b64hashes(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h)
	}
	return out
}

func docHashes(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		h := sha256.Sum256([]byte{byte(i), byte(time.Now().UnixNano())})
		out[i] = h[:]
	}
	return out
}

// authorize runs both steps of credentials/authorize and returns the SAD.
func (e *cscEnv) authorize(hashes [][]byte) string {
	e.t.Helper()
	phys := string(RolePhysician)
	st, m := e.post(phys, "/csc/v2/credentials/authorize", map[string]any{"credentialID": e.cred.ID, "numSignatures": len(hashes),
		"hashes": b64hashes(hashes), "hashAlgorithmOID": oidSHA256})
	if st != http.StatusAccepted {
		e.t.Fatalf("authorize step 1: %d %v", st, m)
	}
	opts, _ := json.Marshal(map[string]any{"publicKey": m["publicKey"]})
	asn, err := e.auth.Assert(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	st, m = e.post(phys, "/csc/v2/credentials/authorize", map[string]any{"credentialID": e.cred.ID, "numSignatures": len(hashes),
		"hashes": b64hashes(hashes), "authData": []map[string]string{{"id": "webauthn_handle", "value": m["handle"].(string)},
			{"id": "webauthn_assertion", "value": base64.RawURLEncoding.EncodeToString(asn)}}})
	if st != http.StatusOK {
		e.t.Fatalf("authorize step 2: %d %v", st, m)
	}
	return m["SAD"].(string)
}

// TestCSCFlow: info, credentials/list and info, the two-step authorize with a passkey, signHash; the
// signatures verify under the credential's certificate, which asserts the remote-signing policy.
func TestCSCFlow(t *testing.T) {
	e := newCSCEnv(t)
	phys := string(RolePhysician)
	st, m := e.post(callerNone, "/csc/v2/info", map[string]any{})
	if st != 200 || m["specs"] != "2.0.0.2" {
		t.Fatalf("info: %d %v", st, m)
	}
	st, m = e.post(phys, "/csc/v2/credentials/list", map[string]any{"credentialInfo": true, "certificates": "chain", "authInfo": true})
	if st != 200 || len(m["credentialIDs"].([]any)) != 1 || m["credentialIDs"].([]any)[0] != e.cred.ID {
		t.Fatalf("list: %d %v", st, m)
	}
	st, m = e.post(phys, "/csc/v2/credentials/info", map[string]any{"credentialID": e.cred.ID, "certificates": "single", "certInfo": true, "authInfo": true})
	if st != 200 || m["SCAL"] != "2" || m["key"].(map[string]any)["status"] != "enabled" || m["auth"].(map[string]any)["mode"] != "explicit" {
		t.Fatalf("info: %d %v", st, m)
	}
	der, _ := base64.StdEncoding.DecodeString(m["cert"].(map[string]any)["certificates"].([]any)[0].(string))
	cert, err := x509.ParseCertificate(der)
	if err != nil || !remote.HasRemotePolicy(cert) {
		t.Fatalf("certificate: %v, remote policy %v", err, err == nil && remote.HasRemotePolicy(cert))
	}
	hashes := docHashes(10)
	sad := e.authorize(hashes)
	st, m = e.post(phys, "/csc/v2/signatures/signHash", map[string]any{"credentialID": e.cred.ID, "SAD": sad,
		"hashes": b64hashes(hashes), "signAlgo": oidECDSAWithSHA256})
	if st != 200 {
		t.Fatalf("signHash: %d %v", st, m)
	}
	sigs := m["signatures"].([]any)
	for i, s := range sigs {
		sig, _ := base64.StdEncoding.DecodeString(s.(string))
		if !ecdsa.VerifyASN1(cert.PublicKey.(*ecdsa.PublicKey), hashes[i], sig) {
			t.Fatalf("signature %d does not verify", i)
		}
	}
	if len(sigs) != 10 {
		t.Fatalf("%d signatures", len(sigs))
	}
}

// TestCSCRefusals: the CSC error of each refused call, and that nothing was signed.
func TestCSCRefusals(t *testing.T) {
	e := newCSCEnv(t)
	phys := string(RolePhysician)
	hashes := docHashes(2)
	sad := e.authorize(hashes)
	sign := func(caller string, body map[string]any) (int, map[string]any) {
		base := map[string]any{"credentialID": e.cred.ID, "SAD": sad, "hashes": b64hashes(hashes), "signAlgo": oidECDSAWithSHA256}
		for k, v := range body {
			if v == nil {
				delete(base, k)
			} else {
				base[k] = v
			}
		}
		return e.post(caller, "/csc/v2/signatures/signHash", base)
	}
	cases := []struct {
		name   string
		caller string
		body   map[string]any
		status int
		code   string
		desc   string
	}{
		{"operator", string(RoleOperator), nil, 403, "", ""},
		{"admin token", callerAdmin, nil, 403, "", ""},
		{"ra officer", string(RoleRAOfficer), nil, 403, "", ""},
		{"no SAD", phys, map[string]any{"SAD": nil}, 400, "invalid_request", "Missing (or invalid type) string parameter SAD"},
		{"unknown SAD", phys, map[string]any{"SAD": "forged"}, 400, "invalid_request", "Invalid parameter SAD"},
		{"unknown credential", phys, map[string]any{"credentialID": "nope"}, 400, "invalid_request", "Invalid parameter credentialID"},
		{"other hash", phys, map[string]any{"hashes": b64hashes(docHashes(1))}, 400, "invalid_request", "Hash is not authorized by the SAD"},
		{"short hash", phys, map[string]any{"hashes": []string{"AAAA"}}, 400, "invalid_request", "Invalid digest value length"},
		{"bad base64", phys, map[string]any{"hashes": []string{"!!"}}, 400, "invalid_request", "Invalid Base64 hash string parameter"},
		{"RSA signAlgo", phys, map[string]any{"signAlgo": "1.2.840.113549.1.1.11"}, 400, "invalid_request", "Invalid parameter signAlgo"},
		{"empty hashes", phys, map[string]any{"hashes": []string{}}, 400, "invalid_request", "Empty hash array"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			var st int
			var m map[string]any
			e.rec.reset()
			st, m = sign(tc.caller, tc.body)
			if st != tc.status || (tc.code != "" && (m["error"] != tc.code || m["error_description"] != tc.desc)) {
				t.Fatalf("%d %v, want %d %s %q", st, m, tc.status, tc.code, tc.desc)
			}
			if st == 403 { // refused by role: the attempt is in the audit log
				e.rec.mu.Lock()
				evs := e.rec.events
				e.rec.mu.Unlock()
				if len(evs) != 1 || evs[0].Kind != "remote.refused" || !strings.Contains(string(evs[0].Data), "cscSignHash") {
					t.Fatalf("audit after a refused %s: %+v", tc.caller, evs)
				}
			}
		})
	}
	e.t = t
	// Still unsigned after all that: the SAD signs once, then never again.
	st, m := sign(phys, nil)
	if st != 200 {
		t.Fatalf("the SAD no longer signs its hashes: %d %v", st, m)
	}
	st, m = sign(phys, nil)
	if st != 400 || m["error_description"] != "Hash is not authorized by the SAD" {
		t.Fatalf("reused SAD: %d %v", st, m)
	}

	// An assertion over other hashes: invalid_authentication_data.
	st, m = e.post(phys, "/csc/v2/credentials/authorize", map[string]any{"credentialID": e.cred.ID, "numSignatures": 1,
		"hashes": b64hashes(docHashes(1))})
	if st != 202 {
		t.Fatalf("authorize: %d %v", st, m)
	}
	nonce, _ := hexDecodeString(m["handle"].(string))
	asn, _ := e.auth.AssertChallenge(base64.RawURLEncoding.EncodeToString(remote.Challenge(e.cred.ID, nonce, docHashes(1))))
	st, m = e.post(phys, "/csc/v2/credentials/authorize", map[string]any{"credentialID": e.cred.ID, "numSignatures": 1,
		"hashes": b64hashes(docHashes(1)), "authData": []map[string]string{{"id": "webauthn_handle", "value": m["handle"].(string)},
			{"id": "webauthn_assertion", "value": base64.RawURLEncoding.EncodeToString(asn)}}})
	if st != 400 || m["error"] != "invalid_authentication_data" {
		t.Fatalf("assertion over other hashes: %d %v", st, m)
	}
	// Too many hashes for the comfort limit.
	st, m = e.post(phys, "/csc/v2/credentials/authorize", map[string]any{"credentialID": e.cred.ID, "numSignatures": 11,
		"hashes": b64hashes(docHashes(11))})
	if st != 400 || m["error_description"] != "Numbers of signatures is too high" {
		t.Fatalf("too many: %d %v", st, m)
	}
	// A suspended credential: disabled.
	if err := e.svc.Suspend(context.Background(), remote.Caller{Role: remote.RoleRAOfficer}, e.cred.ID, "test"); err != nil {
		t.Fatal(err)
	}
	st, m = e.post(phys, "/csc/v2/credentials/authorize", map[string]any{"credentialID": e.cred.ID, "numSignatures": 1,
		"hashes": b64hashes(docHashes(1))})
	if st != 400 || m["error_description"] != "The credential identified by credentialID is disabled" {
		t.Fatalf("suspended: %d %v", st, m)
	}
	evs, _ := e.st.OutboxEvents(context.Background())
	refused, signed := 0, 0
	for _, ev := range evs {
		switch ev.Kind {
		case "remote.refused":
			refused++
		case "remote.signature":
			signed++
		}
	}
	if signed != 1 || refused < 5 {
		t.Fatalf("audit: %d signature events (want 1), %d refusals", signed, refused)
	}
	if strings.Contains(string(mustMarshal(evs)), sad) {
		t.Fatal("the audit log holds a SAD")
	}
}

func hexDecodeString(s string) ([]byte, error) {
	b := make([]byte, len(s)/2)
	_, err := hexDecode(b, []byte(s))
	return b, err
}

func mustMarshal(v any) []byte { b, _ := json.Marshal(v); return b }

// processAnswer has the virtual national ID card vc sign challenge with its own card logic (APDUs straight to
// Process: SELECT, VERIFY, INTERNAL AUTHENTICATE, docs/cards.md) and returns the answer as a client sends it.
func processAnswer(t testing.TB, vc *virtualcard.Card, pin string, challenge []byte) remote.CardAnswer {
	t.Helper()
	apdu := func(hdr []byte, data []byte) []byte {
		r := vc.Process(append(append(append([]byte(nil), hdr...), byte(len(data))), append(data, 0)...))
		if len(r) < 2 || r[len(r)-2] != 0x90 || r[len(r)-1] != 0 {
			t.Fatalf("card answered %X to %X", r, hdr)
		}
		return r[:len(r)-2]
	}
	apdu([]byte{0x00, 0xA4, 0x04, 0x00}, []byte{0xF0, 0x4D, 0x4F, 0x48, 0x52, 0x01, 0x01})
	p := []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}
	copy(p, pin)
	if r := vc.Process(append([]byte{0x00, 0x20, 0x00, 0x81, 0x08}, p...)); len(r) != 2 || r[0] != 0x90 {
		t.Fatalf("VERIFY: %X", r)
	}
	sig := apdu([]byte{0x00, 0x88, 0x00, 0x81}, challenge)
	return remote.CardAnswer{Certificate: vc.Certificate(0x81).Raw, Signature: sig}
}
