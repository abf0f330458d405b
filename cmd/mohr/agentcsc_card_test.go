package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/signing/remote/cscclient"
)

// TestAgentCSCCardFactor: `mohr agent`'s wiring of a csc: key with factor=card: the key source has the card
// activator, the PIN is asked as for a card key (not the passkey's no-PIN), and the activator reads the
// national ID card in a vpcd reader of the real pcscd and has it sign a challenge after its PIN (the answer
// verifies under the card's certificate); a wrong PIN is the card's refusal, with no answer. An unknown
// factor is a configuration error. (The whole flow through the CSC API: TestEndToEndCard in cscclient.)
func TestAgentCSCCardFactor(t *testing.T) {
	c := &agentConfig{Key: "csc:credential=abc;factor=card", CSC: agentCSCConfig{URL: "https://127.0.0.1:1/csc/v2",
		ClientCert: "testdata/none.pem", ClientKey: "file:none"}}
	if !cscCardFactor(c.Key) || cscCardFactor("csc:credential=abc") {
		t.Fatal("cscCardFactor")
	}
	if _, err := agentCSCKey(&agentConfig{Key: "csc:credential=abc;factor=sms", CSC: c.CSC}); err == nil {
		t.Fatal("factor=sms accepted")
	}

	testenv.LockPCSCD(t)
	vc, err := virtualcard.New(virtualcard.Config{Profile: virtualcard.ProfileNationalID, PIN: []byte("2468")})
	if err != nil {
		t.Fatal(err)
	}
	insertVirtualCard(t, vc, 1)
	act := nationalIDCardActivator("")
	challenge := sha256.Sum256([]byte("activation challenge"))
	ctx := context.Background()
	_, sig, err := act(ctx, func(context.Context, string) ([]byte, error) { return []byte("1111"), nil }, challenge[:])
	var ae *cardreader.AuthError
	if !errors.As(err, &ae) || sig != nil || vc.TriesLeft() != 2 {
		t.Fatalf("wrong PIN: %v, answer %x, tries %d", err, sig, vc.TriesLeft())
	}
	var prompt string
	certDER, sig, err := act(ctx, func(_ context.Context, p string) ([]byte, error) { prompt = p; return []byte("2468"), nil }, challenge[:])
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil || len(sig) != 64 {
		t.Fatalf("answer: %v, %d bytes", err, len(sig))
	}
	h := sha256.Sum256(challenge[:])
	if !ecdsa.Verify(cert.PublicKey.(*ecdsa.PublicKey), h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Fatal("the card's answer does not verify")
	}
	if prompt == "" {
		t.Error("no PIN prompt text")
	}
	var _ cscclient.CardActivator = act
}
