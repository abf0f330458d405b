package offline

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/signing/pades"
)

const (
	vpcdAddr   = "127.0.0.1:35963"
	vpcdReader = "Virtual PCD 00 00"
	cardPIN    = "246813"
)

// councilCard puts a medical-council virtual card into vpcd reader 0 through the machine's pcscd and returns
// its signing key (PIN entered through a counted callback) and public key. The card allows comfort signatures,
// so one PIN verification covers the CAdES and the COSE signature of a prescription.
func councilCard(t *testing.T) (crypto.Signer, crypto.PublicKey, *atomic.Int32) {
	t.Helper()
	testenv.LockPCSCD(t)
	vc, err := virtualcard.New(virtualcard.Config{Profile: virtualcard.ProfileCouncil, PIN: []byte(cardPIN), MaxTries: 3, ComfortSignatures: 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pc, err := cardreader.Establish(ctx)
	if err != nil {
		testenv.Missing(t, "pcscd: "+err.Error())
	}
	t.Cleanup(func() { pc.Release() })
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
	if err := pc.WaitForCard(wctx, vpcdReader); err != nil {
		stop()
		t.Fatalf("card did not appear: %v", err)
	}
	card, err := pc.Connect(ctx, vpcdReader)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		card.Close()
		stop()
		<-done
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pc.WaitForRemoval(rctx, vpcdReader)
		cancel()
	})
	cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cc.PublicKey(ctx, cardreader.SlotSign)
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int32
	key, err := cc.KeyWithPolicy(ctx, cardreader.SlotSign, func(context.Context, string) ([]byte, error) {
		asked.Add(1)
		return []byte(cardPIN), nil
	}, cardreader.PINPolicyOnce)
	if err != nil {
		t.Fatal(err)
	}
	return key, pub, &asked
}

// TestCardPDFRoundTrip is the printed-prescription journey: sign on the virtual medical-council card through
// pcscd (CAdES and the QR payload, one PIN entry), render the Persian PDF with the QR code (signing/pades),
// rasterise the page with pdftoppm, find and decode the QR in the page image, and verify it offline: passes.
// The same page with a revoked physician in the bundle fails.
func TestCardPDFRoundTrip(t *testing.T) {
	f := newFixture(t)
	key, pub, asked := councilCard(t)
	// A physician-signing certificate for the card's key, from the fixture's intermediate.
	tmpl := *f.doc.Cert
	tmpl.ExtraExtensions = nil
	for _, e := range tmpl.Extensions {
		if e.Id.Equal(hixext.OIDAdmission) {
			tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, e)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, f.pki.Intermediate, pub, f.pki.InterKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	f.doc.Cert, f.doc.Chain = cert, []*x509.Certificate{cert, f.pki.Intermediate}

	content := f.prescription(t, 5)
	_, text := f.signed(t, content, key)
	if n := asked.Load(); n != 1 {
		t.Fatalf("PIN asked %d times for the CAdES and COSE signatures, want once", n)
	}
	q, err := NewQR(text)
	if err != nil {
		t.Fatal(err)
	}
	pdf, err := pades.RenderQR(content, cert, q.Modules)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pdfPath, pngPath := filepath.Join(dir, "rx.pdf"), filepath.Join(dir, "page")
	if err := os.WriteFile(pdfPath, pdf, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(testenv.Tool(t, "pdftoppm"), "-png", "-r", "200", "-singlefile", pdfPath, pngPath).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v\n%s", err, out)
	}
	page, err := os.ReadFile(pngPath + ".png")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadQRFile(page)
	if err != nil {
		t.Fatalf("QR not found on the rasterised page: %v", err)
	}
	if got != text {
		t.Fatal("the page's QR decodes to other text")
	}
	res := Verify(got, f.bundle(t, f.bundleInput(t0)), t0.Add(time.Hour))
	if !res.Report.Passed() {
		t.Fatalf("offline check of the printed page: %s", res.Report.Summary())
	}
	t.Logf("QR version %d, page %d bytes PNG at 150 dpi", q.Version, len(page))

	in := f.bundleInput(t0)
	in.Revoked = []Revoked{{Issuer: f.pki.Intermediate, Serial: cert.SerialNumber, RevokedAt: t0.Add(-time.Minute)}}
	if res := Verify(got, f.bundle(t, in), t0.Add(time.Hour)); res.Report.Passed() {
		t.Fatal("revoked physician passed")
	}
}
