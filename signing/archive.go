package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Archive timestamps (B-LTA) after ETSI EN 319 122-1 §5.5.2: the unsigned attribute archive-time-stamp-v3
// (id-aa-ets-archiveTimestampV3, 0.4.0.1733.2.4) holds an RFC 3161 TimeStampToken whose SignerInfo carries,
// as its only Mohr-added unsigned attribute, an ats-hash-index-v3 (0.4.0.19122.1.5):
//
//	ATSHashIndexV3 ::= SEQUENCE {
//	    hashIndAlgorithm            AlgorithmIdentifier DEFAULT {algorithm id-sha256},
//	    certificatesHashIndex       SEQUENCE OF OCTET STRING,
//	    crlsHashIndex               SEQUENCE OF OCTET STRING,
//	    unsignedAttrValuesHashIndex SEQUENCE OF OCTET STRING }
//
// The token's message imprint (§5.5.2.2) is the hash of the concatenation of
//  1. SignedData.encapContentInfo.eContentType (TLV);
//  2. the hash of the signed content (what message-digest covers), with the imprint's hash algorithm;
//  3. the SignerInfo's version, sid, digestAlgorithm, signedAttrs, signatureAlgorithm and signature (TLVs, in
//     their order);
//  4. the ATSHashIndexV3 (TLV).
//
// The index (§5.5.2.3) lists the hash of every element of SignedData.certificates and SignedData.crls and, for
// every value of every unsigned attribute of the SignerInfo (earlier archive timestamps included), the hash of
// attrType (TLV) followed by that value (TLV). Elements added after the timestamp are not in its index, so
// validation data for an archive timestamp may be added after it, and the next archive timestamp covers them.

var (
	oidArchiveTimestampV3 = asn1.ObjectIdentifier{0, 4, 0, 1733, 2, 4}  // id-aa-ets-archiveTimestampV3, EN 319 122-1 §5.5.2
	oidATSHashIndexV3     = asn1.ObjectIdentifier{0, 4, 0, 19122, 1, 5} // id-aa-ATSHashIndex-v3, EN 319 122-1 §5.5.2.3
	dArchiveTS            = derOID(oidArchiveTimestampV3)               // content octets
	dATSHashIndexV3       = derOID(oidATSHashIndexV3)
)

// atsHashIndex is a parsed ATSHashIndexV3; hashes alias the input.
type atsHashIndex struct {
	raw                 []byte // the SEQUENCE TLV, as it goes into the imprint
	hash                crypto.Hash
	explicitAlg         bool // hashIndAlgorithm encoded (other implementations may spell out SHA-256)
	certs, crls, values [][]byte
}

// tlvs returns the elements of a SET or SEQUENCE content.
func tlvs(content []byte) ([][]byte, bool) {
	s := cryptobyte.String(content)
	var out [][]byte
	for !s.Empty() {
		var e cryptobyte.String
		if !s.ReadAnyASN1Element(&e, nil) {
			return nil, false
		}
		out = append(out, e)
	}
	return out, true
}

// unsignedValueHashInput returns attrType TLV || value TLV for each value of each unsigned attribute of si, in
// encoded order, with the attribute each belongs to.
func unsignedValueHashInputs(si *signerInfo) (inputs [][]byte, owner []int, err error) {
	for i := range si.unsignedAttrs {
		a := &si.unsignedAttrs[i]
		vals, ok := tlvs(a.values)
		if !ok {
			return nil, nil, formatErr("unsigned attribute values")
		}
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(a.oid) })
		typ := b.BytesOrPanic()
		for _, v := range vals {
			inputs = append(inputs, append(append([]byte{}, typ...), v...))
			owner = append(owner, i)
		}
	}
	return inputs, owner, nil
}

// buildHashIndex makes the ATSHashIndexV3 of sd as it is now, with SHA-256 (the DEFAULT, so not encoded).
func buildHashIndex(sd *signedData) ([]byte, error) {
	inputs, _, err := unsignedValueHashInputs(&sd.signers[0])
	if err != nil {
		return nil, err
	}
	hashes := func(b *cryptobyte.Builder, items [][]byte) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, it := range items {
				sum, n := digestOf(crypto.SHA256, it)
				b.AddASN1OctetString(sum[:n])
			}
		})
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		hashes(b, sd.certs)
		hashes(b, sd.crls)
		hashes(b, inputs)
	})
	return b.Bytes()
}

