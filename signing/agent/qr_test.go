package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/offline"
)

// TestCardSignsQR (issue 17 through the agent): with "qr": true each prescription comes back with its offline
// QR text (RX1:...), signed on the virtual card (through pcscd) in the same comfort session as the CAdES
// signature, and verifying offline against a trust bundle with TOTAL_PASSED and bound to that CAdES signature.
// The comfort session counts both card signatures: a session of 5 takes two prescriptions with QR (4), refuses
// a batch of two more (4 needed, 1 left) with limit_reached, signs one without QR, and then is used up.
func TestCardSignsQR(t *testing.T) {
	e, vc := cardEnv(t, nil)
	e.startSession(5, time.Hour)
	before := vc.Stats()[0x2A].Count
	seal, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := e.clock.Now()
	signed, err := offline.MakeBundle(context.Background(), offline.BundleInput{Issued: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour),
		Roots: []*x509.Certificate{e.pki.Root}, Intermediates: []*x509.Certificate{e.pki.Intermediate}}, seal)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := offline.OpenBundle(signed, seal.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		code, l, p := e.sign(e.rx(), map[string]any{"requireSession": true, "qr": true})
		if code != 200 || l.Status != "submitted" || l.Indication != "TOTAL_PASSED" || !strings.HasPrefix(l.QR, "RX1:") || l.QRError != nil {
			t.Fatalf("sign %d with qr: %d %+v %+v", i, code, p, l)
		}
		res := offline.Verify(l.QR, bundle, now)
		if res.Report.Indication != signing.TotalPassed {
			t.Fatalf("offline verification of the agent's QR: %+v", res.Report)
		}
		if err := offline.MatchesCAdES(res.Payload, l.Signature); err != nil {
			t.Fatalf("the QR does not name the CAdES signature it came with: %v", err)
		}
	}
	if n := vc.Stats()[0x2A].Count - before; n != 4 {
		t.Fatalf("the card computed %d signatures for two prescriptions with QR, want 4", n)
	}
	resp, body := e.call("GET", "/v1/session", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"used":4`) || !strings.Contains(string(body), `"remaining":1`) {
		t.Fatalf("session after two prescriptions with QR: %s", body)
	}
	if code, _, _, p := e.batch([][]byte{e.rx(), e.rx()}, map[string]any{"requireSession": true, "qr": true}, nil); code != http.StatusConflict || p.Code != "limit_reached" {
		t.Fatalf("batch of 2 with qr and 1 signature left: %d %+v", code, p)
	}
	code, l, p := e.sign(e.rx(), map[string]any{"requireSession": true})
	if code != 200 || l.QR != "" || l.Status != "submitted" {
		t.Fatalf("sign without qr: %d %+v %+v", code, p, l)
	}
	if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true, "qr": true}); code != http.StatusConflict || p.Code != "limit_reached" {
		t.Fatalf("after the session is used up: %d %+v", code, p)
	}
}
