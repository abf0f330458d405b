package pades

import (
	"encoding/binary"
	"errors"
	"sort"
)

// subsetTTF returns a TrueType font with the tables a PDF CIDFontType2 needs (ISO 32000-1 §9.9: head, hhea,
// hmtx, loca, glyf, maxp, cvt, fpgm, prep) in which every glyph outside used (and the components of used
// composite glyphs, and glyph 0) is empty. Glyph IDs are kept, so the PDF can use CIDToGIDMap /Identity.
//
// Written by hand: go-text/typesetting reads fonts but does not write them, and no maintained pure-Go
// library subsets TrueType. Keeping glyph IDs makes this the simplest correct subset: only glyf and loca are
// rewritten (loca in the long format).
func subsetTTF(ttf []byte, used map[uint16]bool) ([]byte, error) {
	tables, err := ttfTables(ttf)
	if err != nil {
		return nil, err
	}
	head, loca, glyf, maxp := tables["head"], tables["loca"], tables["glyf"], tables["maxp"]
	if len(head) < 54 || len(maxp) < 6 || glyf == nil || loca == nil {
		return nil, errors.New("pades: font: not a TrueType (glyf) font")
	}
	numGlyphs := int(binary.BigEndian.Uint16(maxp[4:]))
	long := binary.BigEndian.Uint16(head[50:]) == 1
	off := func(g int) (int, int, bool) {
		var a, b int
		if long {
			if len(loca) < 4*(g+2) {
				return 0, 0, false
			}
			a, b = int(binary.BigEndian.Uint32(loca[4*g:])), int(binary.BigEndian.Uint32(loca[4*g+4:]))
		} else {
			if len(loca) < 2*(g+2) {
				return 0, 0, false
			}
			a, b = 2*int(binary.BigEndian.Uint16(loca[2*g:])), 2*int(binary.BigEndian.Uint16(loca[2*g+2:]))
		}
		return a, b, a <= b && b <= len(glyf)
	}
	keep := map[int]bool{0: true}
	var visit func(g, depth int)
	visit = func(g, depth int) {
		if g >= numGlyphs || keep[g] && g != 0 || depth > 8 {
			return
		}
		keep[g] = true
		a, b, ok := off(g)
		if !ok || b-a < 10 || int16(binary.BigEndian.Uint16(glyf[a:])) >= 0 {
			return
		}
		// A composite glyph (OpenType "glyf" table, composite glyph description): walk its components.
		p := a + 10
		for p+4 <= b {
			flags := binary.BigEndian.Uint16(glyf[p:])
			visit(int(binary.BigEndian.Uint16(glyf[p+2:])), depth+1)
			p += 4
			if flags&0x0001 != 0 { // ARG_1_AND_2_ARE_WORDS
				p += 4
			} else {
				p += 2
			}
			switch {
			case flags&0x0008 != 0: // WE_HAVE_A_SCALE
				p += 2
			case flags&0x0040 != 0: // WE_HAVE_AN_X_AND_Y_SCALE
				p += 4
			case flags&0x0080 != 0: // WE_HAVE_A_TWO_BY_TWO
				p += 8
			}
			if flags&0x0020 == 0 { // MORE_COMPONENTS
				break
			}
		}
	}
	for g := range used {
		visit(int(g), 0)
	}
	var newGlyf []byte
	newLoca := make([]byte, 4*(numGlyphs+1))
	for g := 0; g < numGlyphs; g++ {
		binary.BigEndian.PutUint32(newLoca[4*g:], uint32(len(newGlyf)))
		if keep[g] {
			if a, b, ok := off(g); ok {
				newGlyf = append(newGlyf, glyf[a:b]...)
				for len(newGlyf)%4 != 0 {
					newGlyf = append(newGlyf, 0)
				}
			}
		}
	}
	binary.BigEndian.PutUint32(newLoca[4*numGlyphs:], uint32(len(newGlyf)))
	newHead := append([]byte{}, head...)
	binary.BigEndian.PutUint16(newHead[50:], 1) // indexToLocFormat: long
	binary.BigEndian.PutUint32(newHead[8:], 0)  // checkSumAdjustment, set below
	out := map[string][]byte{"head": newHead, "loca": newLoca, "glyf": newGlyf}
	for _, t := range []string{"hhea", "hmtx", "maxp", "cvt ", "fpgm", "prep"} {
		if tables[t] != nil {
			out[t] = tables[t]
		}
	}
	font := writeTTF(out)
	// head.checkSumAdjustment = 0xB1B0AFBA - checksum of the whole font.
	for i, t := range sortedTags(out) {
		if t == "head" {
			o := int(binary.BigEndian.Uint32(font[12+16*i+8:]))
			binary.BigEndian.PutUint32(font[o+8:], 0xB1B0AFBA-checksum(font))
		}
	}
	return font, nil
}

// ttfTables returns the tables of an OpenType font by tag.
func ttfTables(ttf []byte) (map[string][]byte, error) {
	if len(ttf) < 12 {
		return nil, errors.New("pades: font: truncated")
	}
	n := int(binary.BigEndian.Uint16(ttf[4:]))
	if len(ttf) < 12+16*n {
		return nil, errors.New("pades: font: truncated table directory")
	}
	m := map[string][]byte{}
	for i := 0; i < n; i++ {
		r := ttf[12+16*i:]
		o, l := int(binary.BigEndian.Uint32(r[8:])), int(binary.BigEndian.Uint32(r[12:]))
		if o < 0 || l < 0 || o+l > len(ttf) {
			return nil, errors.New("pades: font: table out of bounds")
		}
		m[string(r[:4])] = ttf[o : o+l]
	}
	return m, nil
}

func sortedTags(m map[string][]byte) []string {
	var tags []string
	for t := range m {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	return tags
}

func checksum(b []byte) uint32 {
	var s uint32
	for i := 0; i < len(b); i += 4 {
		var w [4]byte
		copy(w[:], b[i:])
		s += binary.BigEndian.Uint32(w[:])
	}
	return s
}

// writeTTF writes an OpenType font file (table directory, tables 4-byte aligned, with checksums).
func writeTTF(tables map[string][]byte) []byte {
	tags := sortedTags(tables)
	n := len(tags)
	es := 0
	for 1<<(es+1) <= n {
		es++
	}
	sr := (1 << es) * 16
	out := make([]byte, 12+16*n)
	binary.BigEndian.PutUint32(out, 0x00010000)
	binary.BigEndian.PutUint16(out[4:], uint16(n))
	binary.BigEndian.PutUint16(out[6:], uint16(sr))
	binary.BigEndian.PutUint16(out[8:], uint16(es))
	binary.BigEndian.PutUint16(out[10:], uint16(n*16-sr))
	for i, t := range tags {
		b := tables[t]
		r := out[12+16*i:]
		copy(r, t)
		binary.BigEndian.PutUint32(r[4:], checksum(b))
		binary.BigEndian.PutUint32(r[8:], uint32(len(out)))
		binary.BigEndian.PutUint32(r[12:], uint32(len(b)))
		out = append(out, b...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	return out
}
