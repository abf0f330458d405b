package cardreader

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/keys"
)

var update = flag.Bool("update", false, "re-record testdata/exchanges/*.txt from the virtual card")

// exchange is one recorded C-APDU/R-APDU pair.
type recorded struct{ cmd, resp []byte }

// replay is a transport that plays back a transcript and fails on any command that differs from it.
type replay struct {
	t    *testing.T
	name string
	ex   []recorded
	i    int
}

func (r *replay) transmit(cmd []byte) ([]byte, error) {
	r.t.Helper()
	if r.i >= len(r.ex) {
		r.t.Fatalf("%s: unexpected command %X after the transcript ended", r.name, cmd)
	}
	e := r.ex[r.i]
	r.i++
	if !bytes.Equal(e.cmd, cmd) {
		r.t.Fatalf("%s: exchange %d: command %X, transcript has %X", r.name, r.i, cmd, e.cmd)
	}
	return e.resp, nil
}

// recorder sends commands to a virtual card in-process and keeps the transcript.
type recorder struct {
	vc *virtualcard.Card
	ex []recorded
}

func (r *recorder) transmit(cmd []byte) ([]byte, error) {
	resp := r.vc.Process(cmd)
	r.ex = append(r.ex, recorded{append([]byte(nil), cmd...), resp})
	return resp, nil
}

// Transcript format: "> C-APDU" and "< R-APDU" lines in hex, '#' comments.
func readTranscript(t *testing.T, path string) []recorded {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ex []recorded
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		b, err := hex.DecodeString(strings.ReplaceAll(line[1:], " ", ""))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch line[0] {
		case '>':
			ex = append(ex, recorded{cmd: b})
		case '<':
			if len(ex) == 0 || ex[len(ex)-1].resp != nil {
				t.Fatalf("%s: response without command", path)
			}
			ex[len(ex)-1].resp = b
		}
	}
	return ex
}

func writeTranscript(t *testing.T, path, comment string, ex []recorded) {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n# Recorded from cardreader/virtualcard with: go test ./cardreader -run TestRecordedExchanges -update\n", comment)
	for _, e := range ex {
		fmt.Fprintf(&b, "> %X\n< %X\n", e.cmd, e.resp)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

var fixedDigest = sha256.Sum256([]byte("recorded"))

// scenarios drive a card through the framing cases; the same code records and replays.
var scenarios = []struct {
	name     string
	comment  string
	profile  string
	extended bool
	run      func(t *testing.T, c *Card)
}{
	{"council-sign-short", "Council card, short APDUs: SELECT, READ BINARY of certificates (6282 at the end), VERIFY, MSE:SET, PSO:CDS", virtualcard.ProfileCouncil, false,
		func(t *testing.T, c *Card) {
			ctx := context.Background()
			cc, err := Council(ctx, c, DefaultCouncilProfile())
			if err != nil {
				t.Fatal(err)
			}
			s, err := cc.SigningKey(ctx, func(context.Context, string) ([]byte, error) { return []byte("123456"), nil })
			if err != nil {
				t.Fatal(err)
			}
			sig, err := s.Sign(nil, fixedDigest[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), fixedDigest[:], sig) {
				t.Fatal("signature does not verify")
			}
		}},
	{"piv-get-response", "PIV, short APDUs: GET DATA of a certificate answered in parts, 61xx and GET RESPONSE", virtualcard.ProfilePIV, false,
		func(t *testing.T, c *Card) {
			ctx := context.Background()
			p, err := PIV(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Certificate(ctx, PIVKeySign); err != nil {
				t.Fatal(err)
			}
		}},
	{"piv-extended", "PIV, extended APDUs: the certificate in one answer", virtualcard.ProfilePIV, true,
		func(t *testing.T, c *Card) {
			ctx := context.Background()
			p, err := PIV(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Certificate(ctx, PIVKeySign); err != nil {
				t.Fatal(err)
			}
		}},
	{"council-chaining", "Council card, short APDUs: UPDATE BINARY of 600 bytes sent as a command chain (CLA 10)", virtualcard.ProfileCouncil, false,
		func(t *testing.T, c *Card) {
			ctx := context.Background()
			cc, err := Council(ctx, c, DefaultCouncilProfile())
			if err != nil {
				t.Fatal(err)
			}
			if err := c.verifyPIN(ctx, cc.prof.PINRef, []byte("123456")); err != nil {
				t.Fatal(err)
			}
			if err := c.selectEF(ctx, cc.prof.AuthCertFile); err != nil {
				t.Fatal(err)
			}
			data := bytes.Repeat([]byte{0xA5}, 600)
			if _, err := c.Transmit(ctx, Command{INS: 0xD6, Data: data}); err != nil {
				t.Fatal(err)
			}
			got, err := c.readEF(ctx, cc.prof.AuthCertFile)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, %v", len(got), err)
			}
		}},
}

func TestRecordedExchanges(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "exchanges", sc.name+".txt")
			atr := atrFor(t, sc.extended)
			if *update {
				vc, err := virtualcard.New(virtualcard.Config{Profile: sc.profile, Extended: sc.extended})
				if err != nil {
					t.Fatal(err)
				}
				rec := &recorder{vc: vc}
				sc.run(t, newCard(rec, "recorder", atr))
				writeTranscript(t, path, sc.comment, rec.ex)
				return
			}
			rp := &replay{t: t, name: path, ex: readTranscript(t, path)}
			sc.run(t, newCard(rp, "replay", atr))
			if rp.i != len(rp.ex) {
				t.Fatalf("%d of %d exchanges used", rp.i, len(rp.ex))
			}
		})
	}
}

