package agent_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing/agent"
	"github.com/mohr-hix/mohr/signing/agent/agentcard"
)

// writeCardCert writes cert into the signing slot of the council card in vpcd reader 0.
func writeCardCert(t *testing.T, cert *x509.Certificate) {
	t.Helper()
	ctx := context.Background()
	pc, err := cardreader.Establish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Release()
	card, err := pc.Connect(ctx, vpcdReader)
	if err != nil {
		t.Fatal(err)
	}
	defer card.Close()
	cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
	if err != nil {
		t.Fatal(err)
	}
	pin := func(context.Context, string) ([]byte, error) { return []byte(goodPIN), nil }
	if err := cc.WriteCertificate(ctx, cardreader.SlotSign, pin, cert); err != nil {
		t.Fatal(err)
	}
}

func cardPublicKey(t *testing.T) crypto.PublicKey {
	t.Helper()
	ctx := context.Background()
	pc, err := cardreader.Establish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Release()
	card, err := pc.Connect(ctx, vpcdReader)
	if err != nil {
		t.Fatal(err)
	}
	defer card.Close()
	cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cc.PublicKey(ctx, cardreader.SlotSign)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// leafFrom issues a certificate for pub from p's intermediate, changed by edit.
func leafFrom(t *testing.T, p *testpki.PKI, pub crypto.PublicKey, edit func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	now := p.Clock.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "Dr. Test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), KeyUsage: x509.KeyUsageContentCommitment}
	pol, _ := x509.OIDFromInts([]uint64{2, 999, 1742, 2, 3})
	tmpl.Policies = []x509.OID{pol}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.Intermediate, pub, p.InterKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSignerPolicyAtSessionOpen (issue 19 item 12): with the virtual card through pcscd, the agent checks the
// card's signing certificate when a session opens, before the PIN is asked. A card whose certificate comes
// from another CA (as a card holding only its factory certificate), one without the physician-signing
// policy, and one whose certificate has expired by the agent's clock are each refused with code
// signer_refused and a reason; no PIN prompt, no comfort state opened on the card, an audit record. The enrolled card opens a session
// and its prescription is TOTAL_PASSED at the exchange.
func TestSignerPolicyAtSessionOpen(t *testing.T) {
	p, err := testpki.New(pkiStart())
	if err != nil {
		t.Fatal(err)
	}
	vc := insertCardComfort(t, p, agent.MaxSessionSignatures) // writes a good certificate from p
	good := physicianCert(t, p, cardPublicKey(t))
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	policy := agent.SignerPolicy{Roots: roots, Policy: testpki.OIDPhysicianSigningPolicy}
	key := &cardKey{o: &agentcard.Opener{URI: cardURI, Intermediates: []*x509.Certificate{p.Intermediate}}}
	e := newEnvPKI(t, p, key, func(c *agent.Config) { c.CheckSigner = policy.Check })

	// The card's factory certificate: what the virtual card's own issuer ("Mohr Virtual Card Issuer CA", the
	// card maker's) certifies at manufacture, for the same key.
	iss := vc.Issuer()
	ftmpl := &x509.Certificate{SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "سارا احمدی", SerialNumber: "IDCIR-0499370899"},
		NotBefore: p.Clock.Now().Add(-time.Hour), NotAfter: p.Clock.Now().AddDate(5, 0, 0), KeyUsage: x509.KeyUsageContentCommitment}
	fder, err := x509.CreateCertificate(rand.Reader, ftmpl, iss.Cert, cardPublicKey(t), iss.Key)
	if err != nil {
		t.Fatal(err)
	}
	factoryCert, _ := x509.ParseCertificate(fder)
	other, err := testpki.New(pkiStart()) // another health CA, not this exchange's
	if err != nil {
		t.Fatal(err)
	}
	refusals := []struct {
		name, want string
		cert       *x509.Certificate
		advance    time.Duration
	}{
		{"factory certificate", `Mohr Virtual Card Issuer CA\") does not chain to the configured roots: the card is not enrolled`, factoryCert, 0},
		{"another CA's certificate", "does not chain to the configured roots", leafFrom(t, other, cardPublicKey(t), nil), 0},
		{"no physician-signing policy", "lacks the physician-signing certificate policy", leafFrom(t, p, cardPublicKey(t), func(c *x509.Certificate) { c.Policies = nil }), 0},
		{"expired", "expired on", good, 400 * 24 * time.Hour},
	}
	for _, r := range refusals {
		writeCardCert(t, r.cert)
		p.Clock.Advance(r.advance)
		resp, body := e.call("POST", "/v1/session", map[string]any{})
		p.Clock.Advance(-r.advance)
		if resp.StatusCode != 409 || !strings.Contains(string(body), `"code":"signer_refused"`) || !strings.Contains(string(body), r.want) {
			t.Fatalf("%s: %d %s", r.name, resp.StatusCode, body)
		}
		// No PIN prompt, and the card's comfort state was never opened (the only VERIFY-class APDU is the
		// logout when the agent closes the key).
		if e.pad.count() != 0 || vc.ComfortLeft() != 0 {
			t.Fatalf("%s: a refused card was asked for the PIN: %d prompts, comfort counter %d", r.name, e.pad.count(), vc.ComfortLeft())
		}
	}
	if recs := e.checkAudit(); countEvents(recs, "session-refused") != len(refusals) {
		t.Fatalf("audit: %d session-refused records", countEvents(recs, "session-refused"))
	}

	writeCardCert(t, good)
	e.startSession(5, time.Hour)
	code, l, pr := e.sign(e.rx(), map[string]any{"requireSession": true})
	if code != 200 || l.Status != "submitted" || l.Indication != "TOTAL_PASSED" {
		t.Fatalf("enrolled card: %d %+v %+v", code, pr, l)
	}
}

// TestSignerPolicyCheck covers what needs no card: no roots, a CA certificate, a key without non-repudiation
// (an authentication certificate), not yet valid, and a good one.
func TestSignerPolicyCheck(t *testing.T) {
	p, err := testpki.New(pkiStart())
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	pol := agent.SignerPolicy{Roots: roots, Policy: testpki.OIDPhysicianSigningPolicy}
	now := p.Clock.Now()
	good := leafFrom(t, p, &k.PublicKey, nil)
	cases := []struct {
		name  string
		pol   agent.SignerPolicy
		chain []*x509.Certificate
		at    time.Time
		want  string
	}{
		{"good", pol, []*x509.Certificate{good, p.Intermediate}, now, ""},
		{"no roots", agent.SignerPolicy{}, []*x509.Certificate{good, p.Intermediate}, now, "no trust anchors"},
		{"no intermediate", pol, []*x509.Certificate{good}, now, "does not chain"},
		{"CA certificate", pol, []*x509.Certificate{p.Intermediate}, now, "CA certificate"},
		{"authentication key", pol, []*x509.Certificate{leafFrom(t, p, &k.PublicKey, func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageDigitalSignature
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}), p.Intermediate}, now, "non-repudiation"},
		{"not yet valid", pol, []*x509.Certificate{good, p.Intermediate}, now.Add(-2 * time.Hour), "not valid before"},
		{"no certificate", pol, nil, now, "no certificate"},
	}
	for _, c := range cases {
		err := c.pol.Check(c.chain, c.at)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, agent.ErrSignerRefused) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestPINEntryFailures (issue 19 item 13): a PIN function without a terminal gives the EMR pin_unavailable
// (503, with what to do), one that times out pin_timeout, one cancelled pin_cancelled; never a bare
// pin_cancelled for all three.
func TestPINEntryFailures(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("%w: no terminal", agent.ErrPINUnavailable), 503, "pin_unavailable"},
		{fmt.Errorf("%w: 2m", agent.ErrPINTimeout), 409, "pin_timeout"},
		{agent.ErrPINCancelled, 409, "pin_cancelled"},
	} {
		e := newEnv(t, func(p *testpki.PKI) agent.KeyOpener { return newSoftCard(t, p).opener() }, func(cfg *agent.Config) {
			cfg.PIN = func(context.Context, string) ([]byte, error) { return nil, c.err }
		})
		resp, body := e.call("POST", "/v1/session", map[string]any{})
		if resp.StatusCode != c.status || !strings.Contains(string(body), `"code":"`+c.code+`"`) {
			t.Errorf("%v: %d %s", c.err, resp.StatusCode, body)
		}
		if c.code == "pin_unavailable" && !strings.Contains(string(body), "pin_entry: web") {
			t.Errorf("pin_unavailable does not say what to do: %s", body)
		}
	}
}
