package cardreader

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/mohr-hix/mohr/cardreader/internal/cardfmt"
	"github.com/mohr-hix/mohr/cardreader/internal/tlv"
	"github.com/mohr-hix/mohr/keys"
)

// KeySlot names one of a profile's keys.
type KeySlot string

// Key slots of the medical-council card (and the PIV slots Mohr uses).
const (
	SlotSign KeySlot = "sign" // council signing key; PIV 9C
	SlotAuth KeySlot = "auth" // council authentication key; PIV 9A
)

// CouncilProfile locates the medical-council card application and its objects.
type CouncilProfile struct {
	AID          []byte
	HolderFile   uint16
	SignCertFile uint16
	AuthCertFile uint16
	PINRef       byte
	SignKeyRef   byte
	AuthKeyRef   byte
	// AlgRef is the algorithm reference sent in MSE:SET (ECDSA P-256 over a host-computed hash).
	AlgRef byte
}

// DefaultCouncilProfile returns the profile docs/cards.md documents.
func DefaultCouncilProfile() CouncilProfile {
	return CouncilProfile{
		AID:          append([]byte(nil), cardfmt.CouncilAID...),
		HolderFile:   cardfmt.FIDHolder,
		SignCertFile: cardfmt.FIDSignCert,
		AuthCertFile: cardfmt.FIDAuthCert,
		PINRef:       cardfmt.PINRef,
		SignKeyRef:   cardfmt.KeySign,
		AuthKeyRef:   cardfmt.KeyAuth,
		AlgRef:       cardfmt.AlgECDSAP256,
	}
}

// CouncilCard is the medical-council card application on a connected card.
type CouncilCard struct {
	card *Card
	prof CouncilProfile
}

// Council selects the medical-council application on c with profile p. It returns ErrNotFound if the
// card does not carry it.
func Council(ctx context.Context, c *Card, p CouncilProfile) (*CouncilCard, error) {
	if _, err := c.selectAID(ctx, p.AID); err != nil {
		return nil, err
	}
	return &CouncilCard{card: c, prof: p}, nil
}

func (cc *CouncilCard) slot(s KeySlot) (keyRef byte, certFile uint16, err error) {
	switch s {
	case SlotSign:
		return cc.prof.SignKeyRef, cc.prof.SignCertFile, nil
	case SlotAuth:
		return cc.prof.AuthKeyRef, cc.prof.AuthCertFile, nil
	}
	return 0, 0, fmt.Errorf("%w: council key slot %q", ErrNotFound, s)
}

// inApp runs fn in a transaction after selecting the application, so that no other application's
// commands (or a changed current EF) come between.
func (cc *CouncilCard) inApp(ctx context.Context, fn func(ctx context.Context) error) error {
	return cc.card.Transaction(ctx, func(ctx context.Context) error {
		if _, err := cc.card.selectAID(ctx, cc.prof.AID); err != nil {
			return err
		}
		return fn(ctx)
	})
}

