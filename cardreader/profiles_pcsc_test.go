package cardreader_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"github.com/mohr-hix/mohr/internal/testenv"
	"math/big"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/keys"
)

// pinFunc returns a PIN callback that hands out pin and counts its calls.
func pinFunc(pin string, calls *int) keys.PINFunc {
	return func(context.Context, string) ([]byte, error) {
		if calls != nil {
			*calls++
		}
		return []byte(pin), nil
	}
}

func TestCouncilCardThroughPCSC(t *testing.T) {
	for _, ext := range []bool{false, true} {
		t.Run(fmt.Sprintf("extended=%v", ext), func(t *testing.T) {
			vc := newVirtual(t, virtualcard.Config{Profile: virtualcard.ProfileCouncil, Extended: ext, PIN: []byte("4321")})
			_, card, _ := insert(t, vc)
			ctx := context.Background()
			cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
			if err != nil {
				t.Fatal(err)
			}
			h, err := cc.ReadHolder(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := virtualcard.DefaultHolder
			if h.NationalCode != want.NationalCode || h.CouncilNumber != want.CouncilNumber || h.FamilyName != want.FamilyName || h.BirthDate != "1985-03-21" || h.Specialty != want.Specialty {
				t.Errorf("holder = %+v", h)
			}
			certs, err := cc.Certificates(ctx)
			if err != nil || len(certs) != 2 {
				t.Fatalf("certificates: %v (%d)", err, len(certs))
			}
			if certs[0].KeyUsage != x509.KeyUsageContentCommitment {
				t.Errorf("signing certificate key usage %v", certs[0].KeyUsage)
			}
			if n, err := cc.PINRetries(ctx); err != nil || n != 3 {
				t.Errorf("PINRetries = %d, %v", n, err)
			}
			if err := cc.VerifyPIN(ctx, []byte("4321")); err != nil {
				t.Fatalf("VerifyPIN: %v", err)
			}

			var calls int
			signer, err := cc.SigningKey(ctx, pinFunc("4321", &calls))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				d := sha256.Sum256([]byte(fmt.Sprintf("prescription %d", i)))
				sig, err := signer.Sign(nil, d[:], crypto.SHA256)
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				if !ecdsa.VerifyASN1(certs[0].PublicKey.(*ecdsa.PublicKey), d[:], sig) {
					t.Fatal("signature does not verify with the card's certificate")
				}
			}
			if calls != 3 {
				t.Errorf("PIN asked %d times for 3 signatures, want 3 (PIN always)", calls)
			}

			// Enrolment: a new key on the card, certified, written back, then used.
			pub, err := cc.GenerateKey(ctx, cardreader.SlotSign, pinFunc("4321", nil))
			if err != nil {
				t.Fatalf("GenerateKey: %v", err)
			}
			if _, err := cc.SigningKey(ctx, pinFunc("4321", nil)); !errors.Is(err, cardreader.ErrNotFound) {
				t.Errorf("SigningKey with no certificate: %v, want ErrNotFound", err)
			}
			if err := cc.WriteCertificate(ctx, cardreader.SlotSign, pinFunc("4321", nil), certs[0]); !errors.Is(err, keys.ErrKeyMismatch) {
				t.Errorf("writing the old certificate: %v, want ErrKeyMismatch", err)
			}
			// The new key signs its own certificate request before it has a certificate (UncertifiedKey).
			proof, err := cc.UncertifiedKey(ctx, cardreader.SlotSign, pinFunc("4321", nil))
			if err != nil {
				t.Fatalf("UncertifiedKey: %v", err)
			}
			csr, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "csr"}}, proof)
			if err != nil {
				t.Fatalf("CSR signed on the card: %v", err)
			}
			if req, err := x509.ParseCertificateRequest(csr); err != nil || req.CheckSignature() != nil || !req.PublicKey.(*ecdsa.PublicKey).Equal(pub) {
				t.Fatalf("the card's CSR does not verify with the new key: %v", err)
			}
			iss := vc.Issuer()
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "re-enrolled", SerialNumber: "IDCIR-0499370899"},
				NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageContentCommitment}
			der, err := x509.CreateCertificate(nil, tmpl, iss.Cert, pub, iss.Key)
			if err != nil {
				t.Fatal(err)
			}
			newCert, _ := x509.ParseCertificate(der)
			if err := cc.WriteCertificate(ctx, cardreader.SlotSign, pinFunc("4321", nil), newCert); err != nil {
				t.Fatalf("WriteCertificate: %v", err)
			}
			signer, err = cc.SigningKey(ctx, pinFunc("4321", nil))
			if err != nil {
				t.Fatal(err)
			}
			d := sha256.Sum256([]byte("after enrolment"))
			sig, err := signer.Sign(nil, d[:], crypto.SHA256)
			if err != nil || !ecdsa.VerifyASN1(pub, d[:], sig) {
				t.Fatalf("sign with the new key: %v", err)
			}
		})
	}
}

