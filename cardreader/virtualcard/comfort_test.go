package virtualcard

import (
	"strings"
	"testing"
)

// TestComfortSignatures walks the comfort-signature policy of the council signing key APDU by APDU: the
// counter VERIFY sets, the re-SELECT that keeps it, and everything that clears it (counter out, logout,
// SELECT of another application, reset, wrong PIN).
func TestComfortSignatures(t *testing.T) {
	const (
		selectCouncil = "00A4040007F04D4F4852020100"
		selectOther   = "00A4040005A000000099"
		verifyOK      = "002000810831323334FFFFFFFF"
		verifyWrong   = "002000810830303030FFFFFFFF"
		logout        = "0020FF81"
		mse           = "002241B606840182800111"
		getComfort    = "00CADF2000"
	)
	pso := "002A9E9A20" + strings.Repeat("11", 32) + "00"
	c, err := New(Config{Profile: ProfileCouncil, PIN: []byte("1234"), MaxTries: 3, ComfortSignatures: 3})
	if err != nil {
		t.Fatal(err)
	}
	run := func(name, apdu, want string) []byte {
		t.Helper()
		r := c.Process(hx(apdu))
		if got := swOf(r); got != strings.ToLower(want) {
			t.Fatalf("%s: SW %s, want %s (%X)", name, got, want, r)
		}
		return r
	}
	run("select", selectCouncil, "9000")
	if r := run("counter before VERIFY", getComfort, "9000"); len(r) != 7 || r[3] != 0 || r[4] != 3 {
		t.Fatalf("counter answer %X, want DF20 02 00 03", r)
	}
	run("MSE", mse, "9000")
	run("PSO without VERIFY", pso, "6982")
	run("VERIFY", verifyOK, "9000")
	for i := 0; i < 3; i++ {
		run("re-select keeps the comfort state", selectCouncil, "9000")
		run("MSE", mse, "9000")
		run("comfort PSO", pso, "9000")
		if got := c.ComfortLeft(); got != 2-i {
			t.Fatalf("after %d signatures ComfortLeft = %d", i+1, got)
		}
	}
	run("PSO after the counter ran out", pso, "6982")
	if r := run("counter", getComfort, "9000"); r[3] != 0 {
		t.Fatalf("counter %X after running out", r)
	}

	clears := []struct {
		name string
		do   func()
	}{
		{"logout", func() { run("logout", logout, "9000") }},
		{"select another application", func() { run("select other", selectOther, "6a82"); run("select", selectCouncil, "9000") }},
		{"reset", func() { c.Reset(); run("select", selectCouncil, "9000") }},
		{"wrong PIN", func() { run("wrong PIN", verifyWrong, "63c2") }},
	}
	for _, cl := range clears {
		run("VERIFY", verifyOK, "9000")
		run("MSE", mse, "9000")
		run("comfort PSO", pso, "9000")
		cl.do()
		if c.ComfortLeft() != 0 {
			t.Fatalf("%s: ComfortLeft = %d", cl.name, c.ComfortLeft())
		}
		run("MSE", mse, "9000")
		run(cl.name+" ends the comfort state", pso, "6982")
	}
	if c.TriesLeft() != 2 {
		t.Fatalf("TriesLeft = %d; the logout must not spend a try", c.TriesLeft())
	}
}

// TestNoComfortByDefault checks that a card without ComfortSignatures stays "PIN always" and has no
// counter object.
func TestNoComfortByDefault(t *testing.T) {
	c, err := New(Config{Profile: ProfileCouncil, PIN: []byte("1234")})
	if err != nil {
		t.Fatal(err)
	}
	c.Process(hx("00A4040007F04D4F4852020100"))
	if r := c.Process(hx("00CADF2000")); swOf(r) != "6a88" {
		t.Fatalf("GET DATA DF20 without comfort: %X", r)
	}
	c.Process(hx("002000810831323334FFFFFFFF"))
	c.Process(hx("00A4040007F04D4F4852020100"))
	c.Process(hx("002241B606840182800111"))
	if r := c.Process(hx("002A9E9A20" + strings.Repeat("11", 32) + "00")); swOf(r) != "6982" {
		t.Fatalf("PSO after re-SELECT without comfort mode: %X, want 6982", r)
	}
	if _, err := New(Config{Profile: ProfileCouncil, ComfortSignatures: 256}); err == nil {
		t.Fatal("ComfortSignatures 256 accepted")
	}
}
