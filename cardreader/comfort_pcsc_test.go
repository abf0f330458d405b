package cardreader_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/keys"
)

// TestComfortKeyThroughPCSC signs with PINPolicyOnce on a card in comfort-signature mode through pcscd:
// one PIN callback and one VERIFY APDU cover the card's counter, the next signature asks the callback
// again (and a callback that refuses ends it with no VERIFY sent), Logout and a card reset end the
// comfort state, and ComfortCounter follows the card.
func TestComfortKeyThroughPCSC(t *testing.T) {
	const n = 4
	vc := newVirtual(t, virtualcard.Config{Profile: virtualcard.ProfileCouncil, PIN: []byte("4321"), ComfortSignatures: n})
	_, card, _ := insert(t, vc)
	ctx := context.Background()
	cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
	if err != nil {
		t.Fatal(err)
	}
	if left, per, err := cc.ComfortCounter(ctx); err != nil || left != 0 || per != n {
		t.Fatalf("ComfortCounter = %d, %d, %v; want 0, %d", left, per, err, n)
	}
	var calls int
	refuse := false
	pin := func(ctx context.Context, p string) ([]byte, error) {
		calls++
		if refuse {
			return nil, errors.New("no PIN replay")
		}
		return []byte("4321"), nil
	}
	signer, err := cc.KeyWithPolicy(ctx, cardreader.SlotSign, pin, cardreader.PINPolicyOnce)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(i int) error {
		d := sha256.Sum256([]byte(fmt.Sprintf("prescription %d", i)))
		_, err := signer.Sign(nil, d[:], crypto.SHA256)
		return err
	}
	vc.ResetStats()
	for i := 0; i < n; i++ {
		if err := sign(i); err != nil {
			t.Fatalf("signature %d: %v", i, err)
		}
	}
	if got := vc.Stats()[0x20].Count; got != 1 || calls != 1 {
		t.Fatalf("%d signatures: %d VERIFY APDUs and %d PIN callbacks, want 1 and 1", n, got, calls)
	}
	if left, _, err := cc.ComfortCounter(ctx); err != nil || left != 0 {
		t.Fatalf("ComfortCounter after %d signatures = %d, %v", n, left, err)
	}

	// The counter ran out: PINPolicyOnce asks the callback once; a callback that refuses ends the signature
	// with no VERIFY on the wire and no retry.
	refuse = true
	vc.ResetStats()
	if err := sign(n); err == nil || calls != 2 {
		t.Fatalf("signature after the counter ran out: %v (callback calls %d)", err, calls)
	}
	if got := vc.Stats()[0x20].Count; got != 0 {
		t.Fatalf("%d VERIFY APDUs after a refused callback", got)
	}

	// Logout ends the comfort state.
	refuse = false
	if err := sign(n + 1); err != nil {
		t.Fatal(err)
	}
	if left, _, _ := cc.ComfortCounter(ctx); left != n-1 {
		t.Fatalf("ComfortCounter after a new VERIFY and one signature = %d, want %d", left, n-1)
	}
	if err := cc.Logout(ctx); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if vc.ComfortLeft() != 0 {
		t.Fatalf("ComfortLeft after Logout = %d", vc.ComfortLeft())
	}
	refuse = true
	if err := sign(n + 2); err == nil {
		t.Fatal("signature after Logout succeeded without a PIN")
	}

	// A card reset ends it too.
	refuse = false
	if err := sign(n + 3); err != nil {
		t.Fatal(err)
	}
	vc.Reset()
	refuse = true
	if err := sign(n + 4); err == nil {
		t.Fatal("signature after a card reset succeeded without a PIN")
	}

	// A wrong PIN is reported with the tries left and not retried.
	calls = 0
	wrong, err := cc.KeyWithPolicy(ctx, cardreader.SlotSign, pinFunc("0000", &calls), cardreader.PINPolicyOnce)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("wrong"))
	var ae *cardreader.AuthError
	if _, err := wrong.Sign(nil, d[:], crypto.SHA256); !errors.As(err, &ae) || ae.Retries != 2 || !errors.Is(err, keys.ErrPINIncorrect) || calls != 1 {
		t.Fatalf("wrong PIN: %v (callback calls %d), want AuthError{2} after one call", err, calls)
	}
}

// TestComfortCounterAbsent checks that a "PIN always" card reports no comfort counter.
func TestComfortCounterAbsent(t *testing.T) {
	vc := newVirtual(t, virtualcard.Config{Profile: virtualcard.ProfileCouncil})
	_, card, _ := insert(t, vc)
	ctx := context.Background()
	cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cc.ComfortCounter(ctx); !errors.Is(err, cardreader.ErrNotFound) {
		t.Fatalf("ComfortCounter on a PIN-always card: %v, want ErrNotFound", err)
	}
}

// TestNoSecondClientAfterMohrSigns: after Mohr's on-card signature (PIN-always: VERIFY, PSO) the card's security
// state is reset inside Mohr's transaction, so a second PC/SC client on the workstation that connects to the
// same card and sends SELECT, MSE:SET and PSO: COMPUTE DIGITAL SIGNATURE gets 6982 (security status not
// satisfied) and cannot sign with the PIN presented for Mohr, even on a card whose comfort counter would have
// allowed more signatures after that VERIFY. The same holds after a key generation and a certificate write.
func TestNoSecondClientAfterMohrSigns(t *testing.T) {
	vc := newVirtual(t, virtualcard.Config{Profile: virtualcard.ProfileCouncil, PIN: []byte("4321"), ComfortSignatures: 10})
	_, card, _ := insert(t, vc)
	ctx := context.Background()
	cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := cc.SigningKey(ctx, func(context.Context, string) ([]byte, error) { return []byte("4321"), nil })
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("prescription"))
	if _, err := signer.Sign(nil, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}

	// The second client: its own PC/SC context and connection to the same reader.
	pc2, err := cardreader.Establish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pc2.Release()
	card2, err := pc2.Connect(ctx, card.Reader())
	if err != nil {
		t.Fatal(err)
	}
	defer card2.Close()
	cc2, err := cardreader.Council(ctx, card2, cardreader.DefaultCouncilProfile())
	if err != nil {
		t.Fatal(err)
	}
	asked := false
	noPIN := errors.New("the second client has no PIN")
	// PINPolicyOnce sends SELECT, MSE:SET and PSO, and asks for a PIN only when the card answers 6982.
	rogue, err := cc2.KeyWithPolicy(ctx, cardreader.SlotSign, func(context.Context, string) ([]byte, error) {
		asked = true
		return nil, noPIN
	}, cardreader.PINPolicyOnce)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rogue.Sign(nil, d[:], crypto.SHA256); !errors.Is(err, noPIN) || !asked {
		t.Fatalf("second client signed after Mohr's signature: err %v, card answered 6982: %v", err, asked)
	}
	if left, _, err := cc2.ComfortCounter(ctx); err != nil || left != 0 {
		t.Fatalf("comfort counter after Mohr's signature: %d, %v", left, err)
	}
}