// parseHashIndex parses an ATSHashIndexV3 TLV.
func parseHashIndex(raw []byte) (*atsHashIndex, error) {
	idx := &atsHashIndex{raw: raw, hash: crypto.SHA256}
	s := cryptobyte.String(raw)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, formatErr("ats-hash-index-v3")
	}
	// hashIndAlgorithm is an AlgorithmIdentifier (a SEQUENCE starting with an OID); the indexes are SEQUENCEs of
	// OCTET STRINGs.
	var peek cryptobyte.String = seq
	var first cryptobyte.String
	if peek.ReadASN1(&first, cbasn1.SEQUENCE) && first.PeekASN1Tag(cbasn1.OBJECT_IDENTIFIER) {
		var alg, oid cryptobyte.String
		seq.ReadASN1(&alg, cbasn1.SEQUENCE)
		alg.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER)
		idx.explicitAlg = true
		if idx.hash = hashFromDER(oid); idx.hash == 0 {
			return nil, errors.New("ats-hash-index-v3: hash algorithm not allowed")
		}
	}
	for _, dst := range []*[][]byte{&idx.certs, &idx.crls, &idx.values} {
		var list cryptobyte.String
		if !seq.ReadASN1(&list, cbasn1.SEQUENCE) {
			return nil, formatErr("ats-hash-index-v3")
		}
		for !list.Empty() {
			var h cryptobyte.String
			if !list.ReadASN1(&h, cbasn1.OCTET_STRING) || len(h) != idx.hash.Size() {
				return nil, formatErr("ats-hash-index-v3 entry")
			}
			*dst = append(*dst, h)
		}
	}
	if !seq.Empty() {
		return nil, formatErr("ats-hash-index-v3")
	}
	return idx, nil
}

// signerFields returns the TLVs of version, sid, digestAlgorithm, signedAttrs, signatureAlgorithm and signature of
// a SignerInfo (EN 319 122-1 §5.5.2.2 item 3), concatenated as encoded.
func signerFields(si *signerInfo) ([]byte, error) {
	s := cryptobyte.String(si.raw)
	var body cryptobyte.String
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) {
		return nil, formatErr("SignerInfo")
	}
	start := []byte(body)
	var e cryptobyte.String
	for _, tag := range []cbasn1.Tag{cbasn1.INTEGER, 0, cbasn1.SEQUENCE} { // version, sid (any), digestAlgorithm
		ok := false
		if tag == 0 {
			ok = body.ReadAnyASN1Element(&e, nil)
		} else {
			ok = body.ReadASN1Element(&e, tag)
		}
		if !ok {
			return nil, formatErr("SignerInfo")
		}
	}
	if body.PeekASN1Tag(tagImplicit0) && !body.ReadASN1Element(&e, tagImplicit0) {
		return nil, formatErr("SignerInfo signedAttrs")
	}
	if !body.ReadASN1Element(&e, cbasn1.SEQUENCE) || !body.ReadASN1Element(&e, cbasn1.OCTET_STRING) {
		return nil, formatErr("SignerInfo")
	}
	return start[:len(start)-len(body)], nil
}

// archiveImprintInput is the byte string whose hash (with h) an archive-time-stamp-v3 with the index idxRaw
// time-stamps (EN 319 122-1 §5.5.2.2).
func archiveImprintInput(sd *signedData, h crypto.Hash, idxRaw []byte) ([]byte, error) {
	if !sd.hasContent {
		return nil, formatErr("archive timestamp of a detached signature")
	}
	fields, err := signerFields(&sd.signers[0])
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(sd.eContentType) })
	sum, n := digestOf(h, sd.content)
	b.AddBytes(sum[:n])
	b.AddBytes(fields)
	b.AddBytes(idxRaw)
	return b.Bytes()
}

