package signing

// This file encodes and decodes the parts of CMS SignedData (RFC 5652 §5) that HIX-Rx-CAdES uses.
//
// Why not a pkcs7 library here: the B-T, B-LT and B-LTA upgrades (ETSI EN 319 122-1 §5.3, §5.5) add unsigned
// attributes and certificates to an existing SignedData and must keep every signed byte exactly as it was,
// which smallstep/pkcs7 and digitorus/pkcs7 do not offer; and verification of millions of prescriptions a day
// is dominated by parsing and allocation (shared LIMITS.md), so the hot path reads DER in place with
// golang.org/x/crypto/cryptobyte, comparing OIDs as bytes and hashing signed attributes without copying.
// Interoperability is checked against OpenSSL (openssl cms -verify, openssl ts -verify) in the tests.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	tagExplicit0 = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagExplicit1 = cbasn1.Tag(1).ContextSpecific().Constructed()
	tagImplicit0 = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagImplicit1 = cbasn1.Tag(1).ContextSpecific().Constructed()
	tagSKI       = cbasn1.Tag(0).ContextSpecific() // SignerIdentifier subjectKeyIdentifier [0] IMPLICIT OCTET STRING
)

// errFormat is wrapped by every DER structure error, so the verifier can report FORMAT_FAILURE.
var errFormat = errors.New("signing: malformed CMS")

func formatErr(what string) error { return fmt.Errorf("%w: %s", errFormat, what) }

// rawAttr is one Attribute (RFC 5652 §5.3): its type as DER OID content, and the content of its value SET.
type rawAttr struct {
	oid    []byte
	values []byte // content octets of attrValues SET
	raw    []byte // the whole Attribute TLV
}

// first returns the single value of a, or false if the SET holds zero or more than one value.
func (a *rawAttr) single() (cryptobyte.String, bool) {
	s := cryptobyte.String(a.values)
	var v cryptobyte.String
	if !s.ReadAnyASN1Element(&v, nil) || !s.Empty() {
		return nil, false
	}
	return v, true
}

// signerInfo is a parsed SignerInfo (RFC 5652 §5.3); byte slices alias the input.
type signerInfo struct {
	raw            []byte
	version        int64
	sidRaw         []byte // SignerIdentifier TLV
	sidIssuer      []byte // issuerAndSerialNumber.issuer, a Name TLV
	sidSerial      []byte // issuerAndSerialNumber.serialNumber INTEGER content
	sidSKI         []byte
	digestAlgRaw   []byte
	digestOID      []byte
	signedAttrsRaw []byte // [0] IMPLICIT SET TLV, as signed after re-tagging to SET (§5.4)
	signedAttrs    []rawAttr
	sigAlgRaw      []byte
	sigAlgOID      []byte
	signature      []byte
	unsignedAttrs  []rawAttr
}

// signedData is a parsed ContentInfo holding SignedData; byte slices alias the input.
type signedData struct {
	version        int64
	digestAlgsRaw  []byte // SET TLV
	eContentType   []byte // OID content
	eContentRaw    []byte // EncapsulatedContentInfo TLV
	content        []byte // eContent OCTET STRING content; nil when detached
	hasContent     bool
	certs          [][]byte // CertificateChoices TLVs (certificate only)
	crls           [][]byte // RevocationInfoChoice TLVs
	signers        []signerInfo
	signedAttrsBuf [16]rawAttr
	unsignedBuf    [8]rawAttr
}

func (a *rawAttr) parse(s *cryptobyte.String) bool {
	var attr, oid, vals cryptobyte.String
	raw := []byte(*s)
	if !s.ReadASN1(&attr, cbasn1.SEQUENCE) {
		return false
	}
	a.raw = raw[:len(raw)-len(*s)]
	if !attr.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || !attr.ReadASN1(&vals, cbasn1.SET) || !attr.Empty() || len(vals) == 0 {
		return false
	}
	a.oid, a.values = oid, vals
	return true
}

// maxParsed bounds every list the parser reads (attributes, certificates, CRLs, SignerInfos): a verifier's
// policy limits are lower, and the bound keeps a 1 MiB document of tiny elements from costing more than a few
// microseconds before it is refused.
const maxParsed = 64

func parseAttrs(set cryptobyte.String, dst []rawAttr) ([]rawAttr, bool) {
	for n := 0; !set.Empty(); n++ {
		if n == maxParsed {
			return nil, false
		}
		var a rawAttr
		if !a.parse(&set) {
			return nil, false
		}
		dst = append(dst, a)
	}
	return dst, true
}

// readElement reads one TLV with tag and returns both the whole element and its content.
func readElement(s *cryptobyte.String, tag cbasn1.Tag) (elem, content cryptobyte.String, ok bool) {
	start := []byte(*s)
	if !s.ReadASN1(&content, tag) {
		return nil, nil, false
	}
	return start[:len(start)-len(*s)], content, true
}

