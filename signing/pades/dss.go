package pades

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"strconv"
	"strings"

	"github.com/digitorus/pdf"
)

// ValidationValues are the validation data of a document security store (ETSI EN 319 142-1 §5.4.2): DER
// certificates, DER OCSPResponses (RFC 6960 §4.2.1) and DER CRLs (RFC 5280 §5).
type ValidationValues struct {
	Certs, OCSPs, CRLs [][]byte
}

// DSS is a document security store as read from a PDF: the values of its /Certs, /OCSPs and /CRLs arrays and
// its /VRI entries, keyed by the upper-case hex SHA-1 of a signature's /Contents (EN 319 142-1 §5.4.2.3).
type DSS struct {
	ValidationValues
	VRI map[string]ValidationValues
}

// Bounds on what ReadDSS accepts from untrusted PDFs.
const (
	maxDSSEntries = 256
	maxDSSStream  = 1 << 20
)

// VRIKey returns the VRI dictionary key of a signature whose /Contents string holds contents (all of its
// bytes, zero padding included): the upper-case hex SHA-1 of them (EN 319 142-1 §5.4.2.3, as EU DSS and iText
// compute it).
func VRIKey(contents []byte) string {
	h := sha1.Sum(contents)
	return strings.ToUpper(hex.EncodeToString(h[:]))
}