func TestPINDownToBlocked(t *testing.T) {
	vc := newVirtual(t, virtualcard.Config{Profile: virtualcard.ProfileCouncil, MaxTries: 3})
	_, card, _ := insert(t, vc)
	ctx := context.Background()
	cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
	if err != nil {
		t.Fatal(err)
	}
	if err := cc.VerifyPIN(ctx, []byte("12")); !errors.Is(err, cardreader.ErrPINFormat) {
		t.Fatalf("short PIN: %v", err)
	}
	for want := 2; want >= 1; want-- {
		err := cc.VerifyPIN(ctx, []byte("000000"))
		var ae *cardreader.AuthError
		if !errors.As(err, &ae) || ae.Retries != want || !errors.Is(err, keys.ErrPINIncorrect) {
			t.Fatalf("wrong PIN: %v, want AuthError{%d}", err, want)
		}
		if strings.Contains(err.Error(), "000000") {
			t.Fatal("PIN in error message")
		}
	}
	err = cc.VerifyPIN(ctx, []byte("000000"))
	if !errors.Is(err, cardreader.ErrPINBlocked) || !errors.Is(err, keys.ErrPINBlocked) {
		t.Fatalf("third wrong PIN: %v, want ErrPINBlocked", err)
	}
	if err := cc.VerifyPIN(ctx, []byte("123456")); !errors.Is(err, keys.ErrPINBlocked) {
		t.Fatalf("right PIN on a blocked card: %v", err)
	}
	signer, err := cc.SigningKey(ctx, pinFunc("123456", nil))
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	if _, err := signer.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, keys.ErrPINBlocked) {
		t.Fatalf("Sign on a blocked card: %v", err)
	}
	if n, err := cc.PINRetries(ctx); err != nil || n != 0 {
		t.Fatalf("PINRetries = %d, %v", n, err)
	}
}

func TestCardRemovedMidSignature(t *testing.T) {
	vc := newVirtual(t, virtualcard.Config{Profile: virtualcard.ProfileCouncil})
	_, card, done := insert(t, vc)
	ctx := context.Background()
	cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := cc.SigningKey(ctx, pinFunc("123456", nil))
	if err != nil {
		t.Fatal(err)
	}
	vc.RemoveOn(0x2A) // pull the card when PSO: COMPUTE DIGITAL SIGNATURE arrives
	d := sha256.Sum256([]byte("x"))
	start := time.Now()
	_, err = signer.Sign(nil, d[:], crypto.SHA256)
	if !errors.Is(err, cardreader.ErrCardRemoved) {
		t.Fatalf("Sign with the card pulled: %v, want ErrCardRemoved", err)
	}
	t.Logf("removal reported after %v: %v", time.Since(start), err)
	if err := <-done; !errors.Is(err, virtualcard.ErrRemoved) {
		t.Fatalf("ConnectVPCD: %v", err)
	}
	if _, err := signer.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, cardreader.ErrCardRemoved) {
		t.Fatalf("Sign after removal: %v, want ErrCardRemoved", err)
	}
}

