package p256

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"testing"

	"filippo.io/nistec"
)

// TestP256Verifier checks the per-key fast path against crypto/ecdsa: every valid signature is
// accepted (so the fast path is really used, not silently bypassed), and a changed digest, a changed
// bit of the signature, another key's signature, and malformed encodings are all refused.
func TestP256Verifier(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v := NewVerifier(&priv.PublicKey)
	if v == nil {
		t.Fatal("no verifier for a P-256 key")
	}
	for i := range 50 {
		d := sha256.Sum256([]byte{byte(i)})
		digest := d[:]
		if i%5 == 0 {
			d := sha512.Sum384([]byte{byte(i)}) // longer than the order: truncated
			digest = d[:]
		}
		sig, err := ecdsa.SignASN1(rand.Reader, priv, digest)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Verify(digest, sig) {
			t.Fatalf("%d: valid signature refused", i)
		}
		bad := append([]byte(nil), digest...)
		bad[0] ^= 1
		if v.Verify(bad, sig) {
			t.Fatalf("%d: signature accepted for another digest", i)
		}
		for _, pos := range []int{len(sig) / 3, len(sig) - 1, 1} {
			c := append([]byte(nil), sig...)
			c[pos] ^= 0x04
			if v.Verify(digest, c) {
				t.Fatalf("%d: corrupted signature (byte %d) accepted", i, pos)
			}
		}
		os, _ := ecdsa.SignASN1(rand.Reader, other, digest)
		if v.Verify(digest, os) {
			t.Fatalf("%d: another key's signature accepted", i)
		}
		if v.Verify(digest, append(sig, 0)) || v.Verify(digest, sig[:len(sig)-1]) || v.Verify(digest, nil) {
			t.Fatalf("%d: malformed encoding accepted", i)
		}
	}
	// r or s of 0 is refused; keys that are not P-256 get no fast path.
	d := sha256.Sum256([]byte("zero"))
	for _, z := range [][]byte{{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01}, {0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00}} {
		if v.Verify(d[:], z) {
			t.Fatalf("signature %x accepted", z)
		}
	}
	if NewVerifier(nil) != nil {
		t.Fatal("verifier for nil key")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if NewVerifier(&p384.PublicKey) != nil {
		t.Fatal("P-256 verifier for a P-384 key")
	}
}

// FuzzP256Verifier checks that the fast path never accepts what crypto/ecdsa refuses.
func FuzzP256Verifier(f *testing.F) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v := NewVerifier(&priv.PublicKey)
	d := sha256.Sum256([]byte("seed"))
	sig, _ := ecdsa.SignASN1(rand.Reader, priv, d[:])
	f.Add(d[:], sig)
	f.Add(d[:], []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, digest, sig []byte) {
		if v.Verify(digest, sig) && !ecdsa.VerifyASN1(&priv.PublicKey, digest, sig) {
			t.Fatalf("fast path accepts a signature crypto/ecdsa refuses: %x / %x", digest, sig)
		}
	})
}

// TestP256VerifierMulQ checks the table multiplication against nistec's variable-base one for random
// scalars and for those whose signed digits borrow all the way up (0xff.., 0x80.., n-1, 2^256-1).
func TestP256VerifierMulQ(t *testing.T) {
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v := NewVerifier(&priv.PublicKey)
	if v == nil {
		t.Fatal("no verifier")
	}
	ep, _ := priv.PublicKey.ECDH()
	q, err := nistec.NewP256Point().SetBytes(ep.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var scalars [][32]byte
	var u [32]byte
	scalars = append(scalars, u) // zero: the point at infinity
	u[31] = 1
	scalars = append(scalars, u)
	for _, b := range []byte{0x80, 0x81, 0x7f, 0xff} {
		for i := range u {
			u[i] = b
		}
		scalars = append(scalars, u)
	}
	p256N.FillBytes(u[:])
	u[31]-- // n-1
	scalars = append(scalars, u)
	for range 200 {
		rand.Read(u[:])
		scalars = append(scalars, u)
	}
	for _, u := range scalars {
		want, err := nistec.NewP256Point().ScalarMult(q, u[:])
		if err != nil {
			t.Fatal(err)
		}
		if got := v.mulQ(&u); string(got.Bytes()) != string(want.Bytes()) {
			t.Fatalf("mulQ(%x) differs from ScalarMult", u)
		}
	}
}