// AddDSS appends an incremental update to a signed PDF that adds a document security store (ETSI EN 319 142-1
// §5.4.2; ISO 32000-2 §12.8.4.3) with vd and a VRI entry for the last signature, and points the catalog's /DSS
// at it. An existing DSS is carried over (its arrays and VRI entries are kept).
//
// Written by hand: digitorus/pdfsign writes no DSS (it embeds revocation data Adobe-style inside the CMS), and
// no maintained Go library writes a DSS incremental update. Only classic cross-reference tables are written, so
// a file whose last section is a cross-reference stream is refused; Mohr's own printouts never are.
func AddDSS(pdfBytes []byte, vd ValidationValues) ([]byte, error) {
	sigs, err := Signatures(pdfBytes)
	if err != nil {
		return nil, err
	}
	rdr, err := pdf.NewReader(bytes.NewReader(pdfBytes), int64(len(pdfBytes)))
	if err != nil {
		return nil, fmt.Errorf("pades: read PDF: %w", err)
	}
	if rdr.XrefInformation.Type != "table" {
		return nil, errors.New("pades: DSS: only PDFs with cross-reference tables are supported")
	}
	tr := rdr.Trailer()
	root := tr.Key("Root")
	rp := root.GetPtr()
	if root.Kind() != pdf.Dict || rp.GetID() == 0 {
		return nil, errors.New("pades: DSS: no document catalog")
	}
	size := tr.Key("Size").Int64()
	if size <= 0 {
		return nil, errors.New("pades: DSS: trailer has no /Size")
	}

	out := bytes.NewBuffer(bytes.Clone(pdfBytes))
	if !bytes.HasSuffix(pdfBytes, []byte("\n")) {
		out.WriteByte('\n')
	}
	next := size
	var offsets []int64
	obj := func(body []byte, stream []byte) string {
		id := next
		next++
		offsets = append(offsets, int64(out.Len()))
		fmt.Fprintf(out, "%d 0 obj\n", id)
		if stream != nil {
			fmt.Fprintf(out, "<< /Length %d >>\nstream\n", len(stream))
			out.Write(stream)
			out.WriteString("\nendstream")
		} else {
			out.Write(body)
		}
		out.WriteString("\nendobj\n")
		return fmt.Sprintf("%d 0 R", id)
	}
	streams := func(vals [][]byte) []string {
		var refs []string
		for _, v := range vals {
			refs = append(refs, obj(nil, v))
		}
		return refs
	}
	certs, ocsps, crls := streams(vd.Certs), streams(vd.OCSPs), streams(vd.CRLs)

	// Carry over an existing DSS: its arrays, its VRI entries, and this signature's VRI entry merged.
	last := sigs[len(sigs)-1]
	key := VRIKey(last.Contents)
	old := root.Key("DSS")
	oldID, _ := objID(old)
	oldVRI := old.Key("VRI")
	keep := func(d pdf.Value, name string) []string {
		var refs []string
		id, _ := objID(d)
		a := d.Key(name)
		for i := 0; i < a.Len() && i < maxDSSEntries; i++ {
			if p := a.Index(i).GetPtr(); p.GetID() != 0 && p.GetID() != id {
				refs = append(refs, fmt.Sprintf("%d %d R", p.GetID(), p.GetGen()))
			}
		}
		return refs
	}
	var vri bytes.Buffer
	vri.WriteString("<< /Type /VRI")
	for _, e := range []struct {
		key  string
		refs []string
	}{{"Cert", certs}, {"OCSP", ocsps}, {"CRL", crls}} {
		if refs := append(keep(oldVRI.Key(key), e.key), e.refs...); len(refs) > 0 {
			fmt.Fprintf(&vri, " /%s [%s]", e.key, strings.Join(refs, " "))
		}
	}
	vri.WriteString(" >>")
	vriRef := obj(vri.Bytes(), nil)

	var dss bytes.Buffer
	dss.WriteString("<< /Type /DSS")
	for _, e := range []struct {
		key  string
		refs []string
	}{{"Certs", certs}, {"OCSPs", ocsps}, {"CRLs", crls}} {
		refs := append(keep(old, e.key), e.refs...)
		if len(refs) > 0 {
			fmt.Fprintf(&dss, " /%s [%s]", e.key, strings.Join(refs, " "))
		}
	}
	dss.WriteString(" /VRI <<")
	for _, k := range oldVRI.Keys() {
		if k == key {
			continue
		}
		dss.WriteString(" /" + k + " ")
		serialize(&dss, oldVRI.Key(k), oldID)
	}
	fmt.Fprintf(&dss, " /%s %s >> >>", key, vriRef)
	dssRef := obj(dss.Bytes(), nil)

	// The catalog again, the same but for /DSS.
	catOff := int64(out.Len())
	fmt.Fprintf(out, "%d %d obj\n<<", rp.GetID(), rp.GetGen())
	for _, k := range root.Keys() {
		if k == "DSS" {
			continue
		}
		out.WriteString(" /" + k + " ")
		serialize(out, root.Key(k), rp.GetID())
	}
	fmt.Fprintf(out, " /DSS %s >>\nendobj\n", dssRef)

	xref := out.Len()
	fmt.Fprintf(out, "xref\n%d 1\n%010d %05d n \n%d %d\n", rp.GetID(), catOff, rp.GetGen(), size, len(offsets))
	for _, off := range offsets {
		fmt.Fprintf(out, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(out, "trailer\n<< /Size %d /Root %d %d R", next, rp.GetID(), rp.GetGen())
	trID, _ := objID(tr)
	for _, k := range []string{"Info", "ID"} {
		if v := tr.Key(k); !v.IsNull() {
			out.WriteString(" /" + k + " ")
			serialize(out, v, trID)
		}
	}
	fmt.Fprintf(out, " /Prev %d >>\nstartxref\n%d\n%%%%EOF\n", rdr.XrefInformation.StartPos, xref)
	return out.Bytes(), nil
}

// serialize writes v in PDF syntax (ISO 32000-1 §7.3); values held in another object than container are
// written as indirect references.
func serialize(w *bytes.Buffer, v pdf.Value, container uint32) {
	if p := v.GetPtr(); p.GetID() != container {
		fmt.Fprintf(w, "%d %d R", p.GetID(), p.GetGen())
		return
	}
	switch v.Kind() {
	case pdf.Null:
		w.WriteString("null")
	case pdf.Bool:
		w.WriteString(strconv.FormatBool(v.Bool()))
	case pdf.Integer:
		w.WriteString(strconv.FormatInt(v.Int64(), 10))
	case pdf.Real:
		w.WriteString(strconv.FormatFloat(v.Float64(), 'f', -1, 64))
	case pdf.String:
		w.WriteString("<" + hex.EncodeToString([]byte(v.RawString())) + ">")
	case pdf.Name:
		w.WriteString(pdfName(v.Name()))
	case pdf.Dict:
		w.WriteString("<<")
		for _, k := range v.Keys() {
			w.WriteString(" " + pdfName(k) + " ")
			serialize(w, v.Key(k), container)
		}
		w.WriteString(" >>")
	case pdf.Array:
		w.WriteString("[")
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				w.WriteByte(' ')
			}
			serialize(w, v.Index(i), container)
		}
		w.WriteString("]")
	default: // a stream is never a direct object
		w.WriteString("null")
	}
}