func (si *signerInfo) parse(s *cryptobyte.String, attrBuf, unsignedBuf []rawAttr) error {
	start := []byte(*s)
	var body cryptobyte.String
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) {
		return formatErr("SignerInfo")
	}
	si.raw = start[:len(start)-len(*s)]
	if !body.ReadASN1Int64WithTag(&si.version, cbasn1.INTEGER) {
		return formatErr("SignerInfo version")
	}
	switch {
	case body.PeekASN1Tag(cbasn1.SEQUENCE):
		elem, ias, _ := readElement(&body, cbasn1.SEQUENCE)
		si.sidRaw = elem
		var issuer, serial cryptobyte.String
		iss := []byte(ias)
		if !ias.ReadASN1(&issuer, cbasn1.SEQUENCE) {
			return formatErr("issuerAndSerialNumber")
		}
		si.sidIssuer = iss[:len(iss)-len(ias)]
		if !ias.ReadASN1(&serial, cbasn1.INTEGER) || !ias.Empty() || len(serial) == 0 {
			return formatErr("issuerAndSerialNumber serial")
		}
		si.sidSerial = serial
	case body.PeekASN1Tag(tagSKI):
		elem, ski, _ := readElement(&body, tagSKI)
		si.sidRaw, si.sidSKI = elem, ski
	default:
		return formatErr("SignerIdentifier")
	}
	var alg cryptobyte.String
	var ok bool
	if si.digestAlgRaw, alg, ok = readElement(&body, cbasn1.SEQUENCE); !ok {
		return formatErr("digestAlgorithm")
	}
	var oid cryptobyte.String
	if !alg.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
		return formatErr("digestAlgorithm OID")
	}
	si.digestOID = oid
	if body.PeekASN1Tag(tagImplicit0) {
		elem, set, _ := readElement(&body, tagImplicit0)
		si.signedAttrsRaw = elem
		if si.signedAttrs, ok = parseAttrs(set, attrBuf[:0]); !ok {
			return formatErr("signedAttrs")
		}
	}
	if si.sigAlgRaw, alg, ok = readElement(&body, cbasn1.SEQUENCE); !ok {
		return formatErr("signatureAlgorithm")
	}
	if !alg.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
		return formatErr("signatureAlgorithm OID")
	}
	si.sigAlgOID = oid
	var sig cryptobyte.String
	if !body.ReadASN1(&sig, cbasn1.OCTET_STRING) {
		return formatErr("signature")
	}
	si.signature = sig
	if body.PeekASN1Tag(tagImplicit1) {
		var set cryptobyte.String
		body.ReadASN1(&set, tagImplicit1)
		if si.unsignedAttrs, ok = parseAttrs(set, unsignedBuf); !ok {
			return formatErr("unsignedAttrs")
		}
	}
	if !body.Empty() {
		return formatErr("trailing data in SignerInfo")
	}
	return nil
}