// AddArchiveTimestamp upgrades a B-LT (or B-LTA) signature to B-LTA by adding an archive-time-stamp-v3 with its
// ats-hash-index-v3 (EN 319 122-1 §5.5.2), time-stamped by ts with SHA-256. Over a B-LTA it is archive-timestamp
// renewal: the new timestamp's index covers the earlier archive timestamps. Validation data for the archive TSA
// travels inside its token.
func AddArchiveTimestamp(ctx context.Context, der []byte, ts Timestamper) ([]byte, error) {
	sd, err := parseOne(der)
	if err != nil {
		return nil, err
	}
	idx, err := buildHashIndex(sd)
	if err != nil {
		return nil, err
	}
	in, err := archiveImprintInput(sd, crypto.SHA256, idx)
	if err != nil {
		return nil, err
	}
	sum, n := digestOf(crypto.SHA256, in)
	tok, err := ts.Timestamp(ctx, crypto.SHA256, sum[:n])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTimestamp, err)
	}
	tsd, err := parseOne(tok)
	if err != nil {
		return nil, fmt.Errorf("%w: token: %w", ErrTimestamp, err)
	}
	if _, k := findAttr(tsd.signers[0].unsignedAttrs, dATSHashIndexV3); k > 0 {
		return nil, fmt.Errorf("%w: token already carries an ats-hash-index-v3", ErrTimestamp)
	}
	tok, err = rebuild(tsd, nil, [][]byte{attribute(oidATSHashIndexV3, func(b *cryptobyte.Builder) { b.AddBytes(idx) })})
	if err != nil {
		return nil, err
	}
	return rebuild(sd, nil, [][]byte{attribute(oidArchiveTimestampV3, func(b *cryptobyte.Builder) { b.AddBytes(tok) })})
}

// archiveTS is one archive-time-stamp-v3 of a signature.
type archiveTS struct {
	attr    int    // index among the SignerInfo's unsigned attributes
	value   []byte // attrType TLV || value TLV, as a later index hashes it
	token   []byte // TimeStampToken (ContentInfo)
	idx     *atsHashIndex
	hash    crypto.Hash // of the message imprint
	genTime time.Time
	tsa     *x509.Certificate // the token's signer, nil when not found
}

// archiveTimestamps parses the archive-time-stamp-v3 attributes of sd, oldest first.
func archiveTimestamps(sd *signedData) ([]archiveTS, error) {
	si := &sd.signers[0]
	var out []archiveTS
	for i := range si.unsignedAttrs {
		a := &si.unsignedAttrs[i]
		if !bytes.Equal(a.oid, dArchiveTS) {
			continue
		}
		tok, ok := a.single()
		if !ok {
			return nil, formatErr("archive-time-stamp-v3 must have one value")
		}
		var tsd signedData
		if err := parseSignedData(tok, &tsd); err != nil || !tsd.hasContent || len(tsd.signers) != 1 || !bytes.Equal(tsd.eContentType, dTSTInfo) {
			return nil, formatErr("archive timestamp token")
		}
		info, err := parseTSTInfo(tsd.content)
		if err != nil {
			return nil, err
		}
		ia, k := findAttr(tsd.signers[0].unsignedAttrs, dATSHashIndexV3)
		if k != 1 {
			return nil, formatErr("archive timestamp token needs exactly one ats-hash-index-v3")
		}
		iv, ok := ia.single()
		if !ok {
			return nil, formatErr("ats-hash-index-v3 must have one value")
		}
		idx, err := parseHashIndex(iv)
		if err != nil {
			return nil, err
		}
		var typ cryptobyte.Builder
		typ.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(a.oid) })
		at := archiveTS{attr: i, value: append(typ.BytesOrPanic(), tok...), token: tok, idx: idx,
			hash: hashFromDER(info.hashOID), genTime: info.genTime}
		for _, c := range tsd.certs {
			if x, err := x509.ParseCertificate(c); err == nil {
				if e := findSigner(&tsd.signers[0], []*certEntry{{cert: x}}); e != nil {
					at.tsa = x
				}
			}
		}
		out = append(out, at)
	}
	slices.SortStableFunc(out, func(a, b archiveTS) int { return a.genTime.Compare(b.genTime) })
	return out, nil
}

