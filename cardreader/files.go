package cardreader

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/mohr-hix/mohr/keys"
)

// maxFileSize bounds what readBinary collects from one elementary file.
const maxFileSize = 32 * 1024

// selectAID selects an application by its AID (SELECT, ISO/IEC 7816-4 §7.1.1, P1 = '04'), returning the
// FCI or application property template.
func (c *Card) selectAID(ctx context.Context, aid []byte) (Response, error) {
	r, err := c.Transmit(ctx, Command{INS: 0xA4, P1: 0x04, P2: 0x00, Data: aid, Ne: 256})
	if err != nil {
		return r, fmt.Errorf("cardreader: select application %X: %w", aid, err)
	}
	return r, nil
}

// selectEF selects an elementary file under the current DF by file identifier (P1 = '02', P2 = '0C': no
// response data).
func (c *Card) selectEF(ctx context.Context, fid uint16) error {
	if _, err := c.Transmit(ctx, Command{INS: 0xA4, P1: 0x02, P2: 0x0C, Data: []byte{byte(fid >> 8), byte(fid)}}); err != nil {
		return fmt.Errorf("cardreader: select file %04X: %w", fid, err)
	}
	return nil
}

// readEF selects the EF fid and reads it whole with READ BINARY (ISO/IEC 7816-4 §7.2.3), offset in
// P1-P2 (15 bits). It stops at the first short answer, at 6282 (end of file) or at 6B00 past the end.
func (c *Card) readEF(ctx context.Context, fid uint16) ([]byte, error) {
	if err := c.selectEF(ctx, fid); err != nil {
		return nil, err
	}
	chunk := 256
	if c.extended {
		chunk = 4096
	}
	var out []byte
	for {
		if len(out) > maxFileSize || len(out) > 0x7FFF {
			return nil, fmt.Errorf("%w: file %04X larger than %d bytes", ErrMalformed, fid, maxFileSize)
		}
		off := len(out)
		r, err := c.Transmit(ctx, Command{INS: 0xB0, P1: byte(off >> 8), P2: byte(off), Ne: chunk})
		var se *StatusError
		switch {
		case err == nil:
		case errors.As(err, &se) && se.SW == 0x6282:
			return append(out, r.Data...), nil
		case errors.As(err, &se) && se.SW == 0x6B00 && off > 0:
			return out, nil
		default:
			return nil, fmt.Errorf("cardreader: read file %04X: %w", fid, err)
		}
		out = append(out, r.Data...)
		if len(r.Data) < chunk {
			return out, nil
		}
	}
}

// writeEF selects the EF fid and writes data from offset 0 with UPDATE BINARY (ISO/IEC 7816-4 §7.2.5) in
// parts of at most 255 bytes.
func (c *Card) writeEF(ctx context.Context, fid uint16, data []byte) error {
	if len(data) > 0x7FFF {
		return fmt.Errorf("cardreader: %d bytes do not fit an EF", len(data))
	}
	if err := c.selectEF(ctx, fid); err != nil {
		return err
	}
	for off := 0; off < len(data); off += 255 {
		end := min(off+255, len(data))
		if _, err := c.Transmit(ctx, Command{INS: 0xD6, P1: byte(off >> 8), P2: byte(off), Data: data[off:end]}); err != nil {
			return fmt.Errorf("cardreader: write file %04X: %w", fid, err)
		}
	}
	return nil
}

// readCertificate reads a DER certificate from the EF fid; trailing padding after the DER is ignored.
func (c *Card) readCertificate(ctx context.Context, fid uint16) (*x509.Certificate, error) {
	b, err := c.readEF(ctx, fid)
	if err != nil {
		return nil, err
	}
	return parseCertificate(b)
}

// parseCertificate parses one DER certificate from the front of b (a card EF is often larger than
// its content).
func parseCertificate(b []byte) (*x509.Certificate, error) {
	n, err := derLength(b)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(b[:n])
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrMalformed, err)
	}
	return cert, nil
}

// derLength returns the length of the DER SEQUENCE at the front of b, header included.
func derLength(b []byte) (int, error) {
	if len(b) < 2 || b[0] != 0x30 {
		if len(b) == 0 || allBytes(b, 0xFF) || allBytes(b, 0x00) {
			return 0, fmt.Errorf("%w: no certificate in file", ErrNotFound)
		}
		return 0, fmt.Errorf("%w: not a DER SEQUENCE", ErrMalformed)
	}
	l, hdr := int(b[1]), 2
	if l&0x80 != 0 {
		n := l & 0x7F
		if n == 0 || n > 3 || len(b) < 2+n {
			return 0, fmt.Errorf("%w: DER length", ErrMalformed)
		}
		l = 0
		for _, x := range b[2 : 2+n] {
			l = l<<8 | int(x)
		}
		hdr += n
	}
	if l > len(b)-hdr {
		return 0, fmt.Errorf("%w: DER of %d bytes in %d", ErrMalformed, l+hdr, len(b))
	}
	return hdr + l, nil
}

func allBytes(b []byte, v byte) bool {
	for _, x := range b {
		if x != v {
			return false
		}
	}
	return true
}

// verifyPIN presents pin for reference ref with VERIFY (ISO/IEC 7816-4 §7.5.6; SP 800-73-4 Part 2 §3.2.1),
// padded with 'FF' to 8 bytes. The padded copy is zeroed before return. It does not retry.
func (c *Card) verifyPIN(ctx context.Context, ref byte, pin []byte) error {
	if len(pin) < 4 || len(pin) > 8 {
		return ErrPINFormat
	}
	var buf [8]byte
	defer clear(buf[:])
	n := copy(buf[:], pin)
	for i := n; i < 8; i++ {
		buf[i] = 0xFF
	}
	_, err := c.Transmit(ctx, Command{INS: 0x20, P1: 0x00, P2: ref, Data: buf[:]})
	if err != nil {
		return fmt.Errorf("cardreader: verify PIN: %w", err)
	}
	return nil
}

// pinRetries asks the retry counter with an empty VERIFY (ISO/IEC 7816-4 §7.5.6: no data field). It
// returns -1 when the PIN is already verified in this session (the card does not say how many tries remain).
func (c *Card) pinRetries(ctx context.Context, ref byte) (int, error) {
	_, err := c.Transmit(ctx, Command{INS: 0x20, P1: 0x00, P2: ref})
	var ae *AuthError
	switch {
	case err == nil:
		return -1, nil
	case errors.As(err, &ae):
		return ae.Retries, nil
	case errors.Is(err, ErrPINBlocked):
		return 0, nil
	}
	return 0, fmt.Errorf("cardreader: PIN retry counter: %w", err)
}

// withPIN asks pin for a PIN, runs fn with it and zeroes the PIN afterwards. The PIN is asked once: a wrong
// PIN is reported, never retried.
func withPIN(ctx context.Context, pin keys.PINFunc, prompt string, fn func(pin []byte) error) error {
	if pin == nil {
		return fmt.Errorf("%w: no PIN callback", ErrSecurityStatus)
	}
	p, err := pin(ctx, prompt)
	if err != nil {
		return fmt.Errorf("cardreader: PIN callback: %w", err)
	}
	defer clear(p)
	return fn(p)
}