func atrFor(t *testing.T, extended bool) []byte {
	vc, err := virtualcard.New(virtualcard.Config{Profile: virtualcard.ProfilePIV, Extended: extended})
	if err != nil {
		t.Fatal(err)
	}
	return vc.ATR()
}

// scripted is a transport that answers from a function, for hostile-card cases.
type scripted func(cmd []byte) ([]byte, error)

func (f scripted) transmit(cmd []byte) ([]byte, error) { return f(cmd) }

func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestTransmitFraming(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		cmd      Command
		exchange []recorded // expected commands and the answers given
		wantData string
		wantErr  error
	}{
		{"6Cxx resend", Command{INS: 0xCA, P1: 0x00, P2: 0x6E, Ne: 256},
			[]recorded{{h("00CA006E00"), h("6C05")}, {h("00CA006E05"), h("0102030405 9000")}}, "0102030405", nil},
		{"61xx chain", Command{INS: 0xCB, P1: 0x3F, P2: 0xFF, Data: h("5C035FC10A"), Ne: 256},
			[]recorded{{h("00CB3FFF055C035FC10A00"), h("AABB 6102")}, {h("00C0000002"), h("CCDD 6101")}, {h("00C0000001"), h("EE 9000")}}, "AABBCCDDEE", nil},
		{"61xx ending in error", Command{INS: 0xB0, Ne: 256},
			[]recorded{{h("00B0000000"), h("AA 6101")}, {h("00C0000001"), h("6A82")}}, "", ErrNotFound},
		{"6Cxx twice", Command{INS: 0xCA, Ne: 1},
			[]recorded{{h("00CA000001"), h("6C05")}, {h("00CA000005"), h("6C06")}}, "", ErrMalformed},
		{"security status", Command{INS: 0x2A, P1: 0x9E, P2: 0x9A, Data: h("00"), Ne: 256},
			[]recorded{{h("002A9E9A010000"), h("6982")}}, "", ErrSecurityStatus},
		{"blocked", Command{INS: 0x20, P2: 0x81},
			[]recorded{{h("00200081"), h("6983")}}, "", keys.ErrPINBlocked},
		{"wrong PIN", Command{INS: 0x20, P2: 0x81},
			[]recorded{{h("00200081"), h("63C2")}}, "", keys.ErrPINIncorrect},
		{"one byte", Command{INS: 0x20, P2: 0x81},
			[]recorded{{h("00200081"), h("90")}}, "", ErrMalformed},
		{"bad SW1", Command{INS: 0x20, P2: 0x81},
			[]recorded{{h("00200081"), h("1234")}}, "", ErrMalformed},
	}
	// An extended APDU answered 6Cxx is re-sent extended: its 300-byte data field fits no short APDU.
	long := bytes.Repeat([]byte{0xAB}, 300)
	extCmd := func(le string) []byte { return h("002A9E9A 00012C" + strings.Repeat("AB", 300) + le) }
	extended := []struct {
		name     string
		cmd      Command
		exchange []recorded
		wantData string
	}{
		{"6Cxx resend extended", Command{INS: 0x2A, P1: 0x9E, P2: 0x9A, Data: long, Ne: 256},
			[]recorded{{extCmd("0100"), h("6C40")}, {extCmd("0040"), h(strings.Repeat("11", 64) + " 9000")}}, strings.Repeat("11", 64)},
	}
	for _, tt := range extended {
		t.Run(tt.name, func(t *testing.T) {
			rp := &replay{t: t, name: tt.name, ex: tt.exchange}
			c := newCard(rp, "fake", nil)
			c.extended = true
			r, err := c.Transmit(ctx, tt.cmd)
			if err != nil || fmt.Sprintf("%X", r.Data) != tt.wantData {
				t.Fatalf("data %X, err %v", r.Data, err)
			}
			if rp.i != len(rp.ex) {
				t.Fatalf("%d of %d exchanges used", rp.i, len(rp.ex))
			}
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rp := &replay{t: t, name: tt.name, ex: tt.exchange}
			c := newCard(rp, "fake", nil)
			r, err := c.Transmit(ctx, tt.cmd)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && fmt.Sprintf("%X", r.Data) != tt.wantData {
				t.Fatalf("data = %X, want %s", r.Data, tt.wantData)
			}
			if rp.i != len(rp.ex) {
				t.Fatalf("%d of %d exchanges used", rp.i, len(rp.ex))
			}
		})
	}
}