func TestNationalIDThroughPCSC(t *testing.T) {
	iss, err := virtualcard.NewIssuer(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	vc := newVirtual(t, virtualcard.Config{Profile: virtualcard.ProfileNationalID, Issuer: iss})
	_, card, _ := insert(t, vc)
	ctx := context.Background()
	if p, err := cardreader.Detect(ctx, card); err != nil || p != cardreader.ProfileNationalID {
		t.Fatalf("Detect = %q, %v", p, err)
	}
	nid, err := cardreader.NationalID(ctx, card, cardreader.DefaultNationalIDProfile())
	if err != nil {
		t.Fatal(err)
	}
	h, err := nid.ReadHolder(ctx)
	if err != nil || h.NationalCode != "0499370899" || h.CardNumber == "" || h.BirthDate != "1985-03-21" {
		t.Fatalf("ReadHolder = %+v, %v", h, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(iss.Cert)
	// The authentication key is "PIN always": without VERIFY the card refuses, a wrong PIN signs nothing.
	if _, err := card.Transmit(ctx, cardreader.Command{INS: 0x88, P2: 0x81, Data: make([]byte, 32), Ne: 256}); !errors.Is(err, cardreader.ErrSecurityStatus) {
		t.Fatalf("INTERNAL AUTHENTICATE without the PIN: %v, want ErrSecurityStatus", err)
	}
	var ae *cardreader.AuthError
	if _, err := nid.Authenticate(ctx, pool, pinFunc("999999", nil)); !errors.As(err, &ae) || ae.Retries != 2 {
		t.Fatalf("Authenticate with a wrong PIN: %v", err)
	}
	calls := 0
	cert, err := nid.Authenticate(ctx, pool, pinFunc("123456", &calls))
	if err != nil || calls != 1 {
		t.Fatalf("Authenticate: %v", err)
	}
	if cert.Subject.SerialNumber != "IDCIR-0499370899" {
		t.Errorf("certificate subject %v", cert.Subject)
	}
	other, _ := virtualcard.NewIssuer(nil, time.Now())
	pool2 := x509.NewCertPool()
	pool2.AddCert(other.Cert)
	if _, err := card.Transmit(ctx, cardreader.Command{INS: 0x88, P2: 0x81, Data: make([]byte, 32), Ne: 256}); !errors.Is(err, cardreader.ErrSecurityStatus) {
		t.Fatalf("INTERNAL AUTHENTICATE after an answered one: %v, want ErrSecurityStatus (PIN always)", err)
	}
	if _, err := nid.Authenticate(ctx, pool2, pinFunc("123456", nil)); !errors.Is(err, cardreader.ErrNotGenuine) {
		t.Fatalf("Authenticate against another issuer: %v, want ErrNotGenuine", err)
	}
	if _, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile()); !errors.Is(err, cardreader.ErrNotFound) || !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("council application on a national ID card: %v", err)
	}
}

func TestPIVThroughPCSC(t *testing.T) {
	vc := newVirtual(t, virtualcard.Config{Profile: virtualcard.ProfilePIV})
	_, card, _ := insert(t, vc)
	ctx := context.Background()
	p, err := cardreader.PIV(ctx, card)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := p.Certificates(ctx)
	if err != nil || len(certs) != 2 {
		t.Fatalf("Certificates: %d, %v", len(certs), err)
	}
	h, err := p.ReadHolder(ctx)
	if err != nil || len(h.CardNumber) != 32 || h.NationalCode != "0499370899" {
		t.Fatalf("ReadHolder = %+v, %v", h, err)
	}
	if err := p.VerifyPIN(ctx, []byte("654321")); !errors.Is(err, keys.ErrPINIncorrect) {
		t.Fatalf("wrong PIN: %v", err)
	}
	signer, err := p.SigningKey(ctx, pinFunc("123456", nil))
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("piv"))
	sig, err := signer.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(vc.Certificate(0x9C).PublicKey.(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("PIV signature does not verify")
	}
}

func TestOpenerCardURI(t *testing.T) {
	vc := newVirtual(t, virtualcard.Config{Profile: virtualcard.ProfileCouncil})
	insert(t, vc)
	ctx := context.Background()
	r := keys.NewResolver()
	r.Register("card", &cardreader.Opener{PIN: pinFunc("123456", nil)})
	uri := "card:reader=Virtual%20PCD%2000%2000;profile=medical-council;key=sign"
	s, err := r.Signer(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	defer cardreader.CloseKey(s)
	if err := keys.MatchesCertificate(s, vc.Certificate(0x82)); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("uri"))
	if _, err := s.Sign(nil, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if _, err := cardreader.SignContext(ctx, s, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := cardreader.SignContext(cctx, s, d[:], crypto.SHA256); !errors.Is(err, context.Canceled) {
		t.Fatalf("SignContext with a cancelled context: %v", err)
	}
	if _, err := s.Sign(nil, d[:4], crypto.SHA256); err == nil {
		t.Fatal("short digest accepted")
	}
	if _, err := r.Signer(ctx, "card:reader=Nope;profile=medical-council;key=sign"); !errors.Is(err, cardreader.ErrNoReader) {
		t.Fatalf("unknown reader: %v", err)
	}
}

func TestWaitForCardCancel(t *testing.T) {
	vc := newVirtual(t, virtualcard.Config{Profile: virtualcard.ProfilePIV})
	pc, _, _ := insert(t, vc)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := pc.WaitForRemoval(ctx, vpcdReader); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForRemoval: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancellation took %v", d)
	}
	readers, err := pc.ListReaders(context.Background())
	if err != nil || len(readers) == 0 {
		t.Fatalf("ListReaders = %v, %v", readers, err)
	}
}

// TestOutsideTools checks the virtual card with tools that are not Mohr: pcsc_scan and opensc-tool.
func TestOutsideTools(t *testing.T) {
	for _, tool := range []string{"pcsc_scan", "opensc-tool"} {
		testenv.Tool(t, tool)
	}
	vc := newVirtual(t, virtualcard.Config{Profile: virtualcard.ProfileCouncil})
	_, card, _ := insert(t, vc)
	card.Close()
	atr := fmt.Sprintf("% X", vc.ATR())

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "pcsc_scan", "-r").CombinedOutput()
	if !strings.Contains(string(out), vpcdReader) {
		t.Errorf("pcsc_scan -r does not list %q:\n%s", vpcdReader, out)
	}
	out, err := exec.CommandContext(ctx, "opensc-tool", "-l").CombinedOutput()
	if err != nil || !strings.Contains(string(out), vpcdReader) || !strings.Contains(string(out), "Yes") {
		t.Errorf("opensc-tool -l: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, "opensc-tool", "-r", vpcdReader, "-a").CombinedOutput()
	if err != nil || !strings.Contains(strings.ToUpper(string(out)), strings.ReplaceAll(atr, " ", ":")) {
		t.Errorf("opensc-tool -a: %v\n%s (want %s)", err, out, atr)
	}
	// SELECT of the council AID, of the holder EF, READ BINARY of its first bytes, and a SELECT of an
	// unknown AID: the documented answers (docs/cards.md).
	out, err = exec.CommandContext(ctx, "opensc-tool", "-r", vpcdReader,
		"-s", "00 A4 04 00 07 F0 4D 4F 48 52 02 01 00",
		"-s", "00 A4 02 0C 02 01 01",
		"-s", "00 B0 00 00 04",
		"-s", "00 A4 04 00 05 A0 00 00 00 99 00").CombinedOutput()
	s := string(out)
	if err != nil || strings.Count(s, "SW1=0x90, SW2=0x00") != 3 || !strings.Contains(s, "SW1=0x6A, SW2=0x82") {
		t.Errorf("opensc-tool -s: %v\n%s", err, s)
	}
	if !strings.Contains(s, "65 ") {
		t.Errorf("READ BINARY did not return the holder template:\n%s", s)
	}
	t.Logf("opensc-tool:\n%s", s)
}
