// Package p256 verifies ECDSA P-256 signatures of one fixed public key with a table of its multiples: the
// verify-after-sign of busy keys (hsm.Key, keys.Verifying), at about 0.4 of crypto/ecdsa's cost (docs/hsm.md).
package p256

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"math/big"

	"filippo.io/nistec"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Verifier checks ECDSA P-256 signatures (FIPS 186-5 section 6.4.2) for one fixed public key Q
// with a table of multiples of Q made once per key.
//
// Why by hand: verification is x(u1·G + u2·Q) mod n == r. crypto/ecdsa computes u2·Q with a
// variable-base multiplication (256 doublings) on every call, which the profile shows is about 2/3
// of the cost. Q never changes for a signing key, so, as for G, its multiples can be precomputed and u2·Q
// becomes at most 33 additions (signed 8-bit windows). No library offers ECDSA verification with a
// per-key table; the point arithmetic itself is nistec's (the same code as Go's
// crypto/internal/fips140/nistec).
//
// It is only a fast path: it accepts a signature only when the equation holds; anything else goes
// to crypto/ecdsa, whose answer is final (hsm.Key.verify, keys.Verifying).
type Verifier struct {
	// t[i][j-1] = j·256^i·Q for j = 1..128: u2 is written in 33 signed base-256 digits in
	// [-128, 128] (a digit above 128 borrows from the next one), so each window needs the 128
	// positive multiples only; negative ones are negated on the fly. 33·128 points of 96 bytes:
	// about 400 KB per key, values without pointers, so the garbage collector does not scan them.
	t [p256Windows][128]nistec.P256Point
}

const p256Windows = 33

var p256N = elliptic.P256().Params().N

// NewVerifier returns nil when pub is not a usable P-256 key or the table fails its self-check.
func NewVerifier(pub *ecdsa.PublicKey) *Verifier {
	if pub == nil || pub.Curve != elliptic.P256() {
		return nil
	}
	ep, err := pub.ECDH()
	if err != nil {
		return nil
	}
	q, err := nistec.NewP256Point().SetBytes(ep.Bytes())
	if err != nil {
		return nil
	}
	v := &Verifier{}
	base := nistec.NewP256Point().Set(q)
	for i := range v.t {
		for j := range v.t[i] {
			// A fresh point per entry: with the purego build a P256Point holds pointers, which
			// entries must not share.
			v.t[i][j] = *nistec.NewP256Point()
			if j == 0 {
				v.t[i][0].Set(base)
			} else {
				v.t[i][j].Add(&v.t[i][j-1], base)
			}
		}
		base.Double(&v.t[i][127]) // 2·128·256^i·Q = 256^(i+1)·Q
	}
	// Self-check against nistec's own variable-base multiplication: random scalars, and ones whose
	// digits are all 128 or all -1 (0x80.., 0xff..), which reach the extreme table entries.
	var u [32]byte
	for k := range 4 {
		switch k {
		case 0:
			for i := range u {
				u[i] = 0x80
			}
		case 1:
			for i := range u {
				u[i] = 0xff
			}
		default:
			rand.Read(u[:])
		}
		u[0] &= 0x7f // below n
		want, err := nistec.NewP256Point().ScalarMult(q, u[:])
		if err != nil || string(v.mulQ(&u).Bytes()) != string(want.Bytes()) {
			return nil
		}
	}
	return v
}

// mulQ returns u·Q for the 32-byte big-endian scalar u.
func (v *Verifier) mulQ(u *[32]byte) *nistec.P256Point {
	acc := nistec.NewP256Point() // the point at infinity
	neg := nistec.NewP256Point()
	carry := 0
	for i := range p256Windows {
		d := carry
		if i < 32 {
			d += int(u[31-i])
		}
		carry = 0
		if d > 128 {
			d, carry = d-256, 1
		}
		switch {
		case d > 0:
			acc.Add(acc, &v.t[i][d-1])
		case d < 0:
			acc.Add(acc, neg.Negate(&v.t[i][-d-1]))
		}
	}
	return acc
}

// verify reports whether the ASN.1 DER signature sig is valid for digest under Q.
func (v *Verifier) Verify(digest, sig []byte) bool {
	var r, s = new(big.Int), new(big.Int)
	in, inner := cryptobyte.String(sig), cryptobyte.String(nil)
	if !in.ReadASN1(&inner, cbasn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Integer(r) || !inner.ReadASN1Integer(s) || !inner.Empty() {
		return false
	}
	if r.Sign() <= 0 || s.Sign() <= 0 || r.Cmp(p256N) >= 0 || s.Cmp(p256N) >= 0 {
		return false
	}
	// bits2int: the leftmost 256 bits of the digest (FIPS 186-5 section 6.4.2 step 3).
	if len(digest) > 32 {
		digest = digest[:32]
	}
	e := new(big.Int).SetBytes(digest)
	w := new(big.Int).ModInverse(s, p256N)
	if w == nil {
		return false
	}
	u1 := e.Mul(e, w)
	u1.Mod(u1, p256N)
	u2 := w.Mul(w, r)
	u2.Mod(u2, p256N)
	var b1, b2 [32]byte
	p, err := nistec.NewP256Point().ScalarBaseMult(u1.FillBytes(b1[:]))
	if err != nil {
		return false
	}
	u2.FillBytes(b2[:])
	p.Add(p, v.mulQ(&b2))
	x, err := p.BytesX() // fails for the point at infinity
	if err != nil {
		return false
	}
	xn := new(big.Int).SetBytes(x)
	return xn.Mod(xn, p256N).Cmp(r) == 0
}
