// Package agentcard opens the physician's card for the signing agent (package agent) through PC/SC
// (package cardreader): the medical-council profile, or PIV. Besides the key it gives the agent a PIN check
// at session start (VERIFY), the card's comfort-signature counter (the session's ceiling), a logout when
// the session's key is closed, a watcher that reports the card's removal, the on-card signature time (the
// PSO: COMPUTE DIGITAL SIGNATURE round trip, from cardreader's trace hook) and card errors mapped to the
// agent's kinds (agent.ErrCardRemoved, *agent.PINError).
package agentcard

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing/agent"
)

// insPSO is PSO (ISO/IEC 7816-8 §11), the instruction that computes the signature; insGeneralAuth is the PIV
// card's GENERAL AUTHENTICATE (SP 800-73-4 Part 2 §3.2.4), which does it there.
const (
	insPSO         = 0x2A
	insGeneralAuth = 0x87
)

// Opener opens the card a "card:" key URI names (cardreader.ParseURI) for a signing session.
type Opener struct {
	// URI is the card key, e.g. "card:reader=Virtual%20PCD%2000%2000;profile=medical-council;key=sign".
	URI string
	// Intermediates follow the card's certificate in every signature (the health intermediate CA).
	Intermediates []*x509.Certificate
	// Council is the medical-council profile; the zero value means cardreader.DefaultCouncilProfile().
	Council cardreader.CouncilProfile
}

var _ agent.KeyOpener = (*Opener)(nil)

// OpenKey connects to the card and returns its signing key. pin is the agent's PIN callback.
func (o *Opener) OpenKey(ctx context.Context, pin keys.PINFunc) (*agent.Key, error) {
	u, err := cardreader.ParseURI(o.URI)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", agent.ErrCard, err)
	}
	pc, err := cardreader.Establish(ctx)
	if err != nil {
		return nil, mapErr(err)
	}
	reader := u.Reader
	if reader == "" {
		if reader, err = firstWithCard(ctx, pc); err != nil {
			pc.Release()
			return nil, openErr(err)
		}
	}
	card, err := pc.Connect(ctx, reader)
	if err != nil {
		pc.Release()
		return nil, openErr(err)
	}
	closeAll := func() error {
		err := card.Close()
		if rerr := pc.Release(); err == nil {
			err = rerr
		}
		return err
	}
	var (
		signer   crypto.Signer
		checkPIN func(ctx context.Context, pin []byte) error
		comfort  func(ctx context.Context) (int, error)
		logout   func(ctx context.Context) error
		signINS  byte = insPSO
	)
	switch u.Profile {
	case cardreader.ProfileCouncil:
		prof := o.Council
		if prof.AID == nil {
			prof = cardreader.DefaultCouncilProfile()
		}
		var cc *cardreader.CouncilCard
		if cc, err = cardreader.Council(ctx, card, prof); err == nil {
			// PIN once: each signature relies on the card's comfort-signature state that the one VERIFY
			// at session start opened; a 6982 reaches the agent's PIN callback, which refuses.
			signer, err = cc.KeyWithPolicy(ctx, u.Key, pin, cardreader.PINPolicyOnce)
			checkPIN = cc.VerifyPIN
			comfort = func(ctx context.Context) (int, error) {
				left, _, err := cc.ComfortCounter(ctx)
				if errors.Is(err, cardreader.ErrNotFound) || errors.Is(err, cardreader.ErrNotSupported) {
					return 0, nil // a "PIN always" card
				}
				return left, err
			}
			logout = cc.Logout
		}
	case cardreader.ProfilePIV:
		slot := cardreader.PIVKeySign
		if u.Key == cardreader.SlotAuth {
			slot = cardreader.PIVKeyAuth
		}
		var p *cardreader.PIVCard
		if p, err = cardreader.PIV(ctx, card); err == nil {
			signer, err = p.Key(ctx, slot, pin)
			checkPIN = p.VerifyPIN
			// PIV 9C is "PIN always" (SP 800-73-4): one VERIFY covers one signature, and the agent keeps
			// no PIN to present again, so it refuses to open a session on it (agent.ErrNoComfort).
			comfort = func(context.Context) (int, error) { return 0, nil }
		}
		signINS = insGeneralAuth
	default:
		err = fmt.Errorf("%w: profile %q", keys.ErrUnsupportedKey, u.Profile)
	}
	if err != nil {
		closeAll()
		return nil, mapErr(err)
	}
	cert := certificateOf(signer)
	if cert == nil {
		closeAll()
		return nil, fmt.Errorf("%w: the card key has no certificate", agent.ErrCard)
	}
	var cardNS atomic.Int64
	card.SetTrace(func(ins byte, _ uint16, d time.Duration) {
		if ins == signINS {
			cardNS.Add(int64(d))
		}
	})
	k := &agent.Key{
		Signer: &mappedSigner{Signer: signer},
		Chain:  append([]*x509.Certificate{cert}, o.Intermediates...),
		CheckPIN: func(ctx context.Context, pin []byte) error {
			return mapErr(checkPIN(ctx, pin))
		},
		CardTime: func() time.Duration { return time.Duration(cardNS.Swap(0)) },
		WaitRemoved: func(ctx context.Context) error {
			// A context of its own: pcsc-lite serialises calls on one context, and a waiting
			// SCardGetStatusChange would hold up the signatures.
			wc, err := cardreader.Establish(ctx)
			if err != nil {
				return err
			}
			defer wc.Release()
			return wc.WaitForRemoval(ctx, reader)
		},
		Close: func() error {
			if logout != nil {
				// End the card's comfort state so that no signature is left open behind the session
				// (VERIFY P1 = 'FF'); best effort: a pulled card has lost it anyway.
				lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = logout(lctx)
				cancel()
			}
			return closeAll()
		},
	}
	if comfort != nil {
		k.ComfortLimit = func(ctx context.Context) (int, error) {
			n, err := comfort(ctx)
			return n, mapErr(err)
		}
	}
	return k, nil
}

