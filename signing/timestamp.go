package signing

import (
	"bytes"
	"context"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// tstInfo is the part of TSTInfo (RFC 3161 §2.4.2) the verifier reads; slices alias the token.
type tstInfo struct {
	policy   []byte // OID content
	hashOID  []byte
	imprint  []byte
	serial   []byte
	genTime  time.Time
	accuracy time.Duration
	nonce    []byte
	hasNonce bool
}

// parseTSTInfo parses a DER TSTInfo:
//
//	TSTInfo ::= SEQUENCE { version INTEGER { v1(1) }, policy TSAPolicyId, messageImprint MessageImprint,
//	    serialNumber INTEGER, genTime GeneralizedTime, accuracy Accuracy OPTIONAL,
//	    ordering BOOLEAN DEFAULT FALSE, nonce INTEGER OPTIONAL, tsa [0] GeneralName OPTIONAL,
//	    extensions [1] IMPLICIT Extensions OPTIONAL }
func parseTSTInfo(der []byte) (tstInfo, error) {
	var t tstInfo
	s := cryptobyte.String(der)
	var body, pol, mi, alg, oid, imp, serial, gt cryptobyte.String
	var version int64
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !s.Empty() ||
		!body.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || version != 1 ||
		!body.ReadASN1(&pol, cbasn1.OBJECT_IDENTIFIER) ||
		!body.ReadASN1(&mi, cbasn1.SEQUENCE) || !mi.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
		!mi.ReadASN1(&imp, cbasn1.OCTET_STRING) || !mi.Empty() ||
		!body.ReadASN1(&serial, cbasn1.INTEGER) || !body.ReadASN1(&gt, cbasn1.GeneralizedTime) {
		return t, formatErr("TSTInfo")
	}
	t.policy, t.hashOID, t.imprint, t.serial = pol, oid, imp, serial
	var err error
	if t.genTime, err = parseGeneralizedTime(gt); err != nil {
		return t, err
	}
	if body.PeekASN1Tag(cbasn1.SEQUENCE) {
		var acc cryptobyte.String
		body.ReadASN1(&acc, cbasn1.SEQUENCE)
		var n int64
		if acc.PeekASN1Tag(cbasn1.INTEGER) && acc.ReadASN1Int64WithTag(&n, cbasn1.INTEGER) {
			t.accuracy += time.Duration(n) * time.Second
		}
		if acc.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific()) && acc.ReadASN1Int64WithTag(&n, cbasn1.Tag(0).ContextSpecific()) {
			t.accuracy += time.Duration(n) * time.Millisecond
		}
		if acc.PeekASN1Tag(cbasn1.Tag(1).ContextSpecific()) && acc.ReadASN1Int64WithTag(&n, cbasn1.Tag(1).ContextSpecific()) {
			t.accuracy += time.Duration(n) * time.Microsecond
		}
		if !acc.Empty() || t.accuracy < 0 {
			return t, formatErr("TSTInfo accuracy")
		}
	}
	if body.PeekASN1Tag(cbasn1.BOOLEAN) {
		var b bool
		if !body.ReadASN1Boolean(&b) {
			return t, formatErr("TSTInfo ordering")
		}
	}
	if body.PeekASN1Tag(cbasn1.INTEGER) {
		var n cryptobyte.String
		body.ReadASN1(&n, cbasn1.INTEGER)
		t.nonce, t.hasNonce = n, true
	}
	if body.PeekASN1Tag(tagExplicit0) {
		body.SkipASN1(tagExplicit0)
	}
	if body.PeekASN1Tag(tagImplicit1) {
		body.SkipASN1(tagImplicit1)
	}
	if !body.Empty() {
		return t, formatErr("trailing data in TSTInfo")
	}
	return t, nil
}

// oidString returns the dotted form of DER OID content, cached (TSA policies are few).
func (v *Verifier) oidString(der []byte) string {
	if s, ok := v.oids.get(string(der)); ok {
		return s
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(der) })
	s := cryptobyte.String(b.BytesOrPanic())
	var oid asn1.ObjectIdentifier
	str := ""
	if s.ReadASN1ObjectIdentifier(&oid) {
		str = oid.String()
	}
	v.oids.put(string(der), str)
	return str
}

