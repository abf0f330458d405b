package pades

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"unicode/utf16"
)

// page is what a one-page document shows: lines of text at positions, and rules.
type page struct {
	items []placedLine
	rules [][4]float64 // x1 y1 x2 y2, points
	marks [][4]float64 // filled black rectangles x y w h, points (the QR code's modules)
}

type placedLine struct {
	l    line
	x, y float64 // left end of the baseline, points
}

// writePDF writes a one-page A4 PDF 1.7 (ISO 32000-1) with the typesetter's fonts embedded as CIDFontType2
// subsets (Identity-H, CIDToGIDMap Identity) with ToUnicode CMaps, so that the text is extractable. Glyphs
// are drawn in visual order, which is what extractors expect (poppler's pdftotext turns right-to-left lines
// back into logical order; /ActualText spans in logical order came out reversed, so none are written).
func writePDF(ts *typesetter, pg page, title, created string) ([]byte, error) {
	var content bytes.Buffer
	content.WriteString("0.4 w 0.55 0.55 0.55 RG\n")
	for _, r := range pg.rules {
		fmt.Fprintf(&content, "%.2f %.2f m %.2f %.2f l S\n", r[0], r[1], r[2], r[3])
	}
	if len(pg.marks) > 0 {
		content.WriteString("0 g\n")
		for _, m := range pg.marks {
			fmt.Fprintf(&content, "%.3f %.3f %.3f %.3f re\n", m[0], m[1], m[2], m[3])
		}
		content.WriteString("f\n")
	}
	used := map[*pdfFont]map[uint16]bool{}
	for _, it := range pg.items {
		if len(it.l.glyphs) == 0 {
			continue
		}
		content.WriteString("BT\n")
		cur := ""
		for _, g := range it.l.glyphs {
			if res := fmt.Sprintf("%sv%d", g.f.res, g.f.variant(g.gid, g.text)); res != cur {
				cur = res
				fmt.Fprintf(&content, "/%s %.2f Tf\n", cur, it.l.size)
			}
			if used[g.f] == nil {
				used[g.f] = map[uint16]bool{}
			}
			used[g.f][g.gid] = true
			k := it.l.size / emUnits
			fmt.Fprintf(&content, "1 0 0 1 %.3f %.3f Tm <%04X> Tj\n", it.x+g.x*k, it.y+g.y*k, g.gid)
		}
		content.WriteString("ET\n")
	}

	var objs []string
	add := func(s string) int { objs = append(objs, s); return len(objs) }
	stream := func(dict string, data []byte) int {
		var z bytes.Buffer
		w := zlib.NewWriter(&z)
		w.Write(data)
		w.Close()
		return add(fmt.Sprintf("<< %s /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream", dict, z.Len(), z.Bytes()))
	}
	// ESIC extension level 5: the PAdES document security store (ETSI EN 319 142-1 §5.4) in a PDF 1.7 file.
	add("<< /Type /Catalog /Pages 2 0 R /Lang (fa-IR) /ViewerPreferences << /Direction /R2L >> /Extensions << /ESIC << /BaseVersion /1.7 /ExtensionLevel 5 >> >> >>")
	add("") // pages, below
	add("") // page, below
	contentRef := stream("", content.Bytes())
	info := add(fmt.Sprintf("<< /Title %s /Producer (Mohr) /CreationDate (D:%s) >>", utf16Hex(title), created))
	var fontRes []string
	for _, f := range ts.fonts {
		u := used[f]
		if len(u) == 0 {
			continue
		}
		sub, err := subsetTTF(f.ttf, u)
		if err != nil {
			return nil, err
		}
		tag := subsetTag(f.name, u)
		upem := float64(f.face.Upem())
		k := 1000 / upem
		ext, _ := f.face.FontHExtents()
		head := mustTable(f.ttf, "head")
		bbox := [4]float64{}
		for i := range bbox {
			bbox[i] = float64(int16(binary.BigEndian.Uint16(head[36+2*i:]))) * k
		}
		file := stream(fmt.Sprintf("/Length1 %d", len(sub)), sub)
		desc := add(fmt.Sprintf("<< /Type /FontDescriptor /FontName /%s+%s /Flags 4 /FontBBox [%.0f %.0f %.0f %.0f] /ItalicAngle 0 /Ascent %.0f /Descent %.0f /CapHeight %.0f /StemV 80 /FontFile2 %d 0 R >>",
			tag, f.name, bbox[0], bbox[1], bbox[2], bbox[3], float64(ext.Ascender)*k, float64(ext.Descender)*k, float64(ext.Ascender)*k, file))
		gids := sortedGIDs(u)
		var w strings.Builder
		for _, g := range gids {
			fmt.Fprintf(&w, "%d [%.0f] ", g, float64(f.face.HorizontalAdvance(fontGID(g)))*k)
		}
		cid := add(fmt.Sprintf("<< /Type /Font /Subtype /CIDFontType2 /BaseFont /%s+%s /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /FontDescriptor %d 0 R /W [%s] /DW 0 /CIDToGIDMap /Identity >>",
			tag, f.name, desc, w.String()))
		for v, m := range f.variants {
			tu := stream("", toUnicode(m))
			t0 := add(fmt.Sprintf("<< /Type /Font /Subtype /Type0 /BaseFont /%s+%s /Encoding /Identity-H /DescendantFonts [%d 0 R] /ToUnicode %d 0 R >>",
				tag, f.name, cid, tu))
			fontRes = append(fontRes, fmt.Sprintf("/%sv%d %d 0 R", f.res, v, t0))
		}
	}
	objs[1] = "<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
	objs[2] = fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << %s >> >> /Contents %d 0 R >>",
		strings.Join(fontRes, " "), contentRef)

	var out bytes.Buffer
	out.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = out.Len()
		fmt.Fprintf(&out, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := out.Len()
	fmt.Fprintf(&out, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&out, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&out, "trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, info, xref)
	return out.Bytes(), nil
}

func mustTable(ttf []byte, tag string) []byte {
	t, _ := ttfTables(ttf)
	return t[tag]
}

func sortedGIDs(u map[uint16]bool) []uint16 {
	var g []uint16
	for k := range u {
		g = append(g, k)
	}
	sort.Slice(g, func(i, j int) bool { return g[i] < g[j] })
	return g
}

func sortedGIDs2(m map[uint16]string) []uint16 {
	u := map[uint16]bool{}
	for g := range m {
		u[g] = true
	}
	return sortedGIDs(u)
}

// subsetTag is the six-letter subset prefix of ISO 32000-1 §9.6.4, derived from the glyphs used.
func subsetTag(name string, u map[uint16]bool) string {
	h := uint32(2166136261)
	for _, c := range []byte(name) {
		h = (h ^ uint32(c)) * 16777619
	}
	for _, g := range sortedGIDs(u) {
		h = (h ^ uint32(g)) * 16777619
	}
	var b [6]byte
	for i := range b {
		b[i] = 'A' + byte(h%26)
		h /= 26
	}
	return string(b[:])
}

// toUnicode writes the ToUnicode CMap (ISO 32000-1 §9.10.3) of the glyphs used: each glyph to the text of the
// cluster it starts.
func toUnicode(m map[uint16]string) []byte {
	var b bytes.Buffer
	b.WriteString("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n")
	var entries []string
	for _, g := range sortedGIDs2(m) {
		if t := m[g]; t != "" {
			entries = append(entries, fmt.Sprintf("<%04X> %s", g, utf16BE(t)))
		}
	}
	for i := 0; i < len(entries); i += 100 {
		chunk := entries[i:min(i+100, len(entries))]
		fmt.Fprintf(&b, "%d beginbfchar\n%s\nendbfchar\n", len(chunk), strings.Join(chunk, "\n"))
	}
	b.WriteString("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n")
	return b.Bytes()
}

// utf16Hex writes s as a PDF text string in hex: UTF-16BE with the byte order mark (ISO 32000-1 §7.9.2.2).
func utf16Hex(s string) string { return "<FEFF" + utf16BE(s)[1:] }

// utf16BE writes s as a hex string of UTF-16BE without a byte order mark (CMap destinations).
func utf16BE(s string) string {
	var b strings.Builder
	b.WriteString("<")
	for _, u := range utf16.Encode([]rune(s)) {
		fmt.Fprintf(&b, "%04X", u)
	}
	b.WriteString(">")
	return b.String()
}
