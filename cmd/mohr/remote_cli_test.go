package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/internal/softauthn"
	"github.com/mohr-hix/mohr/internal/testenv"
)

// remoteDesk is an exchange with remote signing on SoftHSM2 (`mohr serve` with a remote_signing section),
// the physician 0499370899 / 123456 in the council registry, and an RA officer's and an operator's
// credentials in files. It returns the data dir, the API's base URL, the RP origin, and the flags of the RA
// officer's and the operator's `mohr remote` calls.
func remoteDesk(t *testing.T) (dd, base, origin string, ra, op []string) {
	t.Helper()
	return remoteDeskCards(t, "")
}

// remoteDeskCards is remoteDesk whose exchange checks national ID cards against the issuers in the PEM file
// idIssuers (remote_signing.id_card_issuers), when given.
func remoteDeskCards(t *testing.T, idIssuers string) (dd, base, origin string, ra, op []string) {
	t.Helper()
	_, pin := testenv.SoftHSM(t, "MohrCLI")
	dd, work := t.TempDir(), t.TempDir()
	pinFile := filepath.Join(work, "remote.pin")
	os.WriteFile(pinFile, []byte(pin), 0o600)
	apiPort, pubPort := freePort(t), freePort(t)
	origin = fmt.Sprintf("https://localhost:%d", apiPort)
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\npublic_listen: 127.0.0.1:%d\nremote_signing:\n  key_token: \"pkcs11:token=MohrCLI?pin-source=file:%s\"\n"+
		"  rp_id: localhost\n  rp_origins: [%q]\n", apiPort, pubPort, pinFile, origin)
	if idIssuers != "" {
		cfg += fmt.Sprintf("  id_card_issuers: %q\n", idIssuers)
	}
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte(cfg), 0o600)
	mustMohr(t, dd, "ca", "init", "--dev")
	phy := filepath.Join(work, "council.csv")
	os.WriteFile(phy, []byte("national_code,council_no,name,specialty,status,valid_from,valid_until\n"+
		"0499370899,123456,Dr Sara Ahmadi,General Practice,active,2020-01-01,2099-12-31\n"+
		"0013542419,654321,Dr Reza Karimi,Surgery,active,2020-01-01,2099-12-31\n"), 0o644)
	mustMohr(t, dd, "physician", "import", phy)
	base = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	cred := func(name, role string) []string {
		key := newP256(t)
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		kf := filepath.Join(work, role+".key")
		os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		out := mustMohr(t, dd, "cert", "issue", "--profile", "operator", "--csr", writeCSR(t, work, name, key), "--name", name, "--role", role)
		cf := filepath.Join(work, role+".pem")
		os.WriteFile(cf, []byte(out), 0o644)
		return []string{"--server", base, "--ca-bundle", filepath.Join(dd, "ca", "root.pem"), "--ra-cert", cf, "--ra-key", "file:" + kf}
	}
	ra, op = cred("RA Desk", "ra-officer"), cred("Operator One", "operator")
	srv := startServe(t, dd, apiPort)
	t.Cleanup(func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() })
	return dd, base, origin, ra, op
}

var codeLine = regexp.MustCompile(`registration code: ([0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5})`)

