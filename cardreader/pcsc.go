package cardreader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ebfe/scard"
)

// Context is a PC/SC resource-manager context (SCardEstablishContext). One Context may serve many
// cards; Release it when done.
type Context struct {
	sc *scard.Context
}

// Establish connects to the PC/SC daemon. It returns ErrNoService when pcscd is not running.
func Establish(ctx context.Context) (*Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sc, err := scard.EstablishContext()
	if err != nil {
		return nil, pcscError("establish context", err)
	}
	return &Context{sc: sc}, nil
}

// Release frees the PC/SC context. Cards connected through it should be closed first.
func (c *Context) Release() error {
	if err := c.sc.Release(); err != nil {
		return pcscError("release context", err)
	}
	return nil
}

// ListReaders returns the names of the readers PC/SC knows; none is not an error.
func (c *Context) ListReaders(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r, err := c.sc.ListReaders()
	if errors.Is(err, scard.ErrNoReadersAvailable) {
		return nil, nil
	}
	if err != nil {
		return nil, pcscError("list readers", err)
	}
	return r, nil
}

// ReaderStatus is a reader and whether it holds a card.
type ReaderStatus struct {
	Reader  string `json:"reader"`
	Present bool   `json:"present"`
	ATR     []byte `json:"atr,omitempty"`
}

// Status returns the state of every reader, without waiting.
func (c *Context) Status(ctx context.Context) ([]ReaderStatus, error) {
	readers, err := c.ListReaders(ctx)
	if err != nil || len(readers) == 0 {
		return nil, err
	}
	rs := make([]scard.ReaderState, len(readers))
	for i, r := range readers {
		rs[i] = scard.ReaderState{Reader: r, CurrentState: scard.StateUnaware}
	}
	if err := c.sc.GetStatusChange(rs, 0); err != nil && !errors.Is(err, scard.ErrTimeout) {
		return nil, pcscError("reader status", err)
	}
	out := make([]ReaderStatus, len(rs))
	for i, s := range rs {
		out[i] = ReaderStatus{Reader: s.Reader, Present: s.EventState&scard.StatePresent != 0}
		if out[i].Present {
			out[i].ATR = append([]byte(nil), s.Atr...)
		}
	}
	return out, nil
}

// WaitForCard blocks until reader holds a card, or ctx is done.
func (c *Context) WaitForCard(ctx context.Context, reader string) error {
	return c.waitFor(ctx, reader, true)
}

// WaitForRemoval blocks until reader holds no card, or ctx is done.
func (c *Context) WaitForRemoval(ctx context.Context, reader string) error {
	return c.waitFor(ctx, reader, false)
}

// waitFor polls SCardGetStatusChange in short slices so that cancellation never depends on
// SCardCancel reaching a blocked call.
func (c *Context) waitFor(ctx context.Context, reader string, present bool) error {
	rs := []scard.ReaderState{{Reader: reader, CurrentState: scard.StateUnaware}}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := c.sc.GetStatusChange(rs, 250*time.Millisecond)
		switch {
		case err == nil:
		case errors.Is(err, scard.ErrTimeout):
			continue
		case errors.Is(err, scard.ErrUnknownReader), errors.Is(err, scard.ErrReaderUnavailable):
			return fmt.Errorf("%w: %q", ErrNoReader, reader)
		default:
			return pcscError("wait for card", err)
		}
		st := rs[0].EventState
		if st&scard.StateUnknown != 0 || st&scard.StateIgnore != 0 {
			return fmt.Errorf("%w: %q", ErrNoReader, reader)
		}
		if (st&scard.StatePresent != 0) == present && st&scard.StateMute == 0 {
			return nil
		}
		rs[0].CurrentState = st &^ scard.StateChanged
	}
}

// Connect opens a shared connection to the card in reader (T=1 or T=0, as the card offers).
func (c *Context) Connect(ctx context.Context, reader string) (*Card, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, err := c.sc.Connect(reader, scard.ShareShared, scard.ProtocolAny)
	if err != nil {
		return nil, pcscError("connect", err)
	}
	p := &pcscCard{h: h}
	st, err := h.Status()
	if err != nil {
		h.Disconnect(scard.LeaveCard)
		return nil, pcscError("card status", err)
	}
	card := newCard(p, reader, st.Atr)
	card.pcsc = p
	return card, nil
}

// Close disconnects from the card, leaving it powered for other applications.
func (c *Card) Close() error {
	if c.pcsc == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.pcsc.h.Disconnect(scard.LeaveCard); err != nil {
		return pcscError("disconnect", err)
	}
	return nil
}

// Present reports whether the card this connection was made to is still in the reader.
func (c *Card) Present(ctx context.Context) (bool, error) {
	if c.pcsc == nil {
		return true, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	st, err := c.pcsc.h.Status()
	if err != nil {
		if errors.Is(pcscError("", err), ErrCardRemoved) {
			return false, nil
		}
		return false, pcscError("card status", err)
	}
	return st.State&scard.Absent == 0, nil
}

// pcscCard is the PC/SC transport of a Card.
type pcscCard struct {
	h *scard.Card
}

func (p *pcscCard) transmit(cmd []byte) ([]byte, error) {
	if len(cmd) < 4 {
		return nil, fmt.Errorf("cardreader: command APDU of %d bytes", len(cmd))
	}
	rsp, err := p.h.Transmit(cmd)
	switch {
	case err == nil && len(rsp) >= 2:
		return rsp, nil
	case err == nil:
		err = fmt.Errorf("%w: %d bytes, no status word", ErrMalformed, len(rsp))
	default:
		err = pcscError("transmit", err)
		if errors.Is(err, ErrCardRemoved) {
			return nil, err
		}
	}
	// The vpcd driver and some USB readers report a card pulled mid-APDU as a communication error or an
	// empty answer; pcscd notices the removal at its next poll (about 400 ms). Look for it before
	// reporting the error as it is.
	for i := 0; i < 12; i++ {
		st, serr := p.h.Status()
		if serr != nil && errors.Is(pcscError("", serr), ErrCardRemoved) || serr == nil && st.State&scard.Absent != 0 {
			return nil, fmt.Errorf("%w (%v)", ErrCardRemoved, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

func (p *pcscCard) begin() error {
	if err := p.h.BeginTransaction(); err != nil {
		return pcscError("begin transaction", err)
	}
	return nil
}

func (p *pcscCard) end() {
	p.h.EndTransaction(scard.LeaveCard) // an error here only means the card is gone; the next call says so.
}

// pcscError maps PC/SC return codes to the sentinels callers branch on and keeps the code in the message.
func pcscError(op string, err error) error {
	var code scard.Error
	if !errors.As(err, &code) {
		return fmt.Errorf("cardreader: %s: %w", op, err)
	}
	var kind error
	switch code {
	case scard.ErrRemovedCard, scard.ErrNoSmartcard, scard.ErrUnpoweredCard:
		kind = ErrCardRemoved
	case scard.ErrResetCard:
		kind = ErrCardReset
	case scard.ErrNoService, scard.ErrServiceStopped, scard.ErrNoReadersAvailable:
		kind = ErrNoService
	case scard.ErrUnknownReader, scard.ErrReaderUnavailable:
		kind = ErrNoReader
	case scard.ErrCancelled:
		kind = context.Canceled
	default:
		return fmt.Errorf("cardreader: %s: pcsc: %w", op, err)
	}
	return fmt.Errorf("%w: %s: %v", kind, op, err)
}