// ArchiveState says what a signature's newest archive timestamp relies on, for archive-timestamp renewal.
type ArchiveState struct {
	// Count of archive-time-stamp-v3 attributes.
	Count int
	// Newest is the genTime of the newest one; TSANotAfter is when its TSA certificate expires (with no archive
	// timestamp: the earliest expiry among the signature timestamps' TSA certificates).
	Newest, TSANotAfter time.Time
	// AlgorithmsNotAfter is the earliest end date, in the trust policy's AlgorithmRules, of the algorithms
	// the newest archive timestamp (the signature timestamps) relies on; zero when none ends. Set by RenewalDue.
	AlgorithmsNotAfter time.Time
}

// ArchiveStatus reads the archive timestamps of der (without validating them: the Verifier does that).
func ArchiveStatus(der []byte) (ArchiveState, error) {
	sd, err := parseOne(der)
	if err != nil {
		return ArchiveState{}, err
	}
	ats, err := archiveTimestamps(sd)
	if err != nil {
		return ArchiveState{}, err
	}
	st := ArchiveState{Count: len(ats)}
	if len(ats) > 0 {
		last := ats[len(ats)-1]
		st.Newest = last.genTime
		if last.tsa == nil {
			return st, formatErr("archive timestamp token does not carry its TSA certificate")
		}
		st.TSANotAfter = last.tsa.NotAfter
		return st, nil
	}
	// No archive timestamp yet: what the signature relies on is its signature timestamp.
	tsaCerts, err := timestampCerts(der)
	if err != nil {
		return st, err
	}
	for _, c := range tsaCerts {
		if hasEKU(c, x509.ExtKeyUsageTimeStamping) && (st.TSANotAfter.IsZero() || c.NotAfter.Before(st.TSANotAfter)) {
			st.TSANotAfter = c.NotAfter
		}
	}
	if st.TSANotAfter.IsZero() {
		return st, formatErr("no signature timestamp with its TSA certificate to archive")
	}
	return st, nil
}

// TokenArchiveDue is NextArchiveDueUnder for a signature whose only timestamp is the signature timestamp tok
// (an RFC 3161 TimeStampToken), as an ingested prescription is: window before the earliest of its TSA
// certificate's expiry and the end, under p's AlgorithmRules, of an algorithm the token relies on. It reads the
// token only, not the whole signature (Prescription.SignatureTimestamp).
func TokenArchiveDue(tok []byte, window time.Duration, p *TrustPolicy) (time.Time, error) {
	return tokenArchiveDue(tok, window, p, x509.ParseCertificate)
}

// TokenArchiveDue is the package function TokenArchiveDue with the token's certificates parsed through v's
// certificate cache.
func (v *Verifier) TokenArchiveDue(tok []byte, window time.Duration, p *TrustPolicy) (time.Time, error) {
	return tokenArchiveDue(tok, window, p, v.parseCert)
}

func tokenArchiveDue(tok []byte, window time.Duration, p *TrustPolicy, parse func([]byte) (*x509.Certificate, error)) (time.Time, error) {
	var tsd signedData
	if err := parseSignedData(tok, &tsd); err != nil {
		return time.Time{}, err
	}
	var end time.Time
	for _, c := range tsd.certs {
		if x, err := parse(c); err == nil && hasEKU(x, x509.ExtKeyUsageTimeStamping) && (end.IsZero() || x.NotAfter.Before(end)) {
			end = x.NotAfter
		}
	}
	if end.IsZero() {
		return time.Time{}, formatErr("no signature timestamp with its TSA certificate to archive")
	}
	rules := DefaultAlgorithms()
	if p != nil {
		rules = p.algorithms()
	}
	alg, err := tokenAlgorithmsEnd(tok, rules, parse)
	if err != nil {
		return time.Time{}, err
	}
	if !alg.IsZero() && alg.Before(end) {
		end = alg
	}
	return end.Add(-window), nil
}