// parseGeneralizedTime parses "YYYYMMDDhhmmss[.f+]Z" (RFC 3161 §2.4.2; X.690 §11.7: UTC, no trailing zeros).
func parseGeneralizedTime(b []byte) (time.Time, error) {
	if len(b) < 15 || b[len(b)-1] != 'Z' {
		return time.Time{}, formatErr("GeneralizedTime")
	}
	for _, c := range b[:14] {
		if c < '0' || c > '9' {
			return time.Time{}, formatErr("GeneralizedTime")
		}
	}
	n := func(i, j int) int { v, _ := strconv.Atoi(string(b[i:j])); return v }
	ns := 0
	frac := b[14 : len(b)-1]
	if len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 || frac[len(frac)-1] == '0' {
			return time.Time{}, formatErr("GeneralizedTime fraction")
		}
		for i, c := range frac[1:] {
			if c < '0' || c > '9' {
				return time.Time{}, formatErr("GeneralizedTime fraction")
			}
			ns += int(c-'0') * pow10(8-i)
		}
	}
	t := time.Date(n(0, 4), time.Month(n(4, 6)), n(6, 8), n(8, 10), n(10, 12), n(12, 14), ns, time.UTC)
	if t.Month() != time.Month(n(4, 6)) || t.Day() != n(6, 8) || t.Hour() != n(8, 10) || t.Minute() != n(10, 12) || t.Second() != n(12, 14) {
		return time.Time{}, formatErr("GeneralizedTime out of range")
	}
	return t, nil
}

func pow10(e int) int {
	r := 1
	for ; e > 0; e-- {
		r *= 10
	}
	return r
}

var errTimestampImprint = errors.New("message imprint does not match the signature")

// checkTimestamp validates an RFC 3161 TimeStampToken over data (see checkTimestampChain) and returns genTime.
func (v *Verifier) checkTimestamp(tok []byte, outerCerts [][]byte, data []byte, ti *TimestampInfo) (time.Time, error) {
	gen, _, err := v.checkTimestampChain(tok, outerCerts, data, ti)
	return gen, err
}

// checkTimestampChain validates an RFC 3161 TimeStampToken over data (for a signature timestamp, the SignerInfo
// signature value: RFC 3161 Appendix A, EN 319 122-1 §5.3): the token's CMS signature and ESS signing
// certificate, the TSA certificate's chain to the trust anchors with a critical timeStamping EKU (RFC 3161
// §2.3), the TSA trust list of the policy at genTime, acceptable algorithms at genTime, the message imprint,
// and the TSA certificate's validity at genTime. It returns genTime and the TSA's chain (for revocation
// checking by the caller).
func (v *Verifier) checkTimestampChain(tok []byte, outerCerts [][]byte, data []byte, ti *TimestampInfo) (time.Time, []*certEntry, error) {
	sd := v.sds.Get().(*signedData)
	defer v.sds.Put(sd)
	if err := parseSignedData(tok, sd); err != nil {
		return time.Time{}, nil, err
	}
	if len(sd.signers) != 1 || !sd.hasContent || !bytes.Equal(sd.eContentType, dTSTInfo) {
		return time.Time{}, nil, formatErr("not a TimeStampToken")
	}
	if len(sd.certs)+len(outerCerts) > v.limits.Certs || len(sd.signers[0].signedAttrs) > v.limits.SignedAttrs {
		return time.Time{}, nil, formatErr("timestamp token over the policy's limits")
	}
	info, err := parseTSTInfo(sd.content)
	if err != nil {
		return time.Time{}, nil, err
	}
	ti.GenTime = info.genTime
	ti.Serial = hex.EncodeToString(bytes.TrimLeft(info.serial, "\x00"))
	ti.Policy = v.oidString(info.policy)
	var certBuf [8]*certEntry
	certs := certBuf[:0]
	for _, set := range [][][]byte{sd.certs, outerCerts} {
		for _, c := range set {
			e, err := v.cert(c)
			if err != nil {
				return time.Time{}, nil, fmt.Errorf("timestamp certificate: %w", err)
			}
			certs = append(certs, e)
		}
	}
	si := &sd.signers[0]
	tsaCert := findSigner(si, certs)
	if tsaCert == nil {
		return time.Time{}, nil, errors.New("TSA certificate not found")
	}
	ti.TSA = tsaCert.info.Subject
	if sub, why := checkSignerInfo(si, dTSTInfo, sd.content, tsaCert, needESS, v.trust, info.genTime, v.sigs); sub != "" {
		return time.Time{}, nil, fmt.Errorf("%s: %s", sub, why)
	}
	h := hashFromDER(info.hashOID)
	if h == 0 || v.trust.algorithm(hashName(h), 0, info.genTime) != algOK {
		return time.Time{}, nil, errors.New("timestamp hash algorithm not allowed")
	}
	sum, n := digestOf(h, data)
	got := sum[:n]
	if !bytes.Equal(got, info.imprint) {
		return time.Time{}, nil, errTimestampImprint
	}
	ch := v.chain(tsaCert, certs, chainTSA)
	if ch.sub != "" {
		return time.Time{}, nil, fmt.Errorf("TSA %s: %s", ch.sub, ch.reason)
	}
	if err := v.trust.trustedTSA(tsaCert.cert, info.genTime); err != nil {
		return time.Time{}, nil, err
	}
	if sub, why := v.trust.chainAlgorithms(ch.chain, info.genTime); sub != "" {
		return time.Time{}, nil, fmt.Errorf("TSA %s: %s", sub, why)
	}
	if c := outOfBounds(ch.chain, info.genTime); c != nil {
		return time.Time{}, nil, fmt.Errorf("TSA certificate %q not valid at genTime", c.info.Subject)
	}
	return info.genTime, ch.chain, nil
}

