package cardreader

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/mohr-hix/mohr/cardreader/internal/cardfmt"
	"github.com/mohr-hix/mohr/cardreader/internal/tlv"
	"github.com/mohr-hix/mohr/keys"
)

// PIV key references (SP 800-73-4 Part 1 Table 4b) and the algorithm identifier for ECC P-256 (SP 800-78-4
// Table 6-2).
const (
	PIVKeyAuth   byte = 0x9A
	PIVKeySign   byte = 0x9C
	pivAlgP256   byte = 0x11
	pivPINRef         = cardfmt.PIVPINRef
	pivGetData        = 0xCB
	pivGenAuth        = 0x87
	pivMaxObject      = 8 * 1024
)

// PIVCard is the PIV Card Application (NIST SP 800-73-4) on a connected token.
type PIVCard struct {
	card *Card
}

// PIV selects the PIV Card Application (SP 800-73-4 Part 2 §3.1.1) on c. It returns ErrNotFound if the
// token has none.
func PIV(ctx context.Context, c *Card) (*PIVCard, error) {
	if _, err := c.selectAID(ctx, cardfmt.PIVAID); err != nil {
		return nil, err
	}
	return &PIVCard{card: c}, nil
}

func (p *PIVCard) inApp(ctx context.Context, fn func(ctx context.Context) error) error {
	return p.card.Transaction(ctx, func(ctx context.Context) error {
		if _, err := p.card.selectAID(ctx, cardfmt.PIVAID); err != nil {
			return err
		}
		return fn(ctx)
	})
}

// getData reads a PIV data object with GET DATA (SP 800-73-4 Part 2 §3.1.2): data '5C' tag list, answer
// '53' wrapping the object's content.
func (p *PIVCard) getData(ctx context.Context, tag uint32) ([]byte, error) {
	q := tlv.Encode(0x5C, []byte{byte(tag >> 16), byte(tag >> 8), byte(tag)})
	r, err := p.card.Transmit(ctx, Command{INS: pivGetData, P1: 0x3F, P2: 0xFF, Data: q, Ne: MaxNe})
	if err != nil {
		return nil, fmt.Errorf("cardreader: PIV get data %06X: %w", tag, err)
	}
	if len(r.Data) > pivMaxObject {
		return nil, fmt.Errorf("%w: PIV object of %d bytes", ErrMalformed, len(r.Data))
	}
	o, _, err := tlv.ReadOne(r.Data)
	if err != nil || o.Tag != 0x53 {
		return nil, fmt.Errorf("%w: PIV object %06X", ErrMalformed, tag)
	}
	return o.Value, nil
}

func pivCertTag(slot byte) (uint32, error) {
	switch slot {
	case PIVKeyAuth:
		return cardfmt.PIVTagCertAuth, nil
	case PIVKeySign:
		return cardfmt.PIVTagCertSign, nil
	case 0x9D:
		return cardfmt.PIVTagCertKM, nil
	case 0x9E:
		return cardfmt.PIVTagCertCard, nil
	}
	return 0, fmt.Errorf("%w: PIV slot %02X", ErrNotFound, slot)
}

// ParsePIVCertificate parses a PIV certificate object's content (SP 800-73-4 Part 1 Appendix A: '70'
// certificate, '71' CertInfo, 'FE' error detection code). A compressed certificate is not supported.
func ParsePIVCertificate(b []byte) (*x509.Certificate, error) {
	objs, err := tlv.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: PIV certificate object: %v", ErrMalformed, err)
	}
	var der []byte
	for _, o := range objs {
		switch o.Tag {
		case 0x70:
			der = o.Value
		case 0x71:
			if len(o.Value) > 0 && o.Value[0]&0x01 != 0 {
				return nil, fmt.Errorf("%w: compressed PIV certificate", ErrUnsupportedKey)
			}
		}
	}
	if der == nil {
		return nil, fmt.Errorf("%w: PIV certificate object without '70'", ErrMalformed)
	}
	return parseCertificate(der)
}

func (p *PIVCard) certificate(ctx context.Context, slot byte) (*x509.Certificate, error) {
	tag, err := pivCertTag(slot)
	if err != nil {
		return nil, err
	}
	b, err := p.getData(ctx, tag)
	if err != nil {
		return nil, err
	}
	return ParsePIVCertificate(b)
}

// Certificate reads the certificate of key reference slot (9A, 9C, 9D or 9E).
func (p *PIVCard) Certificate(ctx context.Context, slot byte) (*x509.Certificate, error) {
	var c *x509.Certificate
	err := p.inApp(ctx, func(ctx context.Context) (err error) {
		c, err = p.certificate(ctx, slot)
		return err
	})
	return c, err
}

