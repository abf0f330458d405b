package signing

import (
	"bytes"
	"context"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// FuzzArchiveVerify mutates a genuine B-LTA (two archive timestamps). Properties: no panic; a result that passes
// at B-LTA has the genuine content, signed attributes and signature, and every archive timestamp it accepted is
// one of the genuine tokens' TSTInfo (an archive timestamp cannot be forged or moved onto other data).
func FuzzArchiveVerify(f *testing.F) {
	ctx := context.Background()
	fx := newFixture(f)
	blt := fx.toBLT(f, fx.toBT(f, fx.signBB(f, fx.doc, fx.physician)), fx.doc)
	fx.pki.Clock.Advance(time.Hour)
	lta, err := AddArchiveTimestamp(ctx, blt, fx.tsa)
	if err != nil {
		f.Fatal(err)
	}
	fx.pki.Clock.Advance(time.Hour)
	lta2, err := AddArchiveTimestamp(ctx, lta, fx.tsa)
	if err != nil {
		f.Fatal(err)
	}
	gsd, _ := parseOne(lta2)
	genuine := gsd.signers[0]
	gats, _ := archiveTimestamps(gsd)
	var infos [][]byte
	for _, a := range gats {
		tsd, _ := parseOne(a.token)
		infos = append(infos, tsd.content)
	}
	f.Add(lta)
	f.Add(lta2)
	v := fx.verifier(f, func(c *VerifierConfig) { c.Revocation = nil })
	f.Fuzz(func(t *testing.T, der []byte) {
		r := v.Verify(ctx, der)
		if !r.Passed() || r.Level != "B-LTA" {
			return
		}
		sd, err := parseOne(der)
		if err != nil {
			t.Fatalf("passed but does not parse: %v", err)
		}
		si := &sd.signers[0]
		if !bytes.Equal(sd.content, gsd.content) || !bytes.Equal(si.signedAttrsRaw, genuine.signedAttrsRaw) || !bytes.Equal(si.signature, genuine.signature) {
			t.Fatal("a changed signature passed")
		}
		ats, err := archiveTimestamps(sd)
		if err != nil || len(ats) == 0 {
			t.Fatalf("B-LTA without archive timestamps: %v", err)
		}
		for _, a := range ats {
			tsd, _ := parseOne(a.token)
			found := false
			for _, g := range infos {
				found = found || bytes.Equal(g, tsd.content)
			}
			if !found {
				t.Fatal("a forged archive timestamp passed")
			}
		}
	})
}

// FuzzHashIndex: parseHashIndex never panics, and what it accepts without an explicit algorithm re-encodes to
// the same bytes.
func FuzzHashIndex(f *testing.F) {
	fx := newFixture(f)
	blt := fx.toBLT(f, fx.toBT(f, fx.signBB(f, fx.doc, fx.physician)), fx.doc)
	sd, _ := parseOne(blt)
	idx, err := buildHashIndex(sd)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(idx)
	f.Add([]byte{0x30, 0x06, 0x30, 0x00, 0x30, 0x00, 0x30, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := parseHashIndex(b)
		if err != nil {
			return
		}
		if x.explicitAlg {
			return
		}
		var out cryptobyte.Builder
		out.AddASN1(cbasn1.SEQUENCE, func(bb *cryptobyte.Builder) {
			for _, list := range [][][]byte{x.certs, x.crls, x.values} {
				bb.AddASN1(cbasn1.SEQUENCE, func(bb *cryptobyte.Builder) {
					for _, h := range list {
						bb.AddASN1OctetString(h)
					}
				})
			}
		})
		re, err := out.Bytes()
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("accepted %x, re-encodes to %x", b, re)
		}
	})
}