// signatureTimestamps checks every signature timestamp of si (EN 319 102-1 §5.4), including the revocation
// status of each TSA's chain at its genTime, records them in r, sets r.Level and r.BestSignatureTime (the
// earliest accepted one), and reports whether there is a proof of existence. A non-nil report is the failure
// to return: a malformed attribute is FORMAT_FAILURE, a timestamp that is not accepted NO_POE, a TSA whose
// status cannot be established TRY_LATER.
func (v *Verifier) signatureTimestamps(ctx context.Context, si *signerInfo, certs [][]byte, in *revInput, r *Report) (poe bool, failed *Report) {
	r.Level = "B-B"
	if _, n := findAttr(si.unsignedAttrs, dSigTimeStamp); n > v.limits.Timestamps {
		return false, r.fail(FormatFailure, "%d signature timestamps; the policy allows %d", n, v.limits.Timestamps)
	}
	for i := range si.unsignedAttrs {
		a := &si.unsignedAttrs[i]
		if !bytes.Equal(a.oid, dSigTimeStamp) {
			continue
		}
		tok, ok := a.single()
		if !ok { // EN 319 122-1 §5.3: the attribute has exactly one value (a TimeStampToken)
			return false, r.fail(FormatFailure, "signature-time-stamp attribute must have one value")
		}
		ti := TimestampInfo{Type: "signature"}
		gen, tsaChain, err := v.checkTimestampChain(tok, certs, si.signature, &ti)
		if err != nil {
			ti.Detail = err.Error()
			r.Timestamps = append(r.Timestamps, ti)
			if errors.Is(err, errFormat) {
				return false, r.fail(FormatFailure, "signature timestamp: %v", err)
			}
			return false, r.fail(NoPOE, "signature timestamp not accepted: %v", err)
		}
		for k := 0; k+1 < len(tsaChain); k++ {
			st := v.certStatus(ctx, in, tsaChain[k], tsaChain[k+1], gen, r)
			if st == nil {
				ti.Detail = "revocation status of the TSA unavailable"
				r.Timestamps = append(r.Timestamps, ti)
				return false, r.fail(TryLater, "no revocation information for TSA certificate %q at the timestamp's time", tsaChain[k].info.Subject)
			}
			r.Revocation = append(r.Revocation, st.info)
			if st.revoked && !st.at.After(gen) {
				ti.Detail = "TSA certificate revoked"
				r.Timestamps = append(r.Timestamps, ti)
				if k > 0 { // a CA of the TSA's chain: EN 319 102-1 §5.2.6 reports it as such
					return false, r.fail(RevokedCANoPOE, "CA certificate %q was revoked at %s, before the timestamp", tsaChain[k].info.Subject, st.at.Format(time.RFC3339))
				}
				return false, r.fail(NoPOE, "TSA certificate %q was revoked at %s, before the timestamp", tsaChain[k].info.Subject, st.at.Format(time.RFC3339))
			}
		}
		ti.Valid = true
		r.Timestamps = append(r.Timestamps, ti)
		if !poe || gen.Before(r.BestSignatureTime) {
			r.BestSignatureTime = gen
		}
		poe = true
		r.Level = "B-T"
	}
	if poe && r.ClaimedSigningTime != nil && r.ClaimedSigningTime.After(r.BestSignatureTime.Add(v.cfg.ClockSkew)) {
		return poe, r.fail(TimestampOrderFailure, "signing-time %s is after the signature timestamp %s",
			r.ClaimedSigningTime.Format(time.RFC3339), r.BestSignatureTime.Format(time.RFC3339))
	}
	return poe, nil
}
