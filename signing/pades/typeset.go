package pades

import (
	"bytes"
	_ "embed"
	"fmt"
	"strings"
	"sync"
	"unicode"

	"github.com/go-text/typesetting/di"
	"github.com/go-text/typesetting/font"
	"github.com/go-text/typesetting/language"
	"github.com/go-text/typesetting/shaping"
	"golang.org/x/image/math/fixed"
)

// The embedded fonts (SIL Open Font License 1.1, fonts/OFL.txt; docs/fonts.md): Noto Naskh Arabic for
// Persian, Noto Sans for Latin text, both from Debian's fonts-noto-core.
var (
	//go:embed fonts/NotoNaskhArabic-Regular.ttf
	naskhRegular []byte
	//go:embed fonts/NotoNaskhArabic-Bold.ttf
	naskhBold []byte
	//go:embed fonts/NotoSans-Regular.ttf
	sansRegular []byte
)

// emUnits is the size text is shaped at: glyph positions come out in thousandths of an em, the unit of PDF
// glyph space (ISO 32000-1 §9.2.4).
const emUnits = 1000

// pdfFont is one embedded font of a document: its face, and for each of its PDF font variants the glyphs
// used with the text each stands for (the variant's ToUnicode CMap). A glyph that stands for different texts
// in different places (a mirrored parenthesis, a letter form shared by two code points) is drawn from another
// variant: the variants share the embedded font program and differ only in their ToUnicode maps.
type pdfFont struct {
	res      string // resource name prefix, e.g. F1
	name     string // PostScript name
	ttf      []byte
	face     *font.Face
	variants []map[uint16]string
}

// variant returns the variant whose ToUnicode maps gid to text, adding the mapping or a variant as needed.
func (f *pdfFont) variant(gid uint16, text string) int {
	for i, m := range f.variants {
		if t, ok := m[gid]; !ok {
			m[gid] = text
			return i
		} else if t == text {
			return i
		}
	}
	f.variants = append(f.variants, map[uint16]string{gid: text})
	return len(f.variants) - 1
}

// glyph is one glyph placed on a line, x and y in thousandths of an em from the line's left end.
type glyph struct {
	f    *pdfFont
	gid  uint16
	text string // the text this glyph stands for, "" for the marks of a cluster
	x, y float64
}

// line is a shaped line of text in visual order.
type line struct {
	glyphs []glyph
	width  float64 // in thousandths of an em
	size   float64 // points
	text   string  // logical order, as given
	ltr    bool    // a left-to-right paragraph
}

// typesetter shapes text with HarfBuzz (go-text/typesetting) after splitting it by bidi level, script and
// face (Unicode UAX #9 through shaping.Segmenter).
type typesetter struct {
	shaper shaping.HarfbuzzShaper
	seg    shaping.Segmenter
	fonts  []*pdfFont // naskh, naskh bold, sans
}

var parsed struct {
	once  sync.Once
	faces [3]*font.Face
	err   error
}

func newTypesetter() (*typesetter, error) {
	parsed.once.Do(func() {
		for i, b := range [][]byte{naskhRegular, naskhBold, sansRegular} {
			if parsed.faces[i], parsed.err = font.ParseTTF(bytes.NewReader(b)); parsed.err != nil {
				return
			}
		}
	})
	if parsed.err != nil {
		return nil, fmt.Errorf("pades: font: %w", parsed.err)
	}
	ts := &typesetter{}
	for i, n := range []string{"NotoNaskhArabic-Regular", "NotoNaskhArabic-Bold", "NotoSans-Regular"} {
		ts.fonts = append(ts.fonts, &pdfFont{res: fmt.Sprintf("F%d", i+1), name: n,
			ttf: [][]byte{naskhRegular, naskhBold, sansRegular}[i], face: parsed.faces[i]})
	}
	return ts, nil
}

// fontmap picks the Persian face for Arabic-script runes and for what the Latin face lacks, else the Latin face.
type fontmap struct{ arabic, latin *font.Face }

func (m fontmap) ResolveFace(r rune) *font.Face {
	if unicode.Is(unicode.Arabic, r) || r == 0x200c || r == 0x200d {
		return m.arabic
	}
	if _, ok := m.latin.NominalGlyph(r); ok {
		return m.latin
	}
	return m.arabic
}

