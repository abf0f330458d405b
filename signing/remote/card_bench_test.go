package remote_test

import (
	"context"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/internal/softauthn"
	"github.com/mohr-hix/mohr/signing/remote"
)

// processAnswer has the virtual national ID card vc sign challenge with its own card logic (APDUs straight to
// Process: SELECT, VERIFY, INTERNAL AUTHENTICATE; docs/cards.md), without pcscd: for the benchmark, where the
// card's answer (the person's part) is not timed. The tests go through pcscd.
func processAnswer(tb testing.TB, vc *virtualcard.Card, pin string, challenge []byte) remote.CardAnswer {
	tb.Helper()
	ok := func(r []byte) []byte {
		if len(r) < 2 || r[len(r)-2] != 0x90 || r[len(r)-1] != 0 {
			tb.Fatalf("card answered %X", r)
		}
		return r[:len(r)-2]
	}
	ok(vc.Process([]byte{0x00, 0xA4, 0x04, 0x00, 0x07, 0xF0, 0x4D, 0x4F, 0x48, 0x52, 0x01, 0x01, 0x00}))
	p := []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}
	copy(p, pin)
	ok(vc.Process(append([]byte{0x00, 0x20, 0x00, 0x81, 0x08}, p...)))
	sig := ok(vc.Process(append(append([]byte{0x00, 0x88, 0x00, 0x81, byte(len(challenge))}, challenge...), 0x00)))
	return remote.CardAnswer{Certificate: vc.Certificate(0x81).Raw, Signature: sig}
}

// BenchmarkCardFactor measures hash in to signature out with each activation factor, in the same run on the
// same credential (SQLite): BeginActivation + Activate (passkey assertion checked) or ActivateWithCard (card
// certificate re-checked: validity, chain, national code; the card's signature verified) + SignHash. The
// factor's own answer (the authenticator's assertion, the card's INTERNAL AUTHENTICATE) is not timed.
//
//	go test -run '^$' -bench CardFactor -benchtime 200x -count 3 ./signing/remote/
func BenchmarkCardFactor(b *testing.B) {
	f := newFixture(b, "sqlite")
	f.withCards()
	ctx := context.Background()
	vc, err := virtualcard.New(virtualcard.Config{Profile: virtualcard.ProfileNationalID, Holder: virtualcard.Holder{NationalCode: drA.national,
		GivenName: "Sara", FamilyName: "Ahmadi", CardNumber: "IR-1"}, Issuer: f.cardIssuer, Now: f.clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	ch, err := f.svc.BeginCardChallenge(ctx, f.ra, remote.PurposeEnrol, "")
	if err != nil {
		b.Fatal(err)
	}
	cred, reg, err := f.svc.Enrol(ctx, f.ra, remote.EnrolRequest{NationalCode: drA.national, CouncilNumber: drA.council, Name: drA.name,
		Card: &remote.EnrolCard{ChallengeID: ch.ID, Answer: processAnswer(b, vc, "123456", ch.Challenge), Register: true}})
	if err != nil {
		b.Fatal(err)
	}
	a := softauthn.New(origin)
	f.register(cred.ID, reg, a)
	for _, factor := range []string{"passkey", "card"} {
		b.Run(factor+"/hashes=10", func(b *testing.B) {
			var lat []time.Duration
			for i := 0; i < b.N; i++ {
				hashes := randomHashes(10)
				t0 := time.Now()
				req, err := f.svc.BeginActivation(ctx, drA.caller(), cred.ID, hashes)
				if err != nil {
					b.Fatal(err)
				}
				d := time.Since(t0)
				var act remote.Activation
				if factor == "card" {
					ans := processAnswer(b, vc, "123456", req.Challenge) // the card: not timed
					t1 := time.Now()
					act, err = f.svc.ActivateWithCard(ctx, drA.caller(), cred.ID, req.ID, ans)
					d += time.Since(t1)
				} else {
					asn, aerr := a.Assert(mustJSON(b, req.Options)) // the touch: not timed
					if aerr != nil {
						b.Fatal(aerr)
					}
					t1 := time.Now()
					act, err = f.svc.Activate(ctx, drA.caller(), cred.ID, req.ID, asn)
					d += time.Since(t1)
				}
				if err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				if _, err := f.svc.SignHash(ctx, drA.caller(), cred.ID, act.SAD, hashes); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, d+time.Since(t2))
			}
			report(b, lat)
		})
	}
}
