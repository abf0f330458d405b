package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/internal/testenv"
)

// The two vpcd readers of the test machine's pcscd.
var vpcdSlots = [2]struct{ addr, reader string }{{"127.0.0.1:35963", "Virtual PCD 00 00"}, {"127.0.0.1:35964", "Virtual PCD 00 01"}}

// insertVirtualCard puts vc into vpcd reader slot (0 or 1) of the real pcscd and waits until pcscd sees it.
// The returned function pulls it and waits until the reader is empty; it also runs when the test ends.
// The caller holds testenv.LockPCSCD.
func insertVirtualCard(t *testing.T, vc *virtualcard.Card, slot int) (remove func()) {
	t.Helper()
	ctx := context.Background()
	pc, err := cardreader.Establish(ctx)
	if err != nil {
		testenv.Missing(t, "pcscd: "+err.Error())
	}
	defer pc.Release()
	r := vpcdSlots[slot]
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pc.WaitForRemoval(wctx, r.reader); err != nil {
		if errors.Is(err, cardreader.ErrNoReader) {
			testenv.Missing(t, "vpcd reader "+r.reader)
		}
		t.Fatalf("reader %s not empty: %v", r.reader, err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { vc.ConnectVPCD(cctx, r.addr); close(done) }()
	removed := false
	remove = func() {
		if removed {
			return
		}
		removed = true
		stop()
		<-done
		if pc, err := cardreader.Establish(context.Background()); err == nil {
			rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			pc.WaitForRemoval(rctx, r.reader)
			cancel()
			pc.Release()
		}
	}
	t.Cleanup(remove)
	if err := pc.WaitForCard(wctx, r.reader); err != nil {
		t.Fatalf("card did not appear in %s: %v", r.reader, err)
	}
	return remove
}

func newVirtualCard(t *testing.T, cfg virtualcard.Config) *virtualcard.Card {
	t.Helper()
	vc, err := virtualcard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return vc
}

// raDesk sets up an exchange for card enrolment: a development CA, the physician of the virtual card's
// default holder in the council registry, a running `mohr serve` and an RA officer's credential in files.
// It returns the data dir, the work dir and the common flags of `card enrol`.
func raDesk(t *testing.T) (dd, work string, flags []string) {
	t.Helper()
	dd, work = t.TempDir(), t.TempDir()
	apiPort, pubPort := freePort(t), freePort(t)
	os.WriteFile(filepath.Join(dd, "mohr.yaml"), []byte(fmt.Sprintf("listen: 127.0.0.1:%d\npublic_listen: 127.0.0.1:%d\n", apiPort, pubPort)), 0o600)
	mustMohr(t, dd, "ca", "init", "--dev")
	phy := filepath.Join(work, "council.csv")
	os.WriteFile(phy, []byte("national_code,council_no,name,specialty,status,valid_from,valid_until\n"+
		"0499370899,123456,Dr Sara Ahmadi,General Practice,active,2020-01-01,2030-12-31\n"), 0o644)
	mustMohr(t, dd, "physician", "import", phy)
	srv := startServe(t, dd, apiPort)
	t.Cleanup(func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() })
	key := newP256(t)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(work, "ra.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	out := mustMohr(t, dd, "cert", "issue", "--profile", "operator", "--csr", writeCSR(t, work, "RA Desk", key), "--name", "RA Desk", "--role", "ra-officer")
	os.WriteFile(filepath.Join(work, "ra.pem"), []byte(out), 0o644)
	return dd, work, []string{"card", "enrol", "--server", fmt.Sprintf("https://127.0.0.1:%d", apiPort),
		"--ca-bundle", filepath.Join(dd, "ca", "root.pem"), "--ra-cert", filepath.Join(work, "ra.pem"),
		"--ra-key", "file:" + filepath.Join(work, "ra.key")}
}

// TestCardEnrol takes a new medical-council card (only its factory certificates) to a card holding this CA's
// physician-signing and physician-auth certificates through the real pcscd: the national ID card is checked
// (INTERNAL AUTHENTICATE against its issuer), the keys are generated on the card, issued over the API with an
// RA officer's credential and written back; `card show` labels them by use with the comfort counter, and
// `card sign` signs with the new key. Before that, each refusal is tried once and leaves the card as it was:
// no national ID card, a national ID card of someone else, an untrusted national ID card, a wrong PIN (tries
// left), a credential that is not the RA's.
func TestCardEnrol(t *testing.T) {
	// The national ID card's authentication key is "PIN always": the RA desk's check asks its PIN (the
	// virtual card's default).
	t.Setenv("MOHR_ID_CARD_PIN", "123456")
	testenv.LockPCSCD(t)
	dd, work, enrol := raDesk(t)
	council := newVirtualCard(t, virtualcard.Config{Profile: virtualcard.ProfileCouncil, ComfortSignatures: 250})
	insertVirtualCard(t, council, 0)
	issuerDir := filepath.Join(work, "id-issuer")
	os.WriteFile(filepath.Join(work, "pin.txt"), []byte("123456\n"), 0o600)
	os.WriteFile(filepath.Join(work, "bad-pin.txt"), []byte("999999\n"), 0o600)
	signCert := func() *x509.Certificate {
		t.Helper()
		pc, err := cardreader.Establish(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Release()
		card, err := pc.Connect(context.Background(), vpcdSlots[0].reader)
		if err != nil {
			t.Fatal(err)
		}
		defer card.Close()
		cc, err := cardreader.Council(context.Background(), card, cardreader.DefaultCouncilProfile())
		if err != nil {
			t.Fatal(err)
		}
		c, err := cc.Certificate(context.Background(), cardreader.SlotSign)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	factory := signCert()

	show := mustMohr(t, dd, "card", "show")
	if !strings.Contains(show, "factory certificate") || !strings.Contains(show, "250 signatures per PIN entry") {
		t.Fatalf("card show before enrolment:\n%s", show)
	}

	refused := func(name, want string, args ...string) {
		t.Helper()
		_, se, code := mohr(t, dd, append(append([]string{}, enrol...), args...)...)
		if code == 0 {
			t.Fatalf("%s: enrolment succeeded", name)
		}
		// Progress lines come first; the last line is the refusal.
		lines := strings.Split(strings.TrimSpace(se), "\n")
		if last := lines[len(lines)-1]; !strings.Contains(last, want) || goErrorChain.MatchString(se) || !strings.HasPrefix(last, "mohr: ") {
			t.Errorf("%s: message does not read as an instruction (want %q):\n%s", name, want, se)
		}
		if c := signCert(); !c.Equal(factory) {
			t.Fatalf("%s: the card's signing certificate changed", name)
		}
	}
	// No national ID card in any reader.
	otherIssuer := newVirtualCard(t, virtualcard.Config{Profile: virtualcard.ProfileNationalID})
	if _, err := otherIssuer.Issuer().WriteDir(filepath.Join(work, "other-issuer")); err != nil {
		t.Fatal(err)
	}
	idIssuers := filepath.Join(issuerDir, "card-issuer-ca.pem")
	otherIssuers := filepath.Join(work, "other-issuer", "card-issuer-ca.pem")
	refused("no national ID card", "no national ID card in any reader", "--id-issuers", otherIssuers, "--pin-file", filepath.Join(work, "pin.txt"))

	// A genuine national ID card of another person.
	someone := virtualcard.DefaultHolder
	someone.NationalCode = "0013542419"
	stranger := newVirtualCard(t, virtualcard.Config{Profile: virtualcard.ProfileNationalID, Holder: someone})
	stranger.Issuer().WriteDir(filepath.Join(work, "stranger-issuer"))
	pull := insertVirtualCard(t, stranger, 1)
	refused("someone else's national ID card", "belongs to national code 0499370899, the national ID card to 0013542419",
		"--id-issuers", filepath.Join(work, "stranger-issuer", "card-issuer-ca.pem"), "--pin-file", filepath.Join(work, "pin.txt"))
	pull()

	// The holder's own national ID card, but checked against another issuer: not genuine.
	id := newVirtualCard(t, virtualcard.Config{Profile: virtualcard.ProfileNationalID})
	if _, err := id.Issuer().WriteDir(issuerDir); err != nil {
		t.Fatal(err)
	}
	insertVirtualCard(t, id, 1)
	refused("untrusted national ID card", "failed its authenticity check", "--id-issuers", otherIssuers, "--pin-file", filepath.Join(work, "pin.txt"))
	refused("no id issuers", "--id-issuers", "--pin-file", filepath.Join(work, "pin.txt"))
	// A wrong PIN: the tries left, nothing changed.
	refused("wrong PIN", "wrong PIN: 2 tries left", "--id-issuers", idIssuers, "--pin-file", filepath.Join(work, "bad-pin.txt"))

	// The right PIN resets the counter; enrol both keys.
	out, se, code := mohr(t, dd, append(append([]string{}, enrol...), "--id-issuers", idIssuers, "--pin-file", filepath.Join(work, "pin.txt"),
		"--keys", "sign,auth", "--cert-out", filepath.Join(work, "issued.pem"))...)
	if code != 0 {
		t.Fatalf("card enrol: %s\n%s", out, se)
	}
	if !strings.Contains(se, "genuine") || !strings.Contains(out, "sign key: physician-signing certificate") || !strings.Contains(out, "auth key: physician-auth certificate") {
		t.Fatalf("card enrol output:\nstdout:\n%s\nstderr:\n%s", out, se)
	}
	issued, err := readCerts(filepath.Join(work, "issued.pem"))
	if err != nil || len(issued) != 2 {
		t.Fatalf("--cert-out: %v, %d certificates", err, len(issued))
	}
	if c := signCert(); !c.Equal(issued[0]) || c.KeyUsage != x509.KeyUsageContentCommitment {
		t.Fatalf("the card's signing certificate is not the issued physician-signing certificate")
	}
	inter, err := readCerts(filepath.Join(dd, "ca", "intermediate.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := issued[0].CheckSignatureFrom(inter[0]); err != nil {
		t.Fatalf("not issued by this CA: %v", err)
	}
	show = mustMohr(t, dd, "card", "show")
	if !strings.Contains(show, "sign key:        signing (non-repudiation), physician-signing policy") ||
		!strings.Contains(show, "auth key:        authentication, health CA") || strings.Contains(show, "factory") || strings.Contains(show, "problem") {
		t.Fatalf("card show after enrolment:\n%s", show)
	}

	// card sign signs with the enrolled key: the signature verifies with the issued certificate.
	doc := filepath.Join(work, "doc.txt")
	os.WriteFile(doc, []byte("prescription"), 0o644)
	sigOut := mustMohr(t, dd, "card", "sign", "--in", doc, "--pin-file", filepath.Join(work, "pin.txt"))
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sigOut))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("prescription"))
	if !ecdsa.VerifyASN1(issued[0].PublicKey.(*ecdsa.PublicKey), sum[:], sig) {
		t.Fatal("card sign: the signature does not verify with the enrolled certificate")
	}

	// A credential that is not the RA's (an auditor's): the exchange refuses; the command says what to do.
	akey := newP256(t)
	der, _ := x509.MarshalPKCS8PrivateKey(akey)
	os.WriteFile(filepath.Join(work, "aud.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(work, "aud.pem"), []byte(mustMohr(t, dd, "cert", "issue", "--profile", "operator", "--csr", writeCSR(t, work, "Auditor", akey), "--name", "Auditor", "--role", "auditor")), 0o644)
	args := append([]string{}, enrol...)
	args[len(args)-3], args[len(args)-1] = filepath.Join(work, "aud.pem"), "file:"+filepath.Join(work, "aud.key")
	_, se, code = mohr(t, dd, append(args, "--id-issuers", idIssuers, "--pin-file", filepath.Join(work, "pin.txt"))...)
	if code == 0 || !strings.Contains(se, "issuance refused") || !strings.Contains(se, "run mohr card enrol again") || goErrorChain.MatchString(se) {
		t.Fatalf("auditor credential: exit %d\n%s", code, se)
	}
	// That left a new signing key without a certificate: card sign says what to do, and show flags it.
	if _, se, code := mohr(t, dd, "card", "sign", "--in", doc, "--pin-file", filepath.Join(work, "pin.txt")); code == 0 || !strings.Contains(se, "has no certificate") || !strings.Contains(se, "mohr card enrol") {
		t.Fatalf("card sign with an uncertified key: exit %d\n%s", code, se)
	}
	if show := mustMohr(t, dd, "card", "show"); !strings.Contains(show, "no certificate in this slot") {
		t.Fatalf("card show with an uncertified key:\n%s", show)
	}
	// A wrong PIN at card sign: the tries left.
	if _, se, code := mohr(t, dd, "card", "sign", "--key", "auth", "--in", doc, "--pin-file", filepath.Join(work, "bad-pin.txt")); code == 0 || !strings.Contains(se, "wrong PIN: 2 tries left") {
		t.Fatalf("card sign with a wrong PIN: exit %d\n%s", code, se)
	}
	// Down to blocked: each enrolment attempt says so, and a blocked card is refused before anything is done.
	for _, want := range []string{"wrong PIN: 1 tries left", "PIN is blocked", "PIN is blocked: the card must be unblocked by its issuer (nothing on the card was changed)"} {
		_, se, code := mohr(t, dd, append(append([]string{}, enrol...), "--id-issuers", idIssuers, "--pin-file", filepath.Join(work, "bad-pin.txt"))...)
		if code == 0 || !strings.Contains(se, want) || goErrorChain.MatchString(se) {
			t.Fatalf("enrolment with a wrong PIN (want %q): exit %d\n%s", want, code, se)
		}
	}
}