func TestTransmitEndlessCard(t *testing.T) {
	// A card that always has "more data" must not keep Transmit forever.
	n := 0
	c := newCard(scripted(func([]byte) ([]byte, error) { n++; return h("00 6100"), nil }), "fake", nil)
	if _, err := c.Transmit(context.Background(), Command{INS: 0xB0, Ne: 256}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v", err)
	}
	if n > maxResponseParts+2 {
		t.Fatalf("%d exchanges", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Transmit(ctx, Command{INS: 0xB0}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestMarshal(t *testing.T) {
	tests := []struct {
		cmd  Command
		ext  bool
		want string
	}{
		{Command{INS: 0xA4, P1: 4}, false, "00A40400"},
		{Command{INS: 0xB0, Ne: 256}, false, "00B0000000"},
		{Command{INS: 0xB0, Ne: MaxNe}, true, "00B00000000000"},
		{Command{INS: 0xD6, Data: h("0102")}, false, "00D600000201 02"},
		{Command{INS: 0xD6, Data: h("0102"), Ne: 3}, true, "00D6000000000201020003"},
	}
	for _, tt := range tests {
		got, err := tt.cmd.Marshal(tt.ext)
		if err != nil || fmt.Sprintf("%X", got) != strings.ReplaceAll(tt.want, " ", "") {
			t.Errorf("%+v: %X, %v, want %s", tt.cmd, got, err, tt.want)
		}
	}
	if _, err := (Command{Data: make([]byte, 256)}).Marshal(false); err == nil {
		t.Error("256 data bytes in a short APDU")
	}
}

func TestParseATR(t *testing.T) {
	for _, tt := range []struct {
		atr           string
		ext, chaining bool
	}{
		{"3B8501807300 00C0 B6", true, true},
		{"3B85018073000080 76", false, true},
		{"3BFD1300008131FE158073C0218157597562694B657940", false, true}, // a token announcing chaining only
		{"3B00", false, false},
	} {
		info, err := ParseATR(h(tt.atr))
		if err != nil || info.Extended != tt.ext || info.Chaining != tt.chaining {
			t.Errorf("%s: %+v, %v", tt.atr, info, err)
		}
	}
}