// ReadHolder reads the physician's data: council number, national code, names and specialty.
func (cc *CouncilCard) ReadHolder(ctx context.Context) (*Holder, error) {
	var h *Holder
	err := cc.inApp(ctx, func(ctx context.Context) error {
		b, err := cc.card.readEF(ctx, cc.prof.HolderFile)
		if err != nil {
			return err
		}
		h, err = ParseHolder(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	h.Profile = ProfileCouncil
	return h, nil
}

// Certificate reads the certificate of slot s.
func (cc *CouncilCard) Certificate(ctx context.Context, s KeySlot) (*x509.Certificate, error) {
	_, fid, err := cc.slot(s)
	if err != nil {
		return nil, err
	}
	var cert *x509.Certificate
	err = cc.inApp(ctx, func(ctx context.Context) (err error) {
		cert, err = cc.card.readCertificate(ctx, fid)
		return err
	})
	return cert, err
}

// Certificates reads the signing and the authentication certificate, in that order.
func (cc *CouncilCard) Certificates(ctx context.Context) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	err := cc.inApp(ctx, func(ctx context.Context) error {
		for _, fid := range []uint16{cc.prof.SignCertFile, cc.prof.AuthCertFile} {
			c, err := cc.card.readCertificate(ctx, fid)
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// VerifyPIN presents pin once (VERIFY, ISO/IEC 7816-4 §7.5.6). A wrong PIN gives *AuthError with the
// tries left; a blocked PIN gives ErrPINBlocked.
func (cc *CouncilCard) VerifyPIN(ctx context.Context, pin []byte) error {
	return cc.inApp(ctx, func(ctx context.Context) error { return cc.card.verifyPIN(ctx, cc.prof.PINRef, pin) })
}

// PINRetries returns the tries left without spending one (-1: already verified in this card session).
func (cc *CouncilCard) PINRetries(ctx context.Context) (int, error) {
	var n int
	err := cc.inApp(ctx, func(ctx context.Context) (err error) {
		n, err = cc.card.pinRetries(ctx, cc.prof.PINRef)
		return err
	})
	return n, err
}

// PublicKey reads the public key of slot s (GENERATE ASYMMETRIC KEY PAIR with P1 = '81', read the
// existing public key; ISO/IEC 7816-8 §5.1).
func (cc *CouncilCard) PublicKey(ctx context.Context, s KeySlot) (*ecdsa.PublicKey, error) {
	ref, _, err := cc.slot(s)
	if err != nil {
		return nil, err
	}
	var pub *ecdsa.PublicKey
	err = cc.inApp(ctx, func(ctx context.Context) (err error) {
		pub, err = cc.readPublic(ctx, ref)
		return err
	})
	return pub, err
}

func (cc *CouncilCard) readPublic(ctx context.Context, ref byte) (*ecdsa.PublicKey, error) {
	r, err := cc.card.Transmit(ctx, Command{INS: 0x47, P1: 0x81, Data: tlv.Encode(0xB6, tlv.Encode(0x84, []byte{ref})), Ne: 256})
	if err != nil {
		return nil, fmt.Errorf("cardreader: read public key: %w", err)
	}
	return parseECPublicKey(r.Data)
}

// SigningKey returns the on-card key of slot SlotSign as a crypto.Signer; see Key.
func (cc *CouncilCard) SigningKey(ctx context.Context, pin keys.PINFunc) (crypto.Signer, error) {
	return cc.Key(ctx, SlotSign, pin)
}

// PINPolicy says when a card key asks for the PIN, like piv-go's PIN policies.
type PINPolicy int

const (
	// PINPolicyAlways sends VERIFY before every signature: each Sign asks the PIN callback once. It is
	// what a "PIN always" key needs (the council card without comfort signatures, PIV 9C).
	PINPolicyAlways PINPolicy = iota
	// PINPolicyOnce relies on the card's security status: Sign first sends MSE:SET and PSO: COMPUTE
	// DIGITAL SIGNATURE, and only when the card answers 6982 (security status not satisfied, ISO/IEC
	// 7816-4 §5.6) asks the PIN callback once, sends VERIFY and PSO again. A wrong PIN is never retried.
	// With a card in comfort-signature mode (docs/cards.md) one VERIFY then covers many signatures; a
	// caller that must not present the PIN again gives a callback that returns an error.
	PINPolicyOnce
)

// Key returns the on-card key of slot s with PINPolicyAlways; see KeyWithPolicy.
func (cc *CouncilCard) Key(ctx context.Context, s KeySlot, pin keys.PINFunc) (crypto.Signer, error) {
	return cc.KeyWithPolicy(ctx, s, pin, PINPolicyAlways)
}

// KeyWithPolicy returns the on-card key of slot s. It reads the slot's certificate and the key's public
// half and refuses a certificate that does not hold that key (keys.ErrKeyMismatch). Each Sign runs, in one
// transaction, SELECT, then (PINPolicyAlways) VERIFY with a PIN asked from pin, MSE:SET (ISO/IEC 7816-4
// §7.5.11, digital signature template 'B6' with key reference '84' and algorithm reference '80') and PSO:
// COMPUTE DIGITAL SIGNATURE (ISO/IEC 7816-8 §11.4, P1-P2 = '9E9A', the hash as data); with PINPolicyOnce
// the VERIFY comes only after the card refused the PSO with 6982. Signatures are verified before they are
// returned (keys.Verifying).
func (cc *CouncilCard) KeyWithPolicy(ctx context.Context, s KeySlot, pin keys.PINFunc, policy PINPolicy) (crypto.Signer, error) {
	return cc.key(ctx, s, pin, policy, true)
}

// UncertifiedKey returns the on-card key of slot s with PINPolicyAlways without reading or checking the
// slot's certificate: the key GenerateKey just made, whose certificate does not exist yet, so that it can
// sign its own certificate request (proof of possession, RFC 2986 §3). Certificate() is nil.
func (cc *CouncilCard) UncertifiedKey(ctx context.Context, s KeySlot, pin keys.PINFunc) (crypto.Signer, error) {
	return cc.key(ctx, s, pin, PINPolicyAlways, false)
}

func (cc *CouncilCard) key(ctx context.Context, s KeySlot, pin keys.PINFunc, policy PINPolicy, certified bool) (crypto.Signer, error) {
	ref, fid, err := cc.slot(s)
	if err != nil {
		return nil, err
	}
	if policy != PINPolicyAlways && policy != PINPolicyOnce {
		return nil, fmt.Errorf("cardreader: unknown PIN policy %d", policy)
	}
	k := &cardKey{card: cc.card, pin: pin, prompt: fmt.Sprintf("PIN of the medical-council card in %q", cc.card.reader)}
	err = cc.inApp(ctx, func(ctx context.Context) (err error) {
		if !certified {
			k.pub, err = cc.readPublic(ctx, ref)
			return err
		}
		if k.cert, err = cc.card.readCertificate(ctx, fid); err != nil {
			return err
		}
		if k.pub, err = cc.readPublic(ctx, ref); err != nil {
			return err
		}
		return checkCert(k.pub, k.cert)
	})
	if err != nil {
		return nil, err
	}
	bits := k.pub.Curve.Params().BitSize
	pso := func(ctx context.Context, digest []byte) ([]byte, error) {
		r, err := cc.card.Transmit(ctx, Command{INS: 0x2A, P1: 0x9E, P2: 0x9A, Data: digest, Ne: 256})
		if err != nil {
			return nil, fmt.Errorf("cardreader: compute digital signature: %w", err)
		}
		return plainToDER(bits, r.Data)
	}
	if policy == PINPolicyOnce {
		k.signOnce = func(ctx context.Context, digest []byte) ([]byte, error) {
			if _, err := cc.card.selectAID(ctx, cc.prof.AID); err != nil {
				return nil, err
			}
			if err := cc.mseSet(ctx, ref); err != nil {
				return nil, err
			}
			sig, err := pso(ctx, digest)
			if !errors.Is(err, ErrSecurityStatus) {
				return sig, err
			}
			err = withPIN(ctx, k.pin, k.prompt, func(p []byte) error {
				if err := cc.card.verifyPIN(ctx, cc.prof.PINRef, p); err != nil {
					return err
				}
				sig, err = pso(ctx, digest)
				return err
			})
			return sig, err
		}
		return keys.Verifying(k), nil
	}
	k.sign = func(ctx context.Context, pin, digest []byte) (sig []byte, err error) {
		if _, err := cc.card.selectAID(ctx, cc.prof.AID); err != nil {
			return nil, err
		}
		if err := cc.card.verifyPIN(ctx, cc.prof.PINRef, pin); err != nil {
			return nil, err
		}
		defer cc.endSecurity(ctx, &err)
		if err := cc.mseSet(ctx, ref); err != nil {
			return nil, err
		}
		return pso(ctx, digest)
	}
	return keys.Verifying(k), nil
}

// endSecurity ends a transaction that verified the PIN for one operation (a PIN-always signature, key
// generation, a certificate write) with a logout, still inside the transaction, so the card's security status
// does not outlive it: no other PC/SC client on the workstation can sign with a PIN that was presented for
// Mohr, whatever the card does after a PSO (a real card may keep the PIN verified until reset). A failed
// logout replaces a nil *errp: the card may still be open. The context is not the caller's, so a cancelled
// operation still logs out.
func (cc *CouncilCard) endSecurity(_ context.Context, errp *error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cc.card.Transmit(ctx, Command{INS: 0x20, P1: 0xFF, P2: cc.prof.PINRef}); err != nil && *errp == nil {
		*errp = fmt.Errorf("cardreader: logout after the operation: %w", err)
	}
}

// Logout resets the PIN's verification status (VERIFY with P1 = 'FF' and no data, ISO/IEC 7816-4:2013
// §11.5.6), which ends a comfort-signature state on the card. It spends no PIN try.
func (cc *CouncilCard) Logout(ctx context.Context) error {
	return cc.inApp(ctx, func(ctx context.Context) error {
		if _, err := cc.card.Transmit(ctx, Command{INS: 0x20, P1: 0xFF, P2: cc.prof.PINRef}); err != nil {
			return fmt.Errorf("cardreader: logout: %w", err)
		}
		return nil
	})
}

// ComfortCounter reads the comfort-signature counter (GET DATA, ISO/IEC 7816-4 §7.4.2, of the proprietary
// data object 'DF20': signatures left in this card session, then signatures one VERIFY allows). A card
// without comfort signatures answers ErrNotFound (6A88) or ErrNotSupported.
func (cc *CouncilCard) ComfortCounter(ctx context.Context) (left, perVerify int, err error) {
	err = cc.inApp(ctx, func(ctx context.Context) error {
		r, err := cc.card.Transmit(ctx, Command{INS: 0xCA, P1: 0xDF, P2: 0x20, Ne: 256})
		if err != nil {
			return fmt.Errorf("cardreader: comfort counter: %w", err)
		}
		v, ok, terr := tlv.Find(r.Data, 0xDF20)
		if terr != nil || !ok || len(v) != 2 {
			return fmt.Errorf("%w: comfort counter", ErrMalformed)
		}
		left, perVerify = int(v[0]), int(v[1])
		return nil
	})
	return left, perVerify, err
}

// mseSet sets the digital signature template for key ref (MSE:SET, P1-P2 = '41B6').
func (cc *CouncilCard) mseSet(ctx context.Context, ref byte) error {
	crt := tlv.Append(tlv.Encode(0x84, []byte{ref}), 0x80, []byte{cc.prof.AlgRef})
	if _, err := cc.card.Transmit(ctx, Command{INS: 0x22, P1: 0x41, P2: 0xB6, Data: crt}); err != nil {
		return fmt.Errorf("cardreader: manage security environment: %w", err)
	}
	return nil
}

// GenerateKey makes a new P-256 key pair in slot s on the card (GENERATE ASYMMETRIC KEY PAIR, ISO/IEC
// 7816-8 §5.1, P1 = '80') after VERIFY with a PIN from pin, and returns its public half for a CSR; the
// private key never leaves the card. The slot's old key is gone, and its certificate no longer matches
// until WriteCertificate stores the new one.
func (cc *CouncilCard) GenerateKey(ctx context.Context, s KeySlot, pin keys.PINFunc) (*ecdsa.PublicKey, error) {
	ref, _, err := cc.slot(s)
	if err != nil {
		return nil, err
	}
	var pub *ecdsa.PublicKey
	err = cc.inApp(ctx, func(ctx context.Context) error {
		return withPIN(ctx, pin, "PIN to generate a key on the medical-council card", func(p []byte) (err error) {
			if err := cc.card.verifyPIN(ctx, cc.prof.PINRef, p); err != nil {
				return err
			}
			defer cc.endSecurity(ctx, &err)
			crt := tlv.Encode(0xB6, tlv.Append(tlv.Encode(0x84, []byte{ref}), 0x80, []byte{cc.prof.AlgRef}))
			r, err := cc.card.Transmit(ctx, Command{INS: 0x47, P1: 0x80, Data: crt, Ne: 256})
			if err != nil {
				return fmt.Errorf("cardreader: generate key: %w", err)
			}
			pub, err = parseECPublicKey(r.Data)
			return err
		})
	})
	return pub, err
}

// WriteCertificate stores cert in slot s's certificate file (UPDATE BINARY) after VERIFY with a PIN from
// pin. It refuses a certificate whose key is not the slot's key on the card.
func (cc *CouncilCard) WriteCertificate(ctx context.Context, s KeySlot, pin keys.PINFunc, cert *x509.Certificate) error {
	ref, fid, err := cc.slot(s)
	if err != nil {
		return err
	}
	return cc.inApp(ctx, func(ctx context.Context) error {
		pub, err := cc.readPublic(ctx, ref)
		if err != nil {
			return err
		}
		if err := checkCert(pub, cert); err != nil {
			return err
		}
		return withPIN(ctx, pin, "PIN to write a certificate to the medical-council card", func(p []byte) (err error) {
			if err := cc.card.verifyPIN(ctx, cc.prof.PINRef, p); err != nil {
				return err
			}
			defer cc.endSecurity(ctx, &err)
			return cc.card.writeEF(ctx, fid, cert.Raw)
		})
	})
}
