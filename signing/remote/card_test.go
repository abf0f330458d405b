package remote_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/internal/softauthn"
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

// enrolWithCard enrols p over a fresh enrolment challenge that vc signs (and registers vc as a factor with
// register).
func (f *fixture) enrolWithCard(d *cardDesk, p physician, vc *virtualcard.Card, register bool) (remote.Credential, error) {
	f.t.Helper()
	ctx := context.Background()
	ch, err := f.svc.BeginCardChallenge(ctx, f.ra, remote.PurposeEnrol, "")
	if err != nil {
		f.t.Fatal(err)
	}
	ans, err := d.answer(vc, cardPIN, ch.Challenge)
	if err != nil {
		f.t.Fatal(err)
	}
	cred, _, err := f.svc.Enrol(ctx, f.ra, remote.EnrolRequest{NationalCode: p.national, CouncilNumber: p.council, Name: p.name,
		Card: &remote.EnrolCard{ChallengeID: ch.ID, Answer: ans, Register: register}})
	return cred, err
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
			f.withCards()
			ctx := context.Background()
			now := f.clock.Now
			cardA := idCard(t, drA, f.cardIssuer, now)
			cardB := idCard(t, drB, f.cardIssuer, now)
			replacement := idCard(t, drA, f.cardIssuer, now) // drA's new card: same person, another key
			otherIssuer, _ := virtualcard.NewIssuer(nil, now())
			untrusted := idCard(t, drA, otherIssuer, now)
			// A card whose certificate ends two hours from the fixture's start (issued two years before).
			old := idCard(t, drA, f.cardIssuer, func() time.Time { return now().AddDate(-2, 0, 0).Add(2 * time.Hour) })

			cred, err := f.enrolWithCard(d, drA, cardA, false)
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
			// What the exchange saw of it: the activation request with its hashes, and nothing after.
			seen := false
			for _, e := range f.events("remote.activation.requested") {
				var d struct {
					Request string   `json:"request"`
					Hashes  []string `json:"hashes"`
				}
				json.Unmarshal(e.Data, &d)
				seen = seen || (d.Request == r.ID && len(d.Hashes) == 1 && d.Hashes[0] == hexs(hs[0]))
			}
			if !seen {
				t.Fatal("wrong PIN: the activation request is not in the audit log")
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

// TestEnrolCardChecked: the exchange re-verifies the national ID card at enrolment (item 2 of issue 18's
// last round): its own one-use challenge, bound to the RA officer, signed by the card after its PIN, checked
// against its configured issuers. The holder's card enrols and is registered as a factor; refused, each with
// no credential, no key and the attempt audited: no card answer, a forged answer (another card's signature
// under this card's certificate), the replayed answer, an expired challenge, another RA officer's challenge, a
// card of an issuer not configured, a card of another national code.
func TestEnrolCardChecked(t *testing.T) {
	d := newCardDesk(t)
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			d.t = t
			f := newFixture(t, dialect)
			f.withCards()
			ctx := context.Background()
			now := f.clock.Now
			cardA, cardB := idCard(t, drA, f.cardIssuer, now), idCard(t, drB, f.cardIssuer, now)
			otherIssuer, _ := virtualcard.NewIssuer(nil, now())
			untrusted := idCard(t, drA, otherIssuer, now)
			req := func(ch remote.CardChallenge, ans remote.CardAnswer) remote.EnrolRequest {
				return remote.EnrolRequest{NationalCode: drA.national, CouncilNumber: drA.council, Name: drA.name,
					Card: &remote.EnrolCard{ChallengeID: ch.ID, Answer: ans, Register: true}}
			}
			challenge := func(c remote.Caller) remote.CardChallenge {
				t.Helper()
				ch, err := f.svc.BeginCardChallenge(ctx, c, remote.PurposeEnrol, "")
				if err != nil {
					t.Fatal(err)
				}
				return ch
			}
			sign := func(vc *virtualcard.Card, ch remote.CardChallenge) remote.CardAnswer {
				t.Helper()
				a, err := d.answer(vc, cardPIN, ch.Challenge)
				if err != nil {
					t.Fatal(err)
				}
				return a
			}
			nothing := func(name string, err error, want error, text string) {
				t.Helper()
				if !errors.Is(err, want) {
					t.Fatalf("%s: %v, want %v", name, err, want)
				}
				if creds, _ := f.st.CredentialsOf(ctx, drA.council); len(creds) != 0 {
					t.Fatalf("%s: %d credentials exist", name, len(creds))
				}
				if f.keys.signs.Load() != 0 {
					t.Fatalf("%s: a key was generated and used", name)
				}
				if !f.refusedWith("enrol", nil, text) {
					t.Fatalf("%s: no remote.refused event with %q", name, text)
				}
			}

			_, _, err := f.svc.Enrol(ctx, f.ra, remote.EnrolRequest{NationalCode: drA.national, CouncilNumber: drA.council, Name: drA.name,
				IdentityCheck: "the RA client says the card was fine"})
			nothing("no card answer", err, remote.ErrCardRefused, "enrolment challenge is required")

			ch := challenge(f.ra)
			forged := sign(cardA, ch)
			forged.Signature = sign(cardB, ch).Signature // cardB's key under cardA's certificate
			_, _, err = f.svc.Enrol(ctx, f.ra, req(ch, forged))
			nothing("forged answer", err, remote.ErrCardRefused, "does not verify")

			ch = challenge(f.ra)
			good := sign(cardA, ch)
			f.clock.Advance(remote.CardChallengeTTL + time.Second)
			_, _, err = f.svc.Enrol(ctx, f.ra, req(ch, good))
			nothing("expired challenge", err, remote.ErrExpired, "card challenge")
			_, _, err = f.svc.Enrol(ctx, f.ra, req(ch, good))
			nothing("expired challenge, again", err, remote.ErrUsed, "already used")

			ch = challenge(f.ra)
			ra2 := remote.Caller{Role: remote.RoleRAOfficer, Actor: "api:ra-officer:ra2"}
			_, _, err = f.svc.Enrol(ctx, ra2, req(ch, sign(cardA, ch)))
			nothing("another RA officer's challenge", err, remote.ErrCardRefused, "another purpose, credential or RA officer")

			ch = challenge(f.ra)
			_, _, err = f.svc.Enrol(ctx, f.ra, req(ch, sign(untrusted, ch)))
			nothing("issuer not configured", err, remote.ErrCardRefused, "does not chain")

			ch = challenge(f.ra)
			_, _, err = f.svc.Enrol(ctx, f.ra, req(ch, sign(cardB, ch)))
			nothing("another national code", err, remote.ErrCardRefused, "not the one enrolled")

			ch = challenge(f.ra)
			good = sign(cardA, ch)
			cred, reg, err := f.svc.Enrol(ctx, f.ra, req(ch, good))
			if err != nil {
				t.Fatal(err)
			}
			if cred.Status != remote.StatusActive {
				t.Fatalf("status %s after enrolment with the card registered", cred.Status)
			}
			// The enrolment's registration code still adds a passkey to the (active) credential.
			f.register(cred.ID, reg, softauthn.New(origin))
			if pks, cards, err := f.svc.Factors(ctx, f.ra, cred.ID); err != nil || len(pks) != 1 || len(cards) != 1 {
				t.Fatalf("factors after the passkey: %v, %d passkeys, %d cards", err, len(pks), len(cards))
			}
			_, _, err = f.svc.Enrol(ctx, f.ra, req(ch, good))
			if !errors.Is(err, remote.ErrUsed) || !f.refusedWith("enrol", nil, "already used") {
				t.Fatalf("replayed enrolment answer: %v", err)
			}
			if creds, _ := f.st.CredentialsOf(ctx, drA.council); len(creds) != 1 {
				t.Fatalf("%d credentials after the replay", len(creds))
			}
			evs := f.events("remote.credential.enrolled")
			var ev struct {
				Server struct {
					Verified bool   `json:"card_verified_by_server"`
					SHA      string `json:"card_cert_sha256"`
				} `json:"identity_check_server"`
			}
			if len(evs) != 1 || json.Unmarshal(evs[0].Data, &ev) != nil || !ev.Server.Verified || ev.Server.SHA != fingerprint(cardA) {
				t.Fatalf("enrolment audit: %d events %+v", len(evs), ev)
			}
			// The card registered at enrolment activates.
			hs := randomHashes(3)
			r, err := f.svc.BeginActivation(ctx, drA.caller(), cred.ID, hs)
			if err != nil {
				t.Fatal(err)
			}
			a, err := d.answer(cardA, cardPIN, r.Challenge)
			if err != nil {
				t.Fatal(err)
			}
			act, err := f.svc.ActivateWithCard(ctx, drA.caller(), cred.ID, r.ID, a)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.SignHash(ctx, drA.caller(), cred.ID, act.SAD, hs); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCardRevocation: with the national ID card issuers' CRLs configured (Config.CardCRLs), a card
// certificate its issuer's current CRL lists is refused at registration and at activation; a stale CRL (past
// nextUpdate by the injected clock) or one signed by another issuer leaves the card unchecked, and the exchange
// then refuses it (fail closed); an unlisted card works. Nothing is signed by a refused activation.
func TestCardRevocation(t *testing.T) {
	d := newCardDesk(t)
	f := newFixture(t, "sqlite")
	ctx := context.Background()
	now := f.clock.Now
	var crls atomic.Pointer[[]*x509.RevocationList]
	crl := func(iss *virtualcard.Issuer, revoked ...*virtualcard.Card) {
		t.Helper()
		var entries []x509.RevocationListEntry
		for _, vc := range revoked {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: vc.Certificate(0x81).SerialNumber, RevocationTime: now().Add(-time.Minute)})
		}
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(now().Unix()), ThisUpdate: now().Add(-time.Hour),
			NextUpdate: now().Add(24 * time.Hour), RevokedCertificateEntries: entries}, iss.Cert, iss.Key)
		if err != nil {
			t.Fatal(err)
		}
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		crls.Store(&[]*x509.RevocationList{l})
	}
	f.cfg.CardCRLs = func(context.Context) ([]*x509.RevocationList, error) { return *crls.Load(), nil }
	f.withCards()
	cardA, lost := idCard(t, drA, f.cardIssuer, now), idCard(t, drA, f.cardIssuer, now)
	crl(f.cardIssuer)
	cred, err := f.enrolWithCard(d, drA, cardA, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.registerCard(d, cred.ID, lost); err != nil {
		t.Fatal(err)
	}
	activate := func(vc *virtualcard.Card) error {
		t.Helper()
		hs := randomHashes(2)
		r, err := f.svc.BeginActivation(ctx, drA.caller(), cred.ID, hs)
		if err != nil {
			t.Fatal(err)
		}
		a, err := d.answer(vc, cardPIN, r.Challenge)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.svc.ActivateWithCard(ctx, drA.caller(), cred.ID, r.ID, a)
		return err
	}
	if err := activate(lost); err != nil {
		t.Fatalf("the card before its revocation: %v", err)
	}
	// The card is reported lost: its issuer's CRL lists it.
	crl(f.cardIssuer, lost)
	before := f.keys.signs.Load()
	if err := activate(lost); !errors.Is(err, remote.ErrCardRefused) || !f.refusedWith("activate-card", nil, "revoked") {
		t.Fatalf("revoked card: %v", err)
	}
	if err := activate(cardA); err != nil {
		t.Fatalf("the unrevoked card: %v", err)
	}
	replacement := idCard(t, drA, f.cardIssuer, now)
	crl(f.cardIssuer, lost, replacement)
	if _, err := f.registerCard(d, cred.ID, replacement); !errors.Is(err, remote.ErrCardRefused) || !f.refusedWith("card-register", nil, "revoked") {
		t.Fatalf("registration of a revoked card: %v", err)
	}
	// A CRL of another issuer only: no current CRL for the card's issuer.
	other, _ := virtualcard.NewIssuer(nil, now())
	crl(other)
	if err := activate(cardA); !errors.Is(err, remote.ErrCardRefused) || !f.refusedWith("activate-card", nil, "no current CRL") {
		t.Fatalf("CRL of another issuer: %v", err)
	}
	// A stale CRL: the clock passes its nextUpdate.
	crl(f.cardIssuer)
	f.clock.Advance(25 * time.Hour)
	if err := activate(cardA); !errors.Is(err, remote.ErrCardRefused) {
		t.Fatalf("stale CRL: %v", err)
	}
	if n := f.keys.signs.Load() - before; n != 0 {
		t.Fatalf("refused activations made %d HSM signatures", n)
	}
}