// pdfName writes a name with #xx escapes for delimiters, whitespace and bytes outside 0x21..0x7e
// (ISO 32000-1 §7.3.5).
func pdfName(n string) string {
	var b strings.Builder
	b.WriteByte('/')
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c < 0x21 || c > 0x7e || strings.IndexByte("#()<>[]{}/%", c) >= 0 {
			fmt.Fprintf(&b, "#%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ReadDSS returns the document security store of a PDF, or nil when it has none.
func ReadDSS(pdfBytes []byte) (*DSS, error) {
	rdr, err := pdf.NewReader(bytes.NewReader(pdfBytes), int64(len(pdfBytes)))
	if err != nil {
		return nil, fmt.Errorf("pades: read PDF: %w", err)
	}
	return readDSS(rdr)
}

func readDSS(rdr *pdf.Reader) (_ *DSS, err error) {
	defer func() { // digitorus/pdf panics on some malformed files
		if r := recover(); r != nil {
			err = fmt.Errorf("pades: malformed DSS: %v", r)
		}
	}()
	d := rdr.Trailer().Key("Root").Key("DSS")
	if d.IsNull() {
		return nil, nil
	}
	if d.Kind() != pdf.Dict {
		return nil, errors.New("pades: /DSS is not a dictionary")
	}
	out := &DSS{VRI: map[string]ValidationValues{}}
	if out.ValidationValues, err = readValues(d, "Certs", "OCSPs", "CRLs"); err != nil {
		return nil, err
	}
	vri := d.Key("VRI")
	keys := vri.Keys()
	if len(keys) > maxDSSEntries {
		return nil, errors.New("pades: too many VRI entries")
	}
	for _, k := range keys {
		if out.VRI[k], err = readValues(vri.Key(k), "Cert", "OCSP", "CRL"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func readValues(d pdf.Value, certs, ocsps, crls string) (ValidationValues, error) {
	var vv ValidationValues
	for _, e := range []struct {
		key string
		dst *[][]byte
	}{{certs, &vv.Certs}, {ocsps, &vv.OCSPs}, {crls, &vv.CRLs}} {
		a := d.Key(e.key)
		if a.IsNull() {
			continue
		}
		if a.Kind() != pdf.Array || a.Len() > maxDSSEntries {
			return vv, fmt.Errorf("pades: DSS /%s: not an array of at most %d streams", e.key, maxDSSEntries)
		}
		for i := 0; i < a.Len(); i++ {
			s := a.Index(i)
			if s.Kind() != pdf.Stream {
				return vv, fmt.Errorf("pades: DSS /%s: entry %d is not a stream", e.key, i)
			}
			b, err := readStream(s)
			if err != nil {
				return vv, fmt.Errorf("pades: DSS /%s: %w", e.key, err)
			}
			*e.dst = append(*e.dst, b)
		}
	}
	return vv, nil
}

// readStream reads a stream's decoded data, bounded; digitorus/pdf panics on some malformed streams, which
// becomes an error here.
func readStream(s pdf.Value) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("malformed stream: %v", r)
		}
	}()
	rc := s.Reader()
	defer rc.Close()
	b, err = io.ReadAll(io.LimitReader(rc, maxDSSStream+1))
	if err == nil && len(b) > maxDSSStream {
		err = errors.New("stream too large")
	}
	return b, err
}

// merge returns the union of the values of vs, in order, without duplicates.
func merge(vs ...ValidationValues) ValidationValues {
	var out ValidationValues
	add := func(dst *[][]byte, seen map[string]bool, src [][]byte) {
		for _, b := range src {
			if !seen[string(b)] {
				seen[string(b)] = true
				*dst = append(*dst, b)
			}
		}
	}
	sc, so, sr := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, v := range vs {
		add(&out.Certs, sc, v.Certs)
		add(&out.OCSPs, so, v.OCSPs)
		add(&out.CRLs, sr, v.CRLs)
	}
	return out
}

// objID returns the object number and generation holding v.
func objID(v pdf.Value) (uint32, uint16) {
	p := v.GetPtr()
	return p.GetID(), p.GetGen()
}
