package pades

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/digitorus/pdf"
)

// Signature is one signature of a PDF as Signatures finds it.
type Signature struct {
	// CMS is the DER SignedData of /Contents, without the zero padding.
	CMS []byte
	// Contents is the whole /Contents string, padding included (the VRI key is its SHA-1).
	Contents []byte
	// Signed is the concatenation of the two /ByteRange ranges: what the CMS signs.
	Signed    []byte
	ByteRange [4]int64
	// SubFilter is the signature dictionary's /SubFilter (ETSI.CAdES.detached for PAdES baseline).
	SubFilter string
	// Validation is the document security store's validation data for this signature: the DSS arrays and
	// this signature's VRI entry, merged (nil slices when the PDF has no DSS).
	Validation ValidationValues
	// HasVRI tells whether the DSS has a VRI entry for this signature.
	HasVRI bool
}

const maxSignatures = 64

// Signatures returns the signatures of a PDF: the signature fields of the AcroForm whose value is a signature
// dictionary (ISO 32000-1 §12.7.4.5, §12.8.1), in field order, each with the bytes its /ByteRange covers and the
// validation data of the document security store (ETSI EN 319 142-1 §5.4.2). The gap between the two ranges
// must be exactly the /Contents hex string.
func Signatures(pdfBytes []byte) (sigs []Signature, err error) {
	defer func() { // digitorus/pdf panics on some malformed files
		if r := recover(); r != nil {
			sigs, err = nil, fmt.Errorf("pades: malformed PDF: %v", r)
		}
	}()
	rdr, err := pdf.NewReader(bytes.NewReader(pdfBytes), int64(len(pdfBytes)))
	if err != nil {
		return nil, fmt.Errorf("pades: read PDF: %w", err)
	}
	fields := rdr.Trailer().Key("Root").Key("AcroForm").Key("Fields")
	if fields.Len() > maxSignatures {
		return nil, errors.New("pades: too many form fields")
	}
	dss, err := readDSS(rdr)
	if err != nil {
		return nil, err
	}
	for i := 0; i < fields.Len(); i++ {
		f := fields.Index(i)
		if f.Key("FT").Name() != "Sig" {
			continue
		}
		v := f.Key("V") // resolved once: it holds the whole /Contents
		if v.Kind() != pdf.Dict {
			continue
		}
		s, err := signatureAt(pdfBytes, v)
		if err != nil {
			return nil, err
		}
		if dss != nil {
			vri, ok := dss.VRI[VRIKey(s.Contents)]
			s.Validation, s.HasVRI = merge(dss.ValidationValues, vri), ok
		}
		sigs = append(sigs, s)
	}
	if len(sigs) == 0 {
		return nil, ErrNoSignature
	}
	return sigs, nil
}

func signatureAt(pdfBytes []byte, v pdf.Value) (Signature, error) {
	var s Signature
	br := v.Key("ByteRange")
	if br.Kind() != pdf.Array || br.Len() != 4 {
		return s, errors.New("pades: /ByteRange is not an array of four integers")
	}
	for i := range s.ByteRange {
		if br.Index(i).Kind() != pdf.Integer {
			return s, errors.New("pades: /ByteRange is not an array of four integers")
		}
		s.ByteRange[i] = br.Index(i).Int64()
	}
	b, size := s.ByteRange, int64(len(pdfBytes))
	if b[0] != 0 || b[1] < 2 || b[2] <= b[1]+1 || b[3] < 0 || b[2]+b[3] > size || b[2]+b[3] < b[2] {
		return s, fmt.Errorf("pades: bad /ByteRange %v", b)
	}
	gap := pdfBytes[b[1]:b[2]]
	if gap[0] != '<' || gap[len(gap)-1] != '>' {
		return s, errors.New("pades: /Contents is not a hex string between the byte ranges")
	}
	raw, err := hex.DecodeString(string(gap[1 : len(gap)-1]))
	if err != nil {
		return s, fmt.Errorf("pades: /Contents: %w", err)
	}
	if c := v.Key("Contents"); c.Kind() != pdf.String || c.RawString() != string(raw) {
		return s, errors.New("pades: the gap between the byte ranges is not this signature's /Contents")
	}
	s.Contents = raw
	s.CMS = raw
	if n := derLen(raw); n > 0 && n <= len(raw) { // the reservation is zero-padded
		s.CMS = raw[:n]
	}
	s.Signed = make([]byte, 0, b[1]+b[3])
	s.Signed = append(s.Signed, pdfBytes[:b[1]]...)
	s.Signed = append(s.Signed, pdfBytes[b[2]:b[2]+b[3]]...)
	s.SubFilter = v.Key("SubFilter").Name()
	return s, nil
}

