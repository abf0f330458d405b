package cardreader

import (
	"fmt"
)

// MaxNe asks the card for as many response bytes as it has: 256 in a short APDU, 65536 in an extended one
// (ISO/IEC 7816-4 §5.1: Le = '00' or '0000').
const MaxNe = 65536

// Command is a command APDU (ISO/IEC 7816-4 §5.1). Transmit chooses its encoding: short or extended
// length, and command chaining when the data field does not fit.
type Command struct {
	CLA, INS, P1, P2 byte
	// Data is the command data field (Nc = len(Data)); nil for none.
	Data []byte
	// Ne is the maximum number of response bytes expected: 0 means no Le field, MaxNe means "all".
	Ne int
}

// Response is a response APDU (ISO/IEC 7816-4 §5.1) after Transmit has collected every part of it.
type Response struct {
	Data []byte
	SW   uint16
}

// SW1 and SW2 return the two status bytes.
func (r Response) SW1() byte { return byte(r.SW >> 8) }

// SW2 returns the second status byte.
func (r Response) SW2() byte { return byte(r.SW) }

// ParseResponse splits a raw response APDU into data and status word. Fewer than two bytes, or a first
// status byte outside '61'..'6F' and '90'..'9F' (ISO/IEC 7816-4 §5.6), is malformed.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 2 {
		return Response{}, fmt.Errorf("%w: %d bytes, no status word", ErrMalformed, len(b))
	}
	n := len(b) - 2
	sw1 := b[n]
	if !(sw1 >= 0x61 && sw1 <= 0x6F || sw1 >= 0x90 && sw1 <= 0x9F) || sw1 == 0x60 {
		return Response{}, fmt.Errorf("%w: invalid SW1 %02X", ErrMalformed, sw1)
	}
	return Response{Data: b[:n:n], SW: uint16(sw1)<<8 | uint16(b[n+1])}, nil
}

// Marshal encodes c as a short APDU, or as an extended one when extended is true (ISO/IEC 7816-4 §5.1,
// cases 1 to 4). A short encoding must have at most 255 data bytes and Ne at most 256.
func (c Command) Marshal(extended bool) ([]byte, error) {
	nc := len(c.Data)
	if c.Ne < 0 || c.Ne > MaxNe {
		return nil, fmt.Errorf("cardreader: Ne %d out of range", c.Ne)
	}
	if !extended {
		if nc > 255 {
			return nil, fmt.Errorf("cardreader: %d data bytes need an extended APDU or chaining", nc)
		}
		b := make([]byte, 0, 4+1+nc+1)
		b = append(b, c.CLA, c.INS, c.P1, c.P2)
		if nc > 0 {
			b = append(b, byte(nc))
			b = append(b, c.Data...)
		}
		if c.Ne > 0 {
			b = append(b, byte(c.Ne)) // 256 encodes as '00'.
		}
		return b, nil
	}
	if nc > 65535 {
		return nil, fmt.Errorf("cardreader: %d data bytes exceed an extended APDU", nc)
	}
	b := make([]byte, 0, 4+3+nc+2)
	b = append(b, c.CLA, c.INS, c.P1, c.P2)
	if nc > 0 {
		b = append(b, 0, byte(nc>>8), byte(nc))
		b = append(b, c.Data...)
	}
	if c.Ne > 0 {
		if nc == 0 {
			b = append(b, 0)
		}
		b = append(b, byte(c.Ne>>8), byte(c.Ne)) // 65536 encodes as '0000'.
	}
	return b, nil
}

// ATRInfo is what Mohr reads from an answer-to-reset (ISO/IEC 7816-3 §8.2) and its historical bytes
// (ISO/IEC 7816-4 §8.1.1).
type ATRInfo struct {
	Historical []byte
	// Extended: the card capabilities (compact-TLV tag '7', third software function table byte b7)
	// announce extended Lc and Le fields.
	Extended bool
	// Chaining: the same byte's b8 announces command chaining.
	Chaining bool
}

// ParseATR reads the interface bytes of atr to find its historical bytes and the card capabilities
// they announce. A truncated ATR is malformed.
func ParseATR(atr []byte) (ATRInfo, error) {
	var info ATRInfo
	if len(atr) < 2 {
		return info, fmt.Errorf("%w: ATR of %d bytes", ErrMalformed, len(atr))
	}
	k := int(atr[1] & 0x0F)
	y := atr[1] >> 4
	i := 2
	for {
		for bit := byte(0); bit < 3; bit++ { // TAi, TBi, TCi
			if y&(1<<bit) != 0 {
				i++
			}
		}
		if y&0x08 == 0 {
			break
		}
		if i >= len(atr) {
			return info, fmt.Errorf("%w: truncated ATR", ErrMalformed)
		}
		y = atr[i] >> 4
		i++
	}
	if i+k > len(atr) {
		return info, fmt.Errorf("%w: truncated ATR historical bytes", ErrMalformed)
	}
	info.Historical = atr[i : i+k : i+k]
	h := info.Historical
	if len(h) == 0 || (h[0] != 0x80 && h[0] != 0x00) {
		return info, nil // no compact-TLV: assume short APDUs and chaining.
	}
	h = h[1:]
	for len(h) > 0 {
		tag, l := h[0]>>4, int(h[0]&0x0F)
		if 1+l > len(h) {
			break // a status indicator or garbage: stop, keep what we have.
		}
		if tag == 0x7 && l >= 3 {
			info.Chaining = h[3]&0x80 != 0
			info.Extended = h[3]&0x40 != 0
		}
		h = h[1+l:]
	}
	return info, nil
}
