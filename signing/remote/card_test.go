package remote_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing/remote"
)

const (
	vpcdAddr   = "127.0.0.1:35963"
	vpcdReader = "Virtual PCD 00 00"
	cardPIN    = "123456" // the virtual card's default PIN
)

// cardDesk inserts virtual national ID cards, one at a time, into vpcd reader 0 of the real pcscd.
type cardDesk struct {
	t  *testing.T
	pc *cardreader.Context
}

func newCardDesk(t *testing.T) *cardDesk {
	t.Helper()
	testenv.LockPCSCD(t)
	pc, err := cardreader.Establish(context.Background())
	if err != nil {
		testenv.Missing(t, "pcscd: "+err.Error())
	}
	t.Cleanup(func() { pc.Release() })
	return &cardDesk{t: t, pc: pc}
}

// use inserts vc, runs fn with its national ID application and pulls the card again.
func (d *cardDesk) use(vc *virtualcard.Card, fn func(nid *cardreader.NationalIDCard)) {
	t := d.t
	t.Helper()
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := d.pc.WaitForRemoval(wctx, vpcdReader); err != nil {
		if errors.Is(err, cardreader.ErrNoReader) {
			testenv.Missing(t, "vpcd reader "+vpcdReader)
		}
		t.Fatalf("reader not empty: %v", err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- vc.ConnectVPCD(cctx, vpcdAddr) }()
	defer func() {
		stop()
		<-done
		rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		d.pc.WaitForRemoval(rctx, vpcdReader)
	}()
	if err := d.pc.WaitForCard(wctx, vpcdReader); err != nil {
		t.Fatalf("card did not appear: %v", err)
	}
	card, err := d.pc.Connect(ctx, vpcdReader)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer card.Close()
	nid, err := cardreader.NationalID(ctx, card, cardreader.DefaultNationalIDProfile())
	if err != nil {
		t.Fatal(err)
	}
	fn(nid)
}

// answer has the card in the reader sign challenge after pin; it returns the answer as a client sends it.
func (d *cardDesk) answer(vc *virtualcard.Card, pin string, challenge []byte) (remote.CardAnswer, error) {
	var ans remote.CardAnswer
	var err error
	d.use(vc, func(nid *cardreader.NationalIDCard) {
		ctx := context.Background()
		cert, cerr := nid.Certificate(ctx)
		if cerr != nil {
			d.t.Fatal(cerr)
		}
		ans.Certificate = cert.Raw
		ans.Signature, err = nid.SignChallenge(ctx, staticPIN(pin), challenge)
	})
	return ans, err
}

func staticPIN(pin string) keys.PINFunc {
	return func(context.Context, string) ([]byte, error) { return []byte(pin), nil }
}

// idCard makes a virtual national ID card for holder p, issued by iss at the time now gives.
func idCard(t *testing.T, p physician, iss *virtualcard.Issuer, now func() time.Time) *virtualcard.Card {
	t.Helper()
	h := virtualcard.DefaultHolder
	h.NationalCode, h.GivenName, h.FamilyName, h.CouncilNumber = p.national, p.name, "", ""
	vc, err := virtualcard.New(virtualcard.Config{Profile: virtualcard.ProfileNationalID, Holder: h, Issuer: iss, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return vc
}

// registerCard registers vc for credID over a fresh registration challenge.
func (f *fixture) registerCard(d *cardDesk, credID string, vc *virtualcard.Card) (remote.Card, error) {
	f.t.Helper()
	ctx := context.Background()
	ch, err := f.svc.BeginCardChallenge(ctx, f.ra, remote.PurposeRegister, credID)
	if err != nil {
		f.t.Fatal(err)
	}
	ans, err := d.answer(vc, cardPIN, ch.Challenge)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.svc.RegisterCard(ctx, f.ra, credID, ch.ID, ans)
}

// TestCardFactor: the national ID card as the alternative activation factor, through the real pcscd and
// vpcd, SoftHSM2 for the remote key, on SQLite and PostgreSQL. A credential whose only factor is the card
// signs a batch of ten; every refusal (another person's card, an unregistered replacement card, an answer
// over other hashes, a replayed answer, a wrong PIN, an expired card certificate, an issuer no longer
// configured, a suspended credential, registrations of a foreign, untrusted or replayed card) signs nothing
// and is in the audit log.
func TestCardFactor(t *testing.T) {
	d := newCardDesk(t)
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			d.t = t
			f := newFixture(t, dialect)
			ctx := context.Background()
			now := f.clock.Now
			cardA := idCard(t, drA, f.cardIssuer, now)
			cardB := idCard(t, drB, f.cardIssuer, now)
			replacement := idCard(t, drA, f.cardIssuer, now) // drA's new card: same person, another key
			otherIssuer, _ := virtualcard.NewIssuer(nil, now())
			untrusted := idCard(t, drA, otherIssuer, now)
			// A card whose certificate ends two hours from the fixture's start (issued two years before).
			old := idCard(t, drA, f.cardIssuer, func() time.Time { return now().AddDate(-2, 0, 0).Add(2 * time.Hour) })

			cred, _, err := f.svc.Enrol(ctx, f.ra, remote.EnrolRequest{NationalCode: drA.national, CouncilNumber: drA.council,
				Name: drA.name, IdentityCheck: "national ID card"})
			if err != nil {
				t.Fatal(err)
			}
			if cred.Status != remote.StatusPending {
				t.Fatalf("status %s", cred.Status)
			}

			// Registration, refused: another person's card, a card of an issuer not configured, a replayed
			// answer, another RA officer redeeming the challenge.
			if _, err := f.registerCard(d, cred.ID, cardB); !errors.Is(err, remote.ErrCardRefused) || !strings.Contains(err.Error(), "national code") {
				t.Fatalf("another person's card registered: %v", err)
			}
			if _, err := f.registerCard(d, cred.ID, untrusted); !errors.Is(err, remote.ErrCardRefused) || !strings.Contains(err.Error(), "chain") {
				t.Fatalf("a card of another issuer registered: %v", err)
			}
			ch, err := f.svc.BeginCardChallenge(ctx, f.ra, remote.PurposeRegister, cred.ID)
			if err != nil {
				t.Fatal(err)
			}
			ans, err := d.answer(cardA, cardPIN, ch.Challenge)
			if err != nil {
				t.Fatal(err)
			}
			ra2 := remote.Caller{Role: remote.RoleRAOfficer, Actor: "api:ra-officer:ra2"}
			if _, err := f.svc.RegisterCard(ctx, ra2, cred.ID, ch.ID, ans); !errors.Is(err, remote.ErrCardRefused) {
				t.Fatalf("another RA officer redeemed the challenge: %v", err)
			}
			if _, err := f.svc.RegisterCard(ctx, f.ra, cred.ID, ch.ID, ans); !errors.Is(err, remote.ErrUsed) {
				t.Fatalf("a used challenge redeemed again: %v", err)
			}
			if !f.refusedWith("card-register", nil, "national code") || !f.refusedWith("card-register", nil, "chain") || !f.refusedWith("card-register", nil, "already used") {
				t.Fatal("registration refusals not audited")
			}
			if c, _ := f.st.Credential(ctx, cred.ID); c.Status != remote.StatusPending {
				t.Fatalf("a refused registration changed the credential: %s", c.Status)
			}

			// Registration of the holder's own cards: the credential becomes active with the card as its only factor.
			k, err := f.registerCard(d, cred.ID, cardA)
			if err != nil {
				t.Fatal(err)
			}
			if k.NationalCode != drA.national || k.Fingerprint != fingerprint(cardA) {
				t.Fatalf("registered card %+v", k)
			}
			if _, err := f.registerCard(d, cred.ID, old); err != nil {
				t.Fatal(err)
			}
			if c, _ := f.st.Credential(ctx, cred.ID); c.Status != remote.StatusActive {
				t.Fatalf("status after card registration: %s", c.Status)
			}
			pks, cards, err := f.svc.Factors(ctx, drA.caller(), cred.ID)
			if err != nil || len(pks) != 0 || len(cards) != 2 {
				t.Fatalf("factors: %v, %d passkeys, %d cards", err, len(pks), len(cards))
			}
			if _, _, err := f.svc.Factors(ctx, drB.caller(), cred.ID); !errors.Is(err, remote.ErrNotFound) {
				t.Fatalf("another physician reads the factors: %v", err)
			}

			// Positive: ten hashes, one card answer, ten HSM signatures that verify.
			hashes := randomHashes(10)
			req, err := f.svc.BeginActivation(ctx, drA.caller(), cred.ID, hashes)
			if err != nil {
				t.Fatal(err)
			}
			if req.Options != nil || string(req.Challenge) != string(remote.Challenge(cred.ID, mustHex(t, req.ID), hashes)) {
				t.Fatal("activation request for a card-only credential: WebAuthn options or a wrong challenge")
			}
			good, err := d.answer(cardA, cardPIN, req.Challenge)
			if err != nil {
				t.Fatal(err)
			}
			before := f.keys.signs.Load()
			act, err := f.svc.ActivateWithCard(ctx, drA.caller(), cred.ID, req.ID, good)
			if err != nil {
				t.Fatal(err)
			}
			sigs, err := f.svc.SignHash(ctx, drA.caller(), cred.ID, act.SAD, hashes)
			if err != nil {
				t.Fatal(err)
			}
			leaf, _ := cred.Certificates()
			for i, sig := range sigs {
				if !ecdsa.VerifyASN1(leaf[0].PublicKey.(*ecdsa.PublicKey), hashes[i], sig) {
					t.Fatalf("signature %d does not verify", i)
				}
			}
			if n := f.keys.signs.Load() - before; n != 10 {
				t.Fatalf("%d HSM signatures, want 10", n)
			}
			grants := f.events("remote.activation.granted")
			var g struct {
				Factor  string   `json:"factor"`
				CardSHA string   `json:"card_cert_sha256"`
				Hashes  []string `json:"hashes"`
			}
			if len(grants) != 1 || json.Unmarshal(grants[0].Data, &g) != nil || g.Factor != remote.FactorCard || g.CardSHA != fingerprint(cardA) || len(g.Hashes) != 10 {
				t.Fatalf("grant audit: %d events, %+v", len(grants), g)
			}

			// Refusals. Each: nothing signed, no SAD, the attempt audited with its hashes.
			refused := func(name string, hs [][]byte, text string, err error, want error) {
				t.Helper()
				if !errors.Is(err, want) {
					t.Fatalf("%s: %v, want %v", name, err, want)
				}
				if !f.refusedWith("activate-card", hs, text) {
					t.Fatalf("%s: no remote.refused event with %q and the hashes", name, text)
				}
			}
			before = f.keys.signs.Load()
			grantsBefore := len(f.events("remote.activation.granted"))
			begin := func(hs [][]byte) remote.ActivationRequest {
				t.Helper()
				r, err := f.svc.BeginActivation(ctx, drA.caller(), cred.ID, hs)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}

			// The replayed answer (its request is used up).
			_, err = f.svc.ActivateWithCard(ctx, drA.caller(), cred.ID, req.ID, good)
			refused("replayed answer", hashes, "already used", err, remote.ErrUsed)

			// Another person's card (drB's, registered nowhere for this credential).
			hs := randomHashes(2)
			r := begin(hs)
			a, err := d.answer(cardB, cardPIN, r.Challenge)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.svc.ActivateWithCard(ctx, drA.caller(), cred.ID, r.ID, a)
			refused("another person's card", hs, "not registered", err, remote.ErrCardRefused)

			// The holder's replacement card, not registered.
			hs = randomHashes(2)
			r = begin(hs)
			if a, err = d.answer(replacement, cardPIN, r.Challenge); err != nil {
				t.Fatal(err)
			}
			_, err = f.svc.ActivateWithCard(ctx, drA.caller(), cred.ID, r.ID, a)
			refused("replacement card", hs, "not registered", err, remote.ErrCardRefused)

			// The registered card's answer over other hashes (another request's challenge).
			hs, other := randomHashes(3), randomHashes(3)
			r, r2 := begin(hs), begin(other)
			if a, err = d.answer(cardA, cardPIN, r2.Challenge); err != nil {
				t.Fatal(err)
			}
			_, err = f.svc.ActivateWithCard(ctx, drA.caller(), cred.ID, r.ID, a)
			refused("answer over other hashes", hs, "does not verify", err, remote.ErrCardRefused)

			// A wrong PIN: the card refuses and answers nothing; nothing reaches the service.
			hs = randomHashes(1)
			r = begin(hs)
			var ae *cardreader.AuthError
			if a, err = d.answer(cardA, "999999", r.Challenge); !errors.As(err, &ae) || a.Signature != nil {
				t.Fatalf("wrong PIN: %v, signature %x", err, a.Signature)
			}
			if cardA.TriesLeft() != 2 {
				t.Fatalf("tries left %d", cardA.TriesLeft())
			}

			// A suspended credential: the answer was made before the suspension.
			hs = randomHashes(2)
			r = begin(hs)
			if a, err = d.answer(cardA, cardPIN, r.Challenge); err != nil {
				t.Fatal(err)
			}
			if err := f.svc.Suspend(ctx, f.ra, cred.ID, "test"); err != nil {
				t.Fatal(err)
			}
			_, err = f.svc.ActivateWithCard(ctx, drA.caller(), cred.ID, r.ID, a)
			refused("suspended credential", hs, "suspended", err, remote.ErrCredentialStatus)
			if err := f.svc.Resume(ctx, f.ra, cred.ID); err != nil {
				t.Fatal(err)
			}

			// An issuer the exchange no longer trusts: the same store and keys, configured without it.
			cfg := f.cfg
			cfg.CardIssuers = []*x509.Certificate{otherIssuer.Cert}
			svc2, err := remote.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			hs = randomHashes(2)
			r = begin(hs)
			if a, err = d.answer(cardA, cardPIN, r.Challenge); err != nil {
				t.Fatal(err)
			}
			_, err = svc2.ActivateWithCard(ctx, drA.caller(), cred.ID, r.ID, a)
			refused("issuer not configured", hs, "does not chain", err, remote.ErrCardRefused)
			cfg.CardIssuers = nil
			svc3, _ := remote.New(cfg)
			hs = randomHashes(2)
			r = begin(hs)
			if a, err = d.answer(cardA, cardPIN, r.Challenge); err != nil {
				t.Fatal(err)
			}
			_, err = svc3.ActivateWithCard(ctx, drA.caller(), cred.ID, r.ID, a)
			refused("no issuers configured", hs, "no national ID card issuers", err, remote.ErrCardRefused)

			// An operator presenting the physician's card answer.
			hs = randomHashes(1)
			r = begin(hs)
			if a, err = d.answer(cardA, cardPIN, r.Challenge); err != nil {
				t.Fatal(err)
			}
			op := remote.Caller{Role: remote.RoleOperator, Actor: "api:operator:op1"}
			_, err = f.svc.ActivateWithCard(ctx, op, cred.ID, r.ID, a)
			refused("operator", hs, "only the physician", err, remote.ErrForbidden)

			// The expired card certificate (the injected clock moves three hours; the remote certificate stays valid).
			f.clock.Advance(3 * time.Hour)
			hs = randomHashes(2)
			r = begin(hs)
			if a, err = d.answer(old, cardPIN, r.Challenge); err != nil {
				t.Fatal(err)
			}
			_, err = f.svc.ActivateWithCard(ctx, drA.caller(), cred.ID, r.ID, a)
			refused("expired card certificate", hs, "card certificate valid", err, remote.ErrCardRefused)

			if n := f.keys.signs.Load() - before; n != 0 {
				t.Fatalf("refusals made %d HSM signatures", n)
			}
			if n := len(f.events("remote.activation.granted")) - grantsBefore; n != 0 {
				t.Fatalf("refusals granted %d SADs", n)
			}

			// The still-valid registered card works after all that (and the PIN counter was reset by the right PIN).
			hs = randomHashes(1)
			r = begin(hs)
			if a, err = d.answer(cardA, cardPIN, r.Challenge); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.ActivateWithCard(ctx, drA.caller(), cred.ID, r.ID, a); err != nil {
				t.Fatalf("the registered card after the refusals: %v", err)
			}

			// Block removes the card as a factor: the card no longer activates.
			if err := f.svc.Block(ctx, f.ra, cred.ID, "card lost"); err != nil {
				t.Fatal(err)
			}
			if _, cards, _ := f.svc.Factors(ctx, f.ra, cred.ID); len(cards) != 0 {
				t.Fatalf("blocked credential keeps %d cards", len(cards))
			}
		})
	}
}

func fingerprint(vc *virtualcard.Card) string {
	sum := sha256.Sum256(vc.Certificate(0x81).Raw)
	return hexs(sum[:])
}