// derLen returns the length of the DER element at the start of b, or 0.
func derLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	l := int(b[1])
	if l < 0x80 {
		return 2 + l
	}
	n := l & 0x7f
	if n == 0 || n > 3 || len(b) < 2+n {
		return 0
	}
	l = 0
	for _, c := range b[2 : 2+n] {
		l = l<<8 | int(c)
	}
	return 2 + n + l
}

// CheckAppended checks what follows the signed revision that ends at end: only incremental updates that add
// validation data (ISO 32000-2 §12.8.4.3, EN 319 142-1 §5.4) are allowed, that is new objects and the
// document catalog unchanged but for its /DSS entry, each update with a cross-reference table whose /Prev
// chain leads back to the signed revision. Anything else is ErrChangedAfterSigning.
func CheckAppended(pdfBytes []byte, end int64) (err error) {
	if end == int64(len(pdfBytes)) {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: malformed update (%v)", ErrChangedAfterSigning, r)
		}
	}()
	if end > int64(len(pdfBytes)) || end <= 0 {
		return ErrChangedAfterSigning
	}
	if !eofRE.Match(pdfBytes[end:]) {
		return fmt.Errorf("%w: bytes after the last end-of-file marker", ErrChangedAfterSigning)
	}
	prev, err := pdf.NewReader(bytes.NewReader(pdfBytes[:end]), end)
	if err != nil {
		return fmt.Errorf("%w: signed revision unreadable: %v", ErrChangedAfterSigning, err)
	}
	cur, err := pdf.NewReader(bytes.NewReader(pdfBytes), int64(len(pdfBytes)))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrChangedAfterSigning, err)
	}
	pr, cr := prev.Trailer().Key("Root"), cur.Trailer().Key("Root")
	rootID, _ := objID(pr)
	if curID, _ := objID(cr); curID != rootID || catalogSansDSS(pr) != catalogSansDSS(cr) {
		return fmt.Errorf("%w: the document catalog changed", ErrChangedAfterSigning)
	}
	prevSize := prev.Trailer().Key("Size").Int64()
	off := cur.XrefInformation.StartPos
	if cur.XrefInformation.Type != "table" {
		return fmt.Errorf("%w: update without a cross-reference table", ErrChangedAfterSigning)
	}
	for hops := 0; off != prev.XrefInformation.StartPos; hops++ {
		if off < end || off >= int64(len(pdfBytes)) || hops > 16 {
			return fmt.Errorf("%w: cross-reference chain does not lead to the signed revision", ErrChangedAfterSigning)
		}
		ids, p, err := xrefTable(pdfBytes[off:])
		if err != nil {
			return fmt.Errorf("%w: %v", ErrChangedAfterSigning, err)
		}
		for _, id := range ids {
			if id < prevSize && id != int64(rootID) {
				return fmt.Errorf("%w: object %d replaced", ErrChangedAfterSigning, id)
			}
		}
		off = p
	}
	return nil
}

func catalogSansDSS(root pdf.Value) string {
	var b bytes.Buffer
	id, _ := objID(root)
	for _, k := range root.Keys() {
		if k != "DSS" {
			b.WriteString(pdfName(k) + " ")
			serialize(&b, root.Key(k), id)
		}
	}
	return b.String()
}

var eofRE = regexp.MustCompile(`startxref\s+\d+\s+%%EOF\s*$`)

var prevRE = regexp.MustCompile(`/Prev\s+(\d+)`)

// xrefTable reads a cross-reference table (ISO 32000-1 §7.5.4) at the start of b and its trailer: the
// object numbers of its in-use entries and /Prev.
func xrefTable(b []byte) (ids []int64, prev int64, err error) {
	toks := bytes.Fields(b[:min(len(b), 1<<20)])
	if len(toks) == 0 || string(toks[0]) != "xref" {
		return nil, 0, errors.New("no cross-reference table")
	}
	i := 1
	for i < len(toks) && string(toks[i]) != "trailer" {
		if i+1 >= len(toks) {
			return nil, 0, errors.New("truncated cross-reference table")
		}
		start, err1 := strconv.ParseInt(string(toks[i]), 10, 64)
		n, err2 := strconv.ParseInt(string(toks[i+1]), 10, 64)
		if err1 != nil || err2 != nil || n < 0 || n > 1<<16 || i+2+3*int(n) > len(toks) {
			return nil, 0, errors.New("bad cross-reference subsection")
		}
		i += 2
		for k := int64(0); k < n; k++ {
			if string(toks[i+2]) == "n" {
				ids = append(ids, start+k)
			}
			i += 3
		}
	}
	t := bytes.Index(b, []byte("trailer"))
	e := bytes.Index(b, []byte("startxref"))
	if t < 0 || e < t {
		return nil, 0, errors.New("no trailer")
	}
	m := prevRE.FindSubmatch(b[t:e])
	if m == nil {
		return nil, 0, errors.New("update without /Prev")
	}
	prev, _ = strconv.ParseInt(string(m[1]), 10, 64)
	return ids, prev, nil
}