// parseSignedData parses der, a DER ContentInfo with contentType id-signedData (RFC 5652 §3, §5.1), into sd.
// It accepts DER only (definite, minimal lengths), as CAdES requires of the signed parts; trailing bytes are
// an error.
func parseSignedData(der []byte, sd *signedData) error {
	if h := parseHook.Load(); h != nil {
		(*h)(der)
	}
	// Reset, keeping the slices' storage: a pooled signedData parses without allocating in the common case.
	certs, crls, signers := sd.certs[:0], sd.crls[:0], sd.signers[:0]
	*sd = signedData{certs: certs, crls: crls, signers: signers}
	s := cryptobyte.String(der)
	var ci, oid, explicit, body cryptobyte.String
	if !s.ReadASN1(&ci, cbasn1.SEQUENCE) || !s.Empty() {
		return formatErr("ContentInfo")
	}
	if !ci.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || !bytes.Equal(oid, dSignedData) {
		return formatErr("contentType is not id-signedData")
	}
	if !ci.ReadASN1(&explicit, tagExplicit0) || !ci.Empty() {
		return formatErr("ContentInfo content")
	}
	if !explicit.ReadASN1(&body, cbasn1.SEQUENCE) || !explicit.Empty() {
		return formatErr("SignedData")
	}
	if !body.ReadASN1Int64WithTag(&sd.version, cbasn1.INTEGER) {
		return formatErr("SignedData version")
	}
	var ok bool
	if sd.digestAlgsRaw, _, ok = readElement(&body, cbasn1.SET); !ok {
		return formatErr("digestAlgorithms")
	}
	var eci cryptobyte.String
	if sd.eContentRaw, eci, ok = readElement(&body, cbasn1.SEQUENCE); !ok {
		return formatErr("encapContentInfo")
	}
	if !eci.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
		return formatErr("eContentType")
	}
	sd.eContentType = oid
	if eci.PeekASN1Tag(tagExplicit0) {
		var ex, oct cryptobyte.String
		if !eci.ReadASN1(&ex, tagExplicit0) || !ex.ReadASN1(&oct, cbasn1.OCTET_STRING) || !ex.Empty() {
			return formatErr("eContent (DER requires a primitive OCTET STRING)")
		}
		sd.content, sd.hasContent = oct, true
	}
	if !eci.Empty() {
		return formatErr("trailing data in encapContentInfo")
	}
	if body.PeekASN1Tag(tagImplicit0) {
		var set cryptobyte.String
		body.ReadASN1(&set, tagImplicit0)
		for !set.Empty() {
			var c cryptobyte.String
			if len(sd.certs) == maxParsed {
				return formatErr("too many certificates")
			}
			if !set.ReadASN1Element(&c, cbasn1.SEQUENCE) {
				return formatErr("certificates (only X.509 certificates are accepted)")
			}
			sd.certs = append(sd.certs, c)
		}
	}
	if body.PeekASN1Tag(tagImplicit1) {
		var set cryptobyte.String
		body.ReadASN1(&set, tagImplicit1)
		for !set.Empty() {
			var c cryptobyte.String
			if len(sd.crls) == maxParsed {
				return formatErr("too many CRLs")
			}
			if !set.ReadAnyASN1Element(&c, nil) {
				return formatErr("crls")
			}
			sd.crls = append(sd.crls, c)
		}
	}
	var sis cryptobyte.String
	if !body.ReadASN1(&sis, cbasn1.SET) || !body.Empty() {
		return formatErr("signerInfos")
	}
	for !sis.Empty() {
		if len(sd.signers) == 8 {
			return formatErr("too many SignerInfos")
		}
		var si signerInfo
		buf, ubuf := sd.signedAttrsBuf[:0], sd.unsignedBuf[:0]
		if len(sd.signers) > 0 {
			buf, ubuf = nil, nil
		}
		if err := si.parse(&sis, buf, ubuf); err != nil {
			return err
		}
		sd.signers = append(sd.signers, si)
	}
	return nil
}

// parseHook, when set (tests only), is called with every DER that parseSignedData parses: the ingestion tests
// count with it how often each document is parsed.
var parseHook atomic.Pointer[func(der []byte)]

// attr returns the attribute of type oid in attrs, and whether there was exactly one.
func findAttr(attrs []rawAttr, oid []byte) (a *rawAttr, n int) {
	for i := range attrs {
		if bytes.Equal(attrs[i].oid, oid) {
			if a == nil {
				a = &attrs[i]
			}
			n++
		}
	}
	return a, n
}

// ---- encoding ----

// algID appends an AlgorithmIdentifier. Hash algorithms are written without parameters (RFC 5754 §2),
// ECDSA without parameters (RFC 5758 §3.2), RSA with NULL parameters (RFC 4055 §5).
func algID(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, nullParams bool) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if nullParams {
			b.AddASN1NULL()
		}
	})
}

func algIDBytes(oid asn1.ObjectIdentifier, nullParams bool) []byte {
	var b cryptobyte.Builder
	algID(&b, oid, nullParams)
	return b.BytesOrPanic()
}

// attribute encodes Attribute ::= SEQUENCE { attrType OID, attrValues SET OF AttributeValue } with one value.
func attribute(oid asn1.ObjectIdentifier, value func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1(cbasn1.SET, value)
	})
	return b.BytesOrPanic()
}

// setOf returns the content of a DER SET OF: the elements sorted by their encodings (X.690 §11.6).
func setOf(elems [][]byte) []byte {
	sorted := slices.Clone(elems)
	slices.SortFunc(sorted, bytes.Compare)
	out := make([]byte, 0, sumLen(elems))
	for _, e := range sorted {
		out = append(out, e...)
	}
	return out
}

// addSetOf adds the content of a DER SET OF (elems sorted, as setOf) to b without an intermediate copy.
func addSetOf(b *cryptobyte.Builder, elems [][]byte) {
	if len(elems) > 1 && !slices.IsSortedFunc(elems, bytes.Compare) {
		elems = slices.Clone(elems)
		slices.SortFunc(elems, bytes.Compare)
	}
	for _, e := range elems {
		b.AddBytes(e)
	}
}

// sumLen is the total length of elems.
func sumLen(elems [][]byte) int {
	n := 0
	for _, e := range elems {
		n += len(e)
	}
	return n
}

