package cardreader

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// transport sends one raw command APDU and returns the raw response APDU. The PC/SC connection and the
// replaying fake of the unit tests implement it.
type transport interface {
	transmit(cmd []byte) ([]byte, error)
}

// Limits that keep a hostile or broken card from making Transmit loop or allocate without end.
const (
	maxResponseParts = 512     // GET RESPONSE rounds for one command
	maxResponseBytes = 1 << 20 // bytes collected for one command
)

// TraceFunc, if set with SetTrace, sees every exchange Transmit makes (including GET RESPONSE and
// chained parts) with its round-trip time. It must not keep cmd: it may hold a PIN.
type TraceFunc func(ins byte, sw uint16, d time.Duration)

// Card is a connection to one card. Its methods are safe for concurrent use; each Transmit is atomic
// with respect to the others, and Transaction makes a sequence of them atomic at the card.
type Card struct {
	txMu     sync.Mutex // held for a Transaction
	mu       sync.Mutex // held for one Transmit
	tr       transport
	pcsc     *pcscCard // nil for test transports
	reader   string
	atr      []byte
	extended bool
	trace    TraceFunc
}

// Reader returns the name of the reader the card is in.
func (c *Card) Reader() string { return c.reader }

// ATR returns the card's answer-to-reset.
func (c *Card) ATR() []byte { return append([]byte(nil), c.atr...) }

// SetTrace installs fn (nil removes it). For benchmarks and diagnostics.
func (c *Card) SetTrace(fn TraceFunc) {
	c.mu.Lock()
	c.trace = fn
	c.mu.Unlock()
}

func newCard(tr transport, reader string, atr []byte) *Card {
	c := &Card{tr: tr, reader: reader, atr: append([]byte(nil), atr...)}
	if info, err := ParseATR(atr); err == nil {
		c.extended = info.Extended
	}
	return c
}

// Transmit sends cmd and returns the complete response, hiding ISO/IEC 7816-4 framing:
//   - a data field longer than 255 bytes goes as one extended APDU if the card announces extended length
//     in its ATR, and otherwise as a command chain (CLA b5 set on all but the last part, ISO/IEC 7816-4 §5.1.1.1);
//   - 61xx (more data available) is followed by GET RESPONSE (ISO/IEC 7816-4 §7.6.1) until the card is done;
//   - 6Cxx (wrong Le, exact length xx) re-sends the command once with Le = xx.
//
// The error is nil only for 9000; otherwise it is a *StatusError or *AuthError for the status word (the
// Response still holds the data and status), or ErrCardRemoved, ErrMalformed or ctx.Err().
func (c *Card) Transmit(ctx context.Context, cmd Command) (Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.transmitLocked(ctx, cmd)
}

func (c *Card) transmitLocked(ctx context.Context, cmd Command) (Response, error) {
	data := cmd.Data
	if len(data) > 255 && !c.extended {
		// Command chaining: every part but the last has CLA b5 set and carries 255 bytes.
		for len(data) > 255 {
			part := Command{CLA: cmd.CLA | 0x10, INS: cmd.INS, P1: cmd.P1, P2: cmd.P2, Data: data[:255]}
			r, err := c.exchange(ctx, part, false)
			if err != nil {
				return r, err
			}
			if r.SW != 0x9000 {
				return r, statusError(r.SW, cmd.INS)
			}
			data = data[255:]
		}
		cmd.Data = data
	}
	ext := c.extended && (len(cmd.Data) > 255 || cmd.Ne > 256)
	if !ext && cmd.Ne > 256 {
		cmd.Ne = 256
	}
	r, err := c.exchange(ctx, cmd, ext)
	if err != nil {
		return r, err
	}
	if r.SW1() == 0x6C { // wrong Le: re-send once with the exact length, framed as the first time (a data
		// field over 255 bytes only fits an extended APDU; ISO/IEC 7816-4 §5.1 keeps Lc and Le in one form).
		cmd.Ne = int(r.SW2())
		if cmd.Ne == 0 {
			cmd.Ne = 256
		}
		if r, err = c.exchange(ctx, cmd, ext); err != nil {
			return r, err
		}
		if r.SW1() == 0x6C {
			return r, fmt.Errorf("%w: 6Cxx twice", ErrMalformed)
		}
	}
	if r.SW1() != 0x61 {
		return r, statusError(r.SW, cmd.INS)
	}
	out := append([]byte(nil), r.Data...)
	for parts := 0; r.SW1() == 0x61; parts++ {
		if parts >= maxResponseParts || len(out) > maxResponseBytes {
			return Response{}, fmt.Errorf("%w: response does not end", ErrMalformed)
		}
		ne := int(r.SW2())
		if ne == 0 {
			ne = 256
		}
		gr := Command{CLA: cmd.CLA & 0x03, INS: 0xC0, Ne: ne} // GET RESPONSE on the same logical channel
		if r, err = c.exchange(ctx, gr, false); err != nil {
			return r, err
		}
		out = append(out, r.Data...)
	}
	r.Data = out
	return r, statusError(r.SW, cmd.INS)
}

// exchange sends one APDU and parses its answer.
func (c *Card) exchange(ctx context.Context, cmd Command, extended bool) (Response, error) {
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	raw, err := cmd.Marshal(extended)
	if err != nil {
		return Response{}, err
	}
	var start time.Time
	if c.trace != nil {
		start = time.Now()
	}
	rb, err := c.tr.transmit(raw)
	clear(raw) // it may hold a PIN
	if err != nil {
		return Response{}, err
	}
	r, err := ParseResponse(rb)
	if err != nil {
		return Response{}, err
	}
	if c.trace != nil {
		c.trace(cmd.INS, r.SW, time.Since(start))
	}
	return r, nil
}

// Transaction runs fn with exclusive use of the card (SCardBeginTransaction .. SCardEndTransaction), so
// that no other application's APDUs come between fn's (for example between VERIFY and the signature).
func (c *Card) Transaction(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if c.pcsc != nil {
		if err := c.pcsc.begin(); err != nil {
			return err
		}
		defer c.pcsc.end()
	}
	return fn(ctx)
}