// registerWithCode does what the registration page's script does, with a software authenticator: the
// options for the code, navigator.credentials.create, the finish call. (The page itself in Chromium is
// TestRegistrationPageChromium in package api.)
func registerWithCode(t *testing.T, c *http.Client, base, origin, code string) (*softauthn.Authenticator, map[string]any) {
	t.Helper()
	post := func(path string, body any) (int, map[string]any) {
		b, _ := json.Marshal(body)
		resp, err := c.Post(base+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	st, opts := post("/remote/register/options", map[string]string{"code": code})
	if st != 200 {
		t.Fatalf("registration options: %d %v", st, opts)
	}
	a := softauthn.New(origin)
	ob, _ := json.Marshal(map[string]any{"publicKey": opts["publicKey"]})
	resp, err := a.Register(ob)
	if err != nil {
		t.Fatal(err)
	}
	st, fin := post("/remote/register/finish", map[string]any{"code": code, "credential": json.RawMessage(resp)})
	if st != 200 {
		t.Fatalf("registration finish: %d %v", st, fin)
	}
	return a, fin
}

// TestRemoteEnrol: `mohr remote enrol` at the RA desk reads the physician's national ID card through the
// real pcscd (vpcd virtual cards), checks it with INTERNAL AUTHENTICATE as `mohr card enrol` does, and enrols
// over the mTLS API with the RA officer's credential; the physician registers a passkey with the code on
// the registration page's calls; then the lifecycle commands. Each refusal once: a card that fails the
// authenticity check, a genuine card whose national code the registry does not have for the council
// number, an operator's credential for enrolment and for re-keying.
func TestRemoteEnrol(t *testing.T) {
	// The national ID card's authentication key is "PIN always": the RA desk's check asks its PIN (the
	// virtual card's default).
	t.Setenv("MOHR_ID_CARD_PIN", "123456")
	testenv.LockPCSCD(t)
	work := t.TempDir()
	id := newVirtualCard(t, virtualcard.Config{Profile: virtualcard.ProfileNationalID})
	if _, err := id.Issuer().WriteDir(filepath.Join(work, "id-issuer")); err != nil {
		t.Fatal(err)
	}
	dd, base, origin, ra, op := remoteDeskCards(t, filepath.Join(work, "id-issuer", virtualcard.IssuerCertFile))
	enrol := func(creds []string, args ...string) (string, string, int) {
		return mohr(t, dd, append(append([]string{"remote"}, creds...), append([]string{"enrol"}, args...)...)...)
	}
	remoteCmd := func(creds []string, args ...string) (string, string, int) {
		return mohr(t, dd, append(append([]string{"remote"}, creds...), args...)...)
	}
	refused := func(name, want, out, se string, code int) {
		t.Helper()
		if code == 0 {
			t.Fatalf("%s: succeeded:\n%s", name, out)
		}
		lines := strings.Split(strings.TrimSpace(se), "\n")
		if last := lines[len(lines)-1]; !strings.Contains(last, want) || !strings.HasPrefix(last, "mohr: ") {
			t.Fatalf("%s: want %q in the last line:\n%s", name, want, se)
		}
	}
	noCredential := func(name string) {
		t.Helper()
		out, se, code := remoteCmd(ra, "list", "--council-no", "123456", "--json")
		if code != 0 || strings.Contains(out, `"id"`) {
			t.Fatalf("%s: a credential exists (code %d):\n%s%s", name, code, out, se)
		}
	}

	// The holder's own card, checked against another issuer: fails the authenticity check.
	other := newVirtualCard(t, virtualcard.Config{Profile: virtualcard.ProfileNationalID})
	other.Issuer().WriteDir(filepath.Join(work, "other-issuer"))
	issuers, otherIssuers := filepath.Join(work, "id-issuer", "card-issuer-ca.pem"), filepath.Join(work, "other-issuer", "card-issuer-ca.pem")
	pull := insertVirtualCard(t, id, 1)
	out, se, code := enrol(ra, "--id-issuers", otherIssuers, "--council-no", "123456")
	refused("untrusted national ID card", "failed its authenticity check", out, se, code)
	noCredential("untrusted card")
	pull()

	// A genuine card of someone else: the registry has 123456 for 0499370899, not for 0013542419.
	someone := virtualcard.DefaultHolder
	someone.NationalCode, someone.GivenName, someone.FamilyName = "0013542419", "رضا", "کریمی"
	stranger := newVirtualCard(t, virtualcard.Config{Profile: virtualcard.ProfileNationalID, Holder: someone, Issuer: id.Issuer()})
	pull = insertVirtualCard(t, stranger, 1)
	out, se, code = enrol(ra, "--id-issuers", issuers, "--council-no", "123456")
	refused("registry mismatch", "registry does not list this council number for this national code", out, se, code)
	if !strings.Contains(se, "national code 0013542419") {
		t.Errorf("the card check did not run before the registry refusal:\n%s", se)
	}
	noCredential("registry mismatch")
	pull()

	// A card this desk trusts (--id-issuers) but the exchange does not (remote_signing.id_card_issuers): the
	// exchange checks the card itself and refuses.
	pull = insertVirtualCard(t, other, 1)
	out, se, code = enrol(ra, "--id-issuers", otherIssuers, "--council-no", "123456")
	refused("card of an issuer the exchange does not trust", "national ID card's answer was refused", out, se, code)
	noCredential("untrusted at the exchange")
	pull()

	// The holder's card, but an operator's credential: the API refuses the role (the enrolment challenge).
	insertVirtualCard(t, id, 1)
	out, se, code = enrol(op, "--id-issuers", issuers, "--council-no", "123456")
	refused("operator enrols", "card challenge refused", out, se, code)
	noCredential("operator")

	// The RA officer enrols.
	out, se, code = enrol(ra, "--id-issuers", issuers, "--council-no", "123456")
	if code != 0 {
		t.Fatalf("enrol: %s%s", out, se)
	}
	m := codeLine.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "status:       pending") || !strings.Contains(out, "remote-signing policy 2.999.1742.6.1") ||
		!strings.Contains(out, base+"/remote/register") {
		t.Fatalf("enrol output:\n%s", out)
	}
	var list struct {
		Credentials []struct{ ID, Status, Name, NationalCode string }
	}
	out = mustMohr(t, dd, append(append([]string{"remote"}, ra...), "list", "--council-no", "123456", "--json")...)
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Credentials) != 1 || list.Credentials[0].NationalCode != "0499370899" ||
		list.Credentials[0].Name != "سارا احمدی" {
		t.Fatalf("list: %v\n%s", err, out)
	}
	credID := list.Credentials[0].ID

	// The physician registers a passkey with the code; the code is then used up.
	c := apiClient(t, dd)
	registerWithCode(t, c, base, origin, m[1])
	if resp, err := c.Post(base+"/remote/register/options", "application/json", strings.NewReader(`{"code":"`+m[1]+`"}`)); err != nil || resp.StatusCode != 403 {
		t.Fatalf("a used code: %v %v", resp.StatusCode, err)
	}
	show := func(creds []string) string {
		t.Helper()
		return mustMohr(t, dd, append(append([]string{"remote"}, creds...), "show", credID)...)
	}
	if s := show(op); !strings.Contains(s, "status:       active") {
		t.Fatalf("after registration:\n%s", s)
	}

	// The RA registers the physician's national ID card (still in the reader) as the alternative factor: the
	// exchange's challenge, signed by the card after its PIN, checked by the exchange. An operator may not.
	out, se, code = remoteCmd(op, "add-card", credID)
	refused("operator adds a card", "card challenge refused", out, se, code)
	t.Setenv("MOHR_ID_CARD_PIN", "999999")
	out, se, code = remoteCmd(ra, "add-card", credID)
	refused("wrong card PIN", "wrong PIN: 2 tries left", out, se, code)
	t.Setenv("MOHR_ID_CARD_PIN", "123456")
	out = mustMohr(t, dd, append(append([]string{"remote"}, ra...), "add-card", credID)...)
	if !strings.Contains(out, "national ID card registered") || !strings.Contains(out, "national code 0499370899") {
		t.Fatalf("add-card:\n%s", out)
	}
	if s := show(ra); !strings.Contains(s, "factor:       national ID card") || !strings.Contains(s, "factor:       passkey") {
		t.Fatalf("factors after add-card:\n%s", s)
	}

	// Lifecycle: the operator suspends and resumes; a lost authenticator is blocked; the RA hands out a new
	// code; the RA re-keys (an operator may not); the operator revokes for key compromise.
	for _, step := range []struct {
		creds []string
		args  []string
		want  string
	}{
		{op, []string{"suspend", credID, "--reason", "on leave"}, "status:       suspended (on leave)"},
		{op, []string{"resume", credID}, "status:       active"},
		{ra, []string{"block", credID, "--reason", "phone lost"}, "status:       blocked (phone lost)"},
	} {
		out := mustMohr(t, dd, append(append([]string{"remote"}, step.creds...), step.args...)...)
		if !strings.Contains(out, step.want) {
			t.Fatalf("%v: want %q:\n%s", step.args, step.want, out)
		}
	}
	out, se, code = remoteCmd(op, "registration-code", credID)
	refused("operator hands out a registration code", "registration code refused", out, se, code)
	out = mustMohr(t, dd, append(append([]string{"remote"}, ra...), "registration-code", credID)...)
	m = codeLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("registration-code:\n%s", out)
	}
	registerWithCode(t, c, base, origin, m[1])
	out, se, code = remoteCmd(op, "rekey", credID)
	refused("operator re-keys", "rekey refused", out, se, code)
	var nc struct{ ID, Status string }
	out = mustMohr(t, dd, append(append([]string{"remote"}, ra...), "rekey", credID, "--json")...)
	if err := json.Unmarshal([]byte(out), &nc); err != nil || nc.ID == credID || nc.Status != "active" {
		t.Fatalf("rekey: %v\n%s", err, out)
	}
	if s := show(ra); !strings.Contains(s, "status:       revoked") || !strings.Contains(s, "(destroyed)") {
		t.Fatalf("the old credential after re-key:\n%s", s)
	}
	out, se, code = remoteCmd(op, "revoke", nc.ID, "--reason", "certificateHold")
	refused("revoke with a hold", "--reason", out, se, code)
	out = mustMohr(t, dd, append(append([]string{"remote"}, op...), "revoke", nc.ID, "--reason", "keyCompromise")...)
	if !strings.Contains(out, "status:       revoked") || !strings.Contains(out, "(destroyed)") {
		t.Fatalf("revoke:\n%s", out)
	}
}