// shape lays out text as one paragraph, right to left (the page's direction; Latin runs inside it stay left to
// right, UAX #9) unless ltr, and returns its glyphs in visual order. The direction is given, not guessed from
// the first strong character (UAX #9 P2): "۲. Paracetamol" is a Persian line.
func (ts *typesetter) shape(text string, size float64, bold, ltr bool) line {
	arabic := ts.fonts[0]
	if bold {
		arabic = ts.fonts[1]
	}
	latin := ts.fonts[2]
	byFace := map[*font.Face]*pdfFont{arabic.face: arabic, latin.face: latin}
	runes := []rune(text)
	ln := line{size: size, text: text}
	if len(runes) == 0 {
		return ln
	}
	dir := di.DirectionRTL
	if ln.ltr = ltr; ltr {
		dir = di.DirectionLTR
	}
	in := shaping.Input{Text: runes, RunStart: 0, RunEnd: len(runes), Direction: dir,
		Size: fixed.I(emUnits), Language: language.NewLanguage("fa")}
	runs := append([]shaping.Input(nil), ts.seg.Split(in, fontmap{arabic.face, latin.face})...)
	// Visual order of the runs (UAX #9 L2 for a paragraph with one level of embedded runs of the other
	// direction, the only levels this text has): for a right-to-left paragraph reverse them all, then reverse
	// back each sequence of runs of the other direction.
	if !ln.ltr {
		for i, j := 0, len(runs)-1; i < j; i, j = i+1, j-1 {
			runs[i], runs[j] = runs[j], runs[i]
		}
	}
	for i := 0; i < len(runs); {
		j := i
		for j < len(runs) && runs[j].Direction != dir {
			j++
		}
		for a, b := i, j-1; a < b; a, b = a+1, b-1 {
			runs[a], runs[b] = runs[b], runs[a]
		}
		if j == i {
			j++
		}
		i = j
	}
	x := 0.0
	for _, r := range runs {
		pf := byFace[r.Face]
		out := ts.shaper.Shape(r)
		// The glyph of a cluster with the largest advance (the base, not a mark) stands for the cluster's text
		// in the ToUnicode map; the cluster's other glyphs stand for nothing.
		carrier := map[int]int{}
		for i, g := range out.Glyphs {
			if c, ok := carrier[g.TextIndex()]; !ok || g.Advance > out.Glyphs[c].Advance {
				carrier[g.TextIndex()] = i
			}
		}
		for i, g := range out.Glyphs {
			text := ""
			if carrier[g.TextIndex()] == i {
				cl := append([]rune(nil), runes[g.TextIndex():g.TextIndex()+g.RunesCount()]...)
				if r.Direction == di.DirectionRTL {
					// Extractors (poppler, pdf.js) read a right-to-left line in visual order and reverse it
					// character by character, the characters of a multi-character mapping included: a
					// cluster such as heh with hamza above, or the lam-alef ligature, is mapped reversed so
					// that it comes out in logical order.
					for a, b := 0, len(cl)-1; a < b; a, b = a+1, b-1 {
						cl[a], cl[b] = cl[b], cl[a]
					}
				}
				text = string(cl)
			}
			ln.glyphs = append(ln.glyphs, glyph{f: pf, gid: uint16(g.GlyphID), text: text, x: x + fx(g.XOffset), y: fx(g.YOffset)})
			x += fx(g.Advance)
		}
	}
	ln.width = x
	return ln
}

func fx(v fixed.Int26_6) float64 { return float64(v) / 64 }

// wrap breaks text into lines no wider than width points, at spaces.
func (ts *typesetter) wrap(text string, size float64, bold, ltr bool, width float64) []line {
	words := strings.Fields(text)
	var out []line
	cur := ""
	for _, w := range words {
		try := strings.TrimSpace(cur + " " + w)
		if cur != "" && ts.shape(try, size, bold, ltr).width*size/emUnits > width {
			out = append(out, ts.shape(cur, size, bold, ltr))
			cur = w
			continue
		}
		cur = try
	}
	return append(out, ts.shape(cur, size, bold, ltr))
}

func fontGID(g uint16) font.GID { return font.GID(g) }
