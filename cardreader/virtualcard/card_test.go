package virtualcard

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"math/big"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mohr-hix/mohr/cardreader/internal/cardfmt"
)

func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func swOf(r []byte) string { return hex.EncodeToString(r[len(r)-2:]) }

func TestCouncilAPDUs(t *testing.T) {
	c, err := New(Config{Profile: ProfileCouncil, PIN: []byte("1234"), MaxTries: 2})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name, apdu, sw string
	}{
		{"PSO before select", "002A9E9A20" + strings.Repeat("11", 32), "6985"},
		{"select unknown AID", "00A4040005A000000099", "6a82"},
		{"select council", "00A4040007F04D4F4852020100", "9000"},
		{"read without EF", "00B0000010", "6986"},
		{"select holder EF", "00A4020C020101", "9000"},
		{"read holder", "00B0000004", "9000"},
		{"retry counter", "0020008100", "63c2"},
		{"empty VERIFY", "00200081", "63c2"},
		{"MSE sign key", "002241B606840182800111", "9000"},
		{"PSO without PIN", "002A9E9A20" + strings.Repeat("11", 32), "6982"},
		{"wrong PIN", "002000810830303030FFFFFFFF", "63c1"},
		{"right PIN", "002000810831323334FFFFFFFF", "9000"},
		{"MSE unknown key", "002241B606840199800111", "6a88"},
		{"unknown INS", "00FF000000", "6d00"},
		{"bad CLA", "80A4040000", "6e00"},
		{"truncated", "00A404", "6700"},
		{"bad Lc", "00A4040005A0", "6700"},
		{"extended on a short card", "00B00000000100", "6700"},
	}
	for _, s := range steps {
		r := c.Process(hx(s.apdu))
		if got := swOf(r); got != strings.ToLower(s.sw) {
			t.Errorf("%s: SW %s, want %s (%X)", s.name, got, s.sw, r)
		}
	}
	// PIN always: one signature per VERIFY, and the signature verifies.
	c.Process(hx("002241B606840182800111"))
	digest := sha256.Sum256([]byte("x"))
	c.Process(hx("002000810831323334FFFFFFFF"))
	r := c.Process(append(append(hx("002A9E9A20"), digest[:]...), 0x00))
	if swOf(r) != "9000" || len(r) != 66 {
		t.Fatalf("PSO: %X", r)
	}
	pub := c.keys[cardfmt.KeySign].Public().(*ecdsa.PublicKey)
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(r[:32]), new(big.Int).SetBytes(r[32:64])) {
		t.Fatal("plain signature does not verify")
	}
	if r := c.Process(append(append(hx("002A9E9A20"), digest[:]...), 0x00)); swOf(r) != "6982" {
		t.Fatalf("second PSO without VERIFY: %X", r)
	}
	// Two wrong PINs block the card; the right one then fails too.
	c.Process(hx("002000810830303030FFFFFFFF"))
	if r := c.Process(hx("002000810830303030FFFFFFFF")); swOf(r) != "6983" {
		t.Fatalf("blocking: %X", r)
	}
	if r := c.Process(hx("002000810831323334FFFFFFFF")); swOf(r) != "6983" {
		t.Fatalf("right PIN when blocked: %X", r)
	}
}

func TestStateFileSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "card.json")
	c, err := New(Config{Profile: ProfileCouncil, StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	c.Process(hx("00A4040007F04D4F48520201"))
	c.Process(hx("002000810830303030FFFFFFFF")) // one wrong PIN
	c2, err := New(Config{Profile: ProfileCouncil, StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	if c2.TriesLeft() != 2 {
		t.Fatalf("tries left after restart = %d", c2.TriesLeft())
	}
	if !c2.Certificate(cardfmt.KeySign).Equal(c.Certificate(cardfmt.KeySign)) {
		t.Fatal("certificate changed across restart")
	}
	if !bytes.Equal(c2.IssuerCertificate().Raw, c.IssuerCertificate().Raw) {
		t.Fatal("issuer changed across restart")
	}
	if _, err := New(Config{Profile: ProfilePIV, StatePath: path}); err == nil {
		t.Fatal("state of a council card loaded as PIV")
	}
}

func FuzzProcess(f *testing.F) {
	for _, s := range []string{"00A4040007F04D4F48520201", "00B0000000", "102A9E9A01AA", "00C0000000", "00CB3FFF055C035FC10A00", "0087119C067C0482008100", "00470080038401FF", "00", "00CADF2000", "0020FF81"} {
		f.Add(hx(s))
	}
	cards := map[string]*Card{}
	for _, p := range []string{ProfileCouncil, ProfileNationalID, ProfilePIV} {
		c, err := New(Config{Profile: p, Extended: p == ProfilePIV, PIN: []byte("1234"), MaxTries: 15})
		if err != nil {
			f.Fatal(err)
		}
		cards[p] = c
	}
	comfort, err := New(Config{Profile: ProfileCouncil, PIN: []byte("1234"), MaxTries: 15, ComfortSignatures: 5})
	if err != nil {
		f.Fatal(err)
	}
	cards["comfort"] = comfort
	f.Fuzz(func(t *testing.T, apdu []byte) {
		for _, c := range cards {
			// Select first, so the fuzzer reaches the application's commands.
			c.Process(append([]byte{0, 0xA4, 4, 0, byte(len(c.aid()))}, c.aid()...))
			r := c.Process(apdu)
			if len(r) < 2 {
				t.Fatalf("response %X without status word", r)
			}
		}
		if n := comfort.ComfortLeft(); n < 0 || n > 5 {
			t.Fatalf("comfort counter %d outside 0..5", n)
		}
	})
}
