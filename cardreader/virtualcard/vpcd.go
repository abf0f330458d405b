package virtualcard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// vpcd control bytes (vsmartcard vpcd protocol: 2-byte big-endian length, then the payload; a one-byte
// payload from the reader is a control).
const (
	vpcdPowerOff = 0x00
	vpcdPowerOn  = 0x01
	vpcdReset    = 0x02
	vpcdGetATR   = 0x04
)

// ConnectVPCD inserts the card into a vpcd reader: it dials pcscd's vpcd port (127.0.0.1:35963 is
// "Virtual PCD 00 00", :35964 "Virtual PCD 00 01") and answers the reader until ctx is done (then it
// returns nil, and the closed socket is a card removal for pcscd), until Remove or RemoveOn pulls the card
// (ErrRemoved), or until the connection fails. TCP_QUICKACK is set before every read: without it, delayed
// ACKs cost about 40 ms per APDU.
func (c *Card) ConnectVPCD(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("virtualcard: connect to vpcd: %w", err)
	}
	tcp := conn.(*net.TCPConn)
	tcp.SetNoDelay(true)
	raw, err := tcp.SyscallConn()
	if err != nil {
		conn.Close()
		return fmt.Errorf("virtualcard: %w", err)
	}
	c.connMu.Lock()
	c.conn, c.removed, c.removeOn = conn, false, -1
	c.connMu.Unlock()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	c.Reset()

	quickack := func() {
		raw.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
		})
	}
	var hdr [2]byte
	buf := make([]byte, 0, 4096)
	out := make([]byte, 0, 4096)
	for {
		quickack()
		err := func() error {
			if _, err := io.ReadFull(conn, hdr[:]); err != nil {
				return err
			}
			n := int(binary.BigEndian.Uint16(hdr[:]))
			buf = buf[:n]
			if _, err := io.ReadFull(conn, buf); err != nil {
				return err
			}
			var resp []byte
			if n == 1 {
				switch buf[0] {
				case vpcdPowerOff, vpcdPowerOn, vpcdReset:
					c.Reset()
					return nil // no reply
				case vpcdGetATR:
					resp = c.atr
				default:
					return nil
				}
			} else {
				if n >= 2 && c.shouldRemove(buf[1]) {
					return ErrRemoved
				}
				resp = c.Process(buf)
			}
			out = binary.BigEndian.AppendUint16(out[:0], uint16(len(resp)))
			out = append(out, resp...)
			_, err := conn.Write(out)
			return err
		}()
		if err == nil {
			continue
		}
		c.connMu.Lock()
		removed := c.removed || errors.Is(err, ErrRemoved)
		c.conn = nil
		c.connMu.Unlock()
		c.Reset() // out of the reader: no power, so no security status and no comfort signatures
		switch {
		case removed:
			return ErrRemoved
		case ctx.Err() != nil:
			return nil
		}
		return fmt.Errorf("virtualcard: vpcd connection: %w", err)
	}
}

// shouldRemove reports whether RemoveOn armed removal for ins, and disarms it.
func (c *Card) shouldRemove(ins byte) bool {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.removeOn == int(ins) {
		c.removeOn = -1
		c.removed = true
		return true
	}
	return false
}

// Remove pulls the card out of the reader now: the vpcd connection is closed.
func (c *Card) Remove() {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.removed = true
	if c.conn != nil {
		c.conn.Close()
	}
}

// RemoveOn pulls the card out when the next command with instruction byte ins arrives, before it is
// answered: for tests of a card removed in the middle of an operation (e.g. 0x2A, mid-signature).
func (c *Card) RemoveOn(ins byte) {
	c.connMu.Lock()
	c.removeOn = int(ins)
	c.connMu.Unlock()
}