// RenewalDue reports whether der needs a (new) archive timestamp at now under the trust policy p: the TSA
// certificate of the newest archive timestamp (of the signature timestamps when there is none yet) expires
// within window, or an algorithm that timestamp relies on (its imprint digest, its signature's digest, the TSA's
// key type and size, the digest of the signature on the TSA certificate) reaches the end date of its
// AlgorithmRule in p within window (docs/signature-policy.md §4; EN 319 102-1 §5.6.2.5: renew before the
// algorithms protecting the evidence weaken). An algorithm no rule of p admits makes renewal due at once. A nil
// p means DefaultAlgorithms. st.AlgorithmsNotAfter says which end date applied.
func RenewalDue(der []byte, now time.Time, window time.Duration, p *TrustPolicy) (bool, ArchiveState, error) {
	st, err := ArchiveStatus(der)
	if err != nil {
		return false, st, err
	}
	if st.AlgorithmsNotAfter, err = archiveAlgorithmsEnd(der, p); err != nil {
		return false, st, err
	}
	due := !now.Add(window).Before(st.TSANotAfter) ||
		(!st.AlgorithmsNotAfter.IsZero() && !now.Add(window).Before(st.AlgorithmsNotAfter))
	return due, st, nil
}

// archiveAlgorithmsEnd is the earliest end date under p (DefaultAlgorithms when nil) of the algorithms the
// newest archive timestamp of der relies on (of its signature timestamps when it has none); zero when none ends.
func archiveAlgorithmsEnd(der []byte, p *TrustPolicy) (time.Time, error) {
	rules := DefaultAlgorithms()
	if p != nil {
		rules = p.algorithms()
	}
	sd, err := parseOne(der)
	if err != nil {
		return time.Time{}, err
	}
	var toks [][]byte
	if ats, err := archiveTimestamps(sd); err == nil && len(ats) > 0 {
		toks = [][]byte{ats[len(ats)-1].token}
	} else {
		for _, a := range sd.signers[0].unsignedAttrs {
			if tok, ok := a.single(); ok && bytes.Equal(a.oid, dSigTimeStamp) {
				toks = append(toks, tok)
			}
		}
	}
	var first time.Time
	for _, tok := range toks {
		end, err := tokenAlgorithmsEnd(tok, rules, x509.ParseCertificate)
		if err != nil {
			return time.Time{}, err
		}
		if !end.IsZero() && (first.IsZero() || end.Before(first)) {
			first = end
		}
	}
	return first, nil
}

// tokenAlgorithmsEnd returns the earliest end date, under rules, of the algorithms a TimeStampToken relies on:
// its imprint digest, its SignerInfo's digest, the TSA's key (type and size) and the digest of the signature
// on the TSA certificate. Zero when no rule that admits them ends; the token's genTime when one is admitted by
// no rule (renewal due at once).
func tokenAlgorithmsEnd(tok []byte, rules []AlgorithmRule, parse func([]byte) (*x509.Certificate, error)) (time.Time, error) {
	var tsd signedData
	if err := parseSignedData(tok, &tsd); err != nil || !tsd.hasContent || len(tsd.signers) != 1 {
		return time.Time{}, formatErr("timestamp token")
	}
	info, err := parseTSTInfo(tsd.content)
	if err != nil {
		return time.Time{}, err
	}
	type use struct {
		name string
		bits int
	}
	uses := []use{{hashName(hashFromDER(info.hashOID)), 0}, {hashName(hashFromDER(tsd.signers[0].digestOID)), 0}}
	for _, c := range tsd.certs {
		if x, err := parse(c); err == nil && findSigner(&tsd.signers[0], []*certEntry{{cert: x}}) != nil {
			name, bits := keyName(x.PublicKey)
			uses = append(uses, use{name, bits}, use{hashName(sigHash(x.SignatureAlgorithm)), 0})
		}
	}
	var end time.Time
	for _, u := range uses {
		e, ok := algorithmEnd(rules, u.name, u.bits)
		if !ok {
			return info.genTime, nil
		}
		if !e.IsZero() && (end.IsZero() || e.Before(end)) {
			end = e
		}
	}
	return end, nil
}

// algorithmEnd is the end date of the rules admitting name (with bits for RSA): the latest NotAfter among them,
// zero when one has none; ok is false when no rule admits it.
func algorithmEnd(rules []AlgorithmRule, name string, bits int) (end time.Time, ok bool) {
	for _, r := range rules {
		if r.Name != name || bits < r.MinBits {
			continue
		}
		if r.NotAfter.IsZero() {
			return time.Time{}, true
		}
		if r.NotAfter.After(end) {
			end = r.NotAfter
		}
		ok = true
	}
	return end, ok
}
