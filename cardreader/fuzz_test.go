package cardreader

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/mohr-hix/mohr/cardreader/internal/tlv"
)

// Seeds live in testdata/fuzz/<FuzzName>/.

func FuzzParseResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		// Round trip: data || SW1 SW2 gives the input back.
		out := append(append([]byte(nil), r.Data...), r.SW1(), r.SW2())
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip %X -> %X", b, out)
		}
		// Appending to the data must not overwrite the status bytes of the input.
		_ = append(r.Data, 0xEE)
		if b[len(b)-2] != r.SW1() {
			t.Fatal("Data aliases the status word")
		}
	})
}

func FuzzParseATR(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseATR(b)
		if err == nil && len(info.Historical) > len(b) {
			t.Fatal("historical bytes longer than the ATR")
		}
	})
}

func FuzzParseHolder(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHolder(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if h.NationalCode != "" && len(h.NationalCode) != 10 {
			t.Fatalf("national code %q accepted", h.NationalCode)
		}
	})
}

func FuzzParsePIVCertificate(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParsePIVCertificate(b)
		if err == nil && c == nil {
			t.Fatal("nil certificate without error")
		}
	})
}

func FuzzParseECPublicKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseECPublicKey(b)
		if err == nil {
			if _, err := k.ECDH(); err != nil {
				t.Fatalf("invalid point accepted: %v", err)
			}
		}
	})
}

func FuzzParseURI(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		u2, err := ParseURI(u.String())
		if err != nil || u2 != u {
			t.Fatalf("round trip %q -> %q -> %+v, %v", s, u.String(), u2, err)
		}
	})
}

func FuzzTLV(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		objs, err := tlv.Parse(b)
		if err != nil {
			return
		}
		// Re-encoding with minimal lengths and parsing again gives the same objects.
		var enc []byte
		for _, o := range objs {
			enc = tlv.Append(enc, o.Tag, o.Value)
		}
		again, err := tlv.Parse(enc)
		if err != nil || len(again) != len(objs) {
			t.Fatalf("re-parse: %v (%d objects, want %d)", err, len(again), len(objs))
		}
		for i := range objs {
			if again[i].Tag != objs[i].Tag || !bytes.Equal(again[i].Value, objs[i].Value) {
				t.Fatalf("object %d changed", i)
			}
		}
	})
}

// FuzzTransmit feeds Transmit a hostile card: each answer is the next piece of the fuzz input (a length
// byte, then that many bytes). It must end with a response or an error, never panic or loop.
func FuzzTransmit(f *testing.F) {
	f.Fuzz(func(t *testing.T, script []byte, data []byte, ne uint16) {
		calls := 0
		tr := scripted(func(cmd []byte) ([]byte, error) {
			calls++
			if calls > maxResponseParts+4 {
				t.Fatal("Transmit does not stop")
			}
			if len(script) == 0 {
				return []byte{0x61, 0x00}, nil // a card that always has more
			}
			n := int(script[0])
			script = script[1:]
			n = min(n, len(script))
			r := script[:n]
			script = script[n:]
			return r, nil
		})
		c := newCard(tr, "fuzz", nil)
		if len(data) > 1024 {
			data = data[:1024]
		}
		r, err := c.Transmit(context.Background(), Command{INS: 0xB0, Data: data, Ne: int(ne) + 1})
		if err == nil && r.SW != 0x9000 {
			t.Fatalf("nil error with SW %04X", r.SW)
		}
	})
}
