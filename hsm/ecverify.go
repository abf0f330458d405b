package hsm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"math/big"

	"filippo.io/nistec"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// p256Verifier checks ECDSA P-256 signatures (FIPS 186-5 section 6.4.2) for one fixed public key Q
// with a table of multiples of Q made once per key.
//
// Why by hand: verification is x(u1·G + u2·Q) mod n == r. crypto/ecdsa computes u2·Q with a
// variable-base multiplication (256 doublings) on every call, which the profile shows is about 2/3
// of the cost. Q never changes for a Key, so, as for G, its multiples can be precomputed and u2·Q
// becomes at most 64 additions. No library offers ECDSA verification with a per-key table; the
// point arithmetic itself is nistec's (the same code as Go's crypto/internal/fips140/nistec).
//
// It is only a fast path: it accepts a signature only when the equation holds; anything else goes
// to crypto/ecdsa, whose answer is final (see Key.verify).
type p256Verifier struct {
	t [64][15]*nistec.P256Point // t[i][j-1] = j·16^i·Q
}

var p256N = elliptic.P256().Params().N

// newP256Verifier returns nil when pub is not a usable P-256 key or the table fails its self-check.
func newP256Verifier(pub *ecdsa.PublicKey) *p256Verifier {
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
	v := &p256Verifier{}
	base := q
	for i := range v.t {
		v.t[i][0] = nistec.NewP256Point().Set(base)
		for j := 1; j < 15; j++ {
			v.t[i][j] = nistec.NewP256Point().Add(v.t[i][j-1], base)
		}
		next := nistec.NewP256Point().Set(base)
		for range 4 {
			next.Double(next)
		}
		base = next
	}
	// Self-check against nistec's own variable-base multiplication with a random scalar.
	var u [32]byte
	rand.Read(u[:])
	u[0] &= 0x7f // below n
	want, err := nistec.NewP256Point().ScalarMult(q, u[:])
	if err != nil || string(v.mulQ(u[:]).Bytes()) != string(want.Bytes()) {
		return nil
	}
	return v
}

// mulQ returns u·Q for the 32-byte big-endian scalar u.
func (v *p256Verifier) mulQ(u []byte) *nistec.P256Point {
	acc := nistec.NewP256Point() // the point at infinity
	for i := range 64 {
		b := u[31-i/2]
		nib := b & 0x0f
		if i%2 == 1 {
			nib = b >> 4
		}
		if nib != 0 {
			acc.Add(acc, v.t[i][nib-1])
		}
	}
	return acc
}

// verify reports whether the ASN.1 DER signature sig is valid for digest under Q.
func (v *p256Verifier) verify(digest, sig []byte) bool {
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
	p.Add(p, v.mulQ(u2.FillBytes(b2[:])))
	x, err := p.BytesX() // fails for the point at infinity
	if err != nil {
		return false
	}
	xn := new(big.Int).SetBytes(x)
	return xn.Mod(xn, p256N).Cmp(r) == 0
}