// signatureAlgorithm returns the SignerInfo signatureAlgorithm and signer options for pub and h.
func signatureAlgorithm(pub crypto.PublicKey, h crypto.Hash) (alg []byte, opts crypto.SignerOpts, err error) {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		m := map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA256: oidECDSASHA256, crypto.SHA384: oidECDSASHA384, crypto.SHA512: oidECDSASHA512}
		return algIDBytes(m[h], false), h, nil
	case *rsa.PublicKey:
		m := map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA256: oidRSASHA256, crypto.SHA384: oidRSASHA384, crypto.SHA512: oidRSASHA512}
		return algIDBytes(m[h], true), h, nil
	case ed25519.PublicKey:
		return nil, nil, fmt.Errorf("%w: Ed25519 is not in the HIX-Rx-CAdES policy", ErrUnsupportedKey)
	}
	return nil, nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}

// signerInfoParts are the fields of a SignerInfo to encode.
type signerInfoParts struct {
	sid          []byte // SignerIdentifier TLV
	digestAlg    []byte // AlgorithmIdentifier TLV
	signedAttrs  []byte // content of the signedAttrs SET (already sorted)
	sigAlg       []byte
	signature    []byte
	unsignedAttr [][]byte // Attribute TLVs
}

func (p *signerInfoParts) marshal() []byte {
	// Sized up front (with room for the length octets of the nested TLVs), so the builder never grows.
	b := cryptobyte.NewBuilder(make([]byte, 0, len(p.sid)+len(p.digestAlg)+len(p.signedAttrs)+len(p.sigAlg)+len(p.signature)+sumLen(p.unsignedAttr)+64))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		version := int64(1)
		if len(p.sid) > 0 && p.sid[0] == byte(tagSKI) {
			version = 3
		}
		b.AddASN1Int64(version)
		b.AddBytes(p.sid)
		b.AddBytes(p.digestAlg)
		b.AddASN1(tagImplicit0, func(b *cryptobyte.Builder) { b.AddBytes(p.signedAttrs) })
		b.AddBytes(p.sigAlg)
		b.AddASN1OctetString(p.signature)
		if len(p.unsignedAttr) > 0 {
			b.AddASN1(tagImplicit1, func(b *cryptobyte.Builder) { addSetOf(b, p.unsignedAttr) })
		}
	})
	return b.BytesOrPanic()
}

// signedDataParts are the fields of a SignedData to encode inside a ContentInfo.
type signedDataParts struct {
	version      int64 // 0 means 1
	digestAlgs   [][]byte
	eContentType asn1.ObjectIdentifier
	eContentRaw  []byte // if set, used instead of eContentType and content
	content      []byte
	certs        [][]byte
	crls         [][]byte
	signerInfos  [][]byte
}

func (p *signedDataParts) marshal() ([]byte, error) {
	// Sized up front (with room for the length octets of the nested TLVs), so the builder never grows: a B-LT
	// prescription is about 10 KB, written three times per ingestion.
	b := cryptobyte.NewBuilder(make([]byte, 0, sumLen(p.digestAlgs)+len(p.eContentRaw)+len(p.content)+sumLen(p.certs)+
		sumLen(p.crls)+sumLen(p.signerInfos)+128))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				// RFC 5652 §5.1: version 3 when eContentType is not id-data (as in a TimeStampToken), else 1:
				// Mohr writes no v3 SignerInfos, attribute certificates or "other" certificate or revocation formats.
				version := p.version
				if version == 0 {
					version = 1
				}
				b.AddASN1Int64(version)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { addSetOf(b, p.digestAlgs) })
				if p.eContentRaw != nil {
					b.AddBytes(p.eContentRaw)
				} else {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(p.eContentType)
						b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) { b.AddASN1OctetString(p.content) })
					})
				}
				if len(p.certs) > 0 {
					b.AddASN1(tagImplicit0, func(b *cryptobyte.Builder) { addSetOf(b, p.certs) })
				}
				if len(p.crls) > 0 {
					b.AddASN1(tagImplicit1, func(b *cryptobyte.Builder) { addSetOf(b, p.crls) })
				}
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { addSetOf(b, p.signerInfos) })
			})
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("signing: encode SignedData: %w", err)
	}
	return der, nil
}

// issuerAndSerial encodes IssuerAndSerialNumber (RFC 5652 §10.2.4).
func issuerAndSerial(rawIssuer []byte, serial *big.Int) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(rawIssuer)
		b.AddASN1BigInt(serial)
	})
	return b.BytesOrPanic()
}

// utcOrGeneralized writes t as UTCTime for 1950..2049 and GeneralizedTime otherwise (RFC 5652 §11.3).
func utcOrGeneralized(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC().Truncate(time.Second)
	if t.Year() >= 1950 && t.Year() < 2050 {
		b.AddASN1UTCTime(t)
	} else {
		b.AddASN1GeneralizedTime(t)
	}
}