// Certificates reads the certificates of slots 9A, 9C, 9D and 9E that are present, in that order.
func (p *PIVCard) Certificates(ctx context.Context) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	err := p.inApp(ctx, func(ctx context.Context) error {
		for _, s := range []byte{PIVKeyAuth, PIVKeySign, 0x9D, 0x9E} {
			c, err := p.certificate(ctx, s)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

// ReadHolder returns what a PIV token says about its holder: the card UUID from the CHUID (SP 800-73-4
// Part 1 §3.1.2, tag '34') as CardNumber and the name from the PIV authentication certificate.
func (p *PIVCard) ReadHolder(ctx context.Context) (*Holder, error) {
	h := &Holder{Profile: ProfilePIV}
	err := p.inApp(ctx, func(ctx context.Context) error {
		chuid, err := p.getData(ctx, cardfmt.PIVTagCHUID)
		if err != nil {
			return err
		}
		guid, ok, err := tlv.Find(chuid, 0x34)
		if err != nil {
			return fmt.Errorf("%w: CHUID: %v", ErrMalformed, err)
		}
		if ok {
			h.CardNumber = hex.EncodeToString(guid)
		}
		c, err := p.certificate(ctx, PIVKeyAuth)
		if err == nil {
			h.GivenName = c.Subject.CommonName
			if h.NationalCode = c.Subject.SerialNumber; len(h.NationalCode) > 6 && h.NationalCode[:6] == "IDCIR-" {
				h.NationalCode = h.NationalCode[6:]
			}
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// VerifyPIN presents the PIV Card Application PIN once (SP 800-73-4 Part 2 §3.2.1).
func (p *PIVCard) VerifyPIN(ctx context.Context, pin []byte) error {
	return p.inApp(ctx, func(ctx context.Context) error { return p.card.verifyPIN(ctx, pivPINRef, pin) })
}

// PINRetries returns the PIN tries left without spending one (-1: already verified).
func (p *PIVCard) PINRetries(ctx context.Context) (int, error) {
	var n int
	err := p.inApp(ctx, func(ctx context.Context) (err error) {
		n, err = p.card.pinRetries(ctx, pivPINRef)
		return err
	})
	return n, err
}

// SigningKey returns the 9C (digital signature) key; see Key.
func (p *PIVCard) SigningKey(ctx context.Context, pin keys.PINFunc) (crypto.Signer, error) {
	return p.Key(ctx, PIVKeySign, pin)
}

// Key returns the ECC P-256 key in slot as a crypto.Signer whose public key comes from the slot's
// certificate. Each Sign asks pin once and runs SELECT, VERIFY and GENERAL AUTHENTICATE (SP 800-73-4
// Part 2 §3.2.4: dynamic authentication template '7C' with '82' empty and '81' the hash) in one
// transaction; the signature is verified before it is returned, which also catches a certificate that
// does not belong to the key.
func (p *PIVCard) Key(ctx context.Context, slot byte, pin keys.PINFunc) (crypto.Signer, error) {
	cert, err := p.Certificate(ctx, slot)
	if err != nil {
		return nil, err
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve.Params().BitSize != 256 {
		return nil, fmt.Errorf("%w: PIV key %T", ErrUnsupportedKey, cert.PublicKey)
	}
	k := &cardKey{card: p.card, pub: pub, cert: cert, pin: pin,
		prompt: fmt.Sprintf("PIV PIN of the token in %q", p.card.reader)}
	k.sign = func(ctx context.Context, pinBytes, digest []byte) ([]byte, error) {
		if _, err := p.card.selectAID(ctx, cardfmt.PIVAID); err != nil {
			return nil, err
		}
		if err := p.card.verifyPIN(ctx, pivPINRef, pinBytes); err != nil {
			return nil, err
		}
		d := digest
		if len(d) > 32 { // P-256 uses the leftmost 256 bits of the hash (FIPS 186-4 §6.4).
			d = d[:32]
		}
		in := tlv.Encode(0x7C, tlv.Append(tlv.Encode(0x82, nil), 0x81, d))
		r, err := p.card.Transmit(ctx, Command{INS: pivGenAuth, P1: pivAlgP256, P2: slot, Data: in, Ne: 256})
		if err != nil {
			return nil, fmt.Errorf("cardreader: PIV general authenticate: %w", err)
		}
		t, _, err := tlv.ReadOne(r.Data)
		if err != nil || t.Tag != 0x7C {
			return nil, fmt.Errorf("%w: general authenticate response", ErrMalformed)
		}
		sig, ok, err := tlv.Find(t.Value, 0x82)
		if err != nil || !ok {
			return nil, fmt.Errorf("%w: general authenticate response without '82'", ErrMalformed)
		}
		return append([]byte(nil), sig...), nil
	}
	return keys.Verifying(k), nil
}
