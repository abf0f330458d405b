package offline

import (
	"bytes"
	"context"
	"errors"
	"image"
	"testing"
	"time"
)

// TestBase45Vectors are the examples of RFC 9285 §4.3 and §4.4.
func TestBase45Vectors(t *testing.T) {
	for _, v := range []struct{ in, out string }{
		{"AB", "BB8"}, {"Hello!!", "%69 VD92EX0"}, {"base-45", "UJCLQE7W581"}, {"ietf!", "QED8WEX0"}, {"", ""},
	} {
		if got := EncodeBase45([]byte(v.in)); got != v.out {
			t.Errorf("encode %q = %q, want %q", v.in, got, v.out)
		}
		if got, err := DecodeBase45(v.out); err != nil || string(got) != v.in {
			t.Errorf("decode %q = %q, %v", v.out, got, err)
		}
	}
	for _, bad := range []string{"A", "GGW", "ZZ", "ab", "BB8B", ":::", "BB\x00"} { // GGW = 65536; ZZ = 1610 > 255
		if _, err := DecodeBase45(bad); err == nil {
			t.Errorf("decode %q accepted", bad)
		}
	}
}

// FuzzBase45: decoding then encoding gives the input back (one encoding per byte string), and encoding any
// bytes decodes to them.
func FuzzBase45(f *testing.F) {
	for _, s := range []string{"BB8", "%69 VD92EX0", "UJCLQE7W581", "QED8WEX0", "GGW", "FGW", "ZZ", "U5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeBase45(s)
		if err == nil && EncodeBase45(b) != s {
			t.Fatalf("%q decodes to % x which encodes to %q", s, b, EncodeBase45(b))
		}
		back, err := DecodeBase45(EncodeBase45([]byte(s)))
		if err != nil || !bytes.Equal(back, []byte(s)) {
			t.Fatalf("round trip of % x: %v", s, err)
		}
	})
}

// FuzzPayload: a payload that parses re-encodes to the same bytes (canonical, no malleability).
func FuzzPayload(f *testing.F) {
	p := &Payload{Version: 1, ID: make([]byte, 16), Issued: 1772359200, Patient: "0499370899", Prescriber: "123456",
		Medicines:     []Medicine{{Code: "J01CA04", Dosage: "1 capsule every 8 hours", Quantity: 20, Unit: "capsule"}},
		ContentSHA256: make([]byte, 32), SignatureSHA256: make([]byte, 32)}
	b, err := p.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePayload(b)
		if err != nil {
			return
		}
		again, err := p.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("payload does not round-trip: %v", err)
		}
	})
}

// FuzzBundleBody: a bundle body that parses re-encodes to the same bytes.
func FuzzBundleBody(f *testing.F) {
	fx := newFixture(f)
	in := fx.bundleInput(t0)
	in.Revoked = []Revoked{{Issuer: fx.pki.Intermediate, Serial: fx.doc.Cert.SerialNumber, RevokedAt: t0}}
	signed, err := MakeBundle(context.Background(), in, fx.seal)
	if err != nil {
		f.Fatal(err)
	}
	msg, err := DecodeCOSE(signed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(msg.Payload)
	f.Fuzz(func(t *testing.T, b []byte) {
		bb, err := parseBundleBody(b, [32]byte{})
		if err != nil {
			return
		}
		if bb.NextUpdate.Before(bb.Issued) || len(bb.Roots) == 0 {
			t.Fatal("invalid bundle accepted")
		}
		var body bundleBody
		if err := unmarshalCanonical(b, &body); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzVerifyText: any text gives a report and never a panic; only the genuine text passes.
func FuzzVerifyText(f *testing.F) {
	fx := newFixture(f)
	_, text := fx.signed(f, fx.prescription(f, 2), fx.doc.Key)
	b := fx.bundle(f, fx.bundleInput(t0))
	f.Add(text)
	f.Add(Prefix + "BB8")
	f.Fuzz(func(t *testing.T, s string) {
		res := Verify(s, b, t0.Add(time.Hour))
		if res == nil || res.Report == nil || res.Report.Indication == "" {
			t.Fatal("no report")
		}
		if res.Report.Passed() && s != text {
			raw1, _ := DecodeText(s, b.Intermediates)
			raw2, _ := DecodeText(text, b.Intermediates)
			if !bytes.Equal(raw1, raw2) {
				t.Fatalf("a different COSE message passed")
			}
		}
	})
}

// FuzzReadQRFile: any bytes given as an image (the verification page's upload, `mohr qr verify FILE`) are
// read without a panic; an image whose header declares more than MaxImagePixels is refused with
// ErrImageTooLarge before its pixels are decoded; a clean code reads back exactly.
func FuzzReadQRFile(f *testing.F) {
	text := Prefix + "6BFOXN%TS3DH0YOJ58S S-W5HDC *M0II5XHC9B5G2+$N IOP-IA%NFQGRJPC%OQHIZC4.OI1RM8ZA.A5:S9MKN4NN3F85QNCY0O%0VZ001HOC9JU0D0HT0HB2PL/IB*09B9LW4T*8+DCMH0LDK2%K:XFE70*LP$V25$0Q:J:4MO1P0%0L0HD+9E/HY+4J6TH48S%4K.GJ2PT3QY:GQ3TE2I+-CPHN6D7LLK*Y0ZU-CSB3"
	png, _, err := QRPNG(text, 3)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(png)
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Add([]byte{0xff, 0xd8, 0xff, 0xe0})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ReadQRFile(b)
		if cfg, _, cerr := image.DecodeConfig(bytes.NewReader(b)); cerr == nil && int64(cfg.Width)*int64(cfg.Height) > MaxImagePixels && !errors.Is(err, ErrImageTooLarge) {
			t.Fatalf("%d x %d image not refused: %v", cfg.Width, cfg.Height, err)
		}
		if bytes.Equal(b, png) && got != text {
			t.Fatalf("the clean code reads %q, %v", got, err)
		}
	})
}