func firstWithCard(ctx context.Context, pc *cardreader.Context) (string, error) {
	st, err := pc.Status(ctx)
	if err != nil {
		return "", err
	}
	for _, s := range st {
		if s.Present {
			return s.Reader, nil
		}
	}
	return "", cardreader.ErrNoCard
}

// mappedSigner turns card errors into the agent's kinds; the PIN never appears in them.
type mappedSigner struct {
	crypto.Signer
}

func (m *mappedSigner) Sign(r io.Reader, digest []byte, o crypto.SignerOpts) ([]byte, error) {
	sig, err := m.Signer.Sign(r, digest, o)
	return sig, mapErr(err)
}

// openErr maps errors from finding and connecting the card: no card is "card unavailable", not a removal.
func openErr(err error) error {
	if errors.Is(err, cardreader.ErrNoCard) || errors.Is(err, cardreader.ErrCardRemoved) {
		return fmt.Errorf("%w: no card in the reader: %w", agent.ErrCard, err)
	}
	return mapErr(err)
}

// mapErr maps cardreader errors to agent errors.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var ae *cardreader.AuthError
	switch {
	case errors.As(err, &ae):
		return agent.NewPINError(ae.Retries, err)
	case errors.Is(err, cardreader.ErrPINBlocked):
		return agent.NewPINError(0, err)
	case errors.Is(err, cardreader.ErrCardRemoved), errors.Is(err, cardreader.ErrNoCard):
		return fmt.Errorf("%w: %w", agent.ErrCardRemoved, err)
	case errors.Is(err, agent.ErrSessionEnded), errors.Is(err, agent.ErrPINRequired):
		return err
	}
	return fmt.Errorf("%w: %w", agent.ErrCard, err)
}

func certificateOf(s crypto.Signer) *x509.Certificate {
	for s != nil {
		if c, ok := s.(interface{ Certificate() *x509.Certificate }); ok {
			return c.Certificate()
		}
		u, ok := s.(interface{ Unwrap() crypto.Signer })
		if !ok {
			return nil
		}
		s = u.Unwrap()
	}
	return nil
}
