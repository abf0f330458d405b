package signing

// Signed attributes and the SignerInfo's cryptography (RFC 5652 §5.3-§5.6, RFC 5035, RFC 6211, EN 319 122-1
// §5.2), and the HIX-Rx-CAdES policy attributes (docs/signature-policy.md §3).

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/asn1"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// digestOf hashes the concatenation of parts with h. For SHA-256 (the policy's hash) it returns the digest by
// value through sha256.Sum256 and a pooled scratch buffer, so the hot path allocates nothing here.
func digestOf(h crypto.Hash, parts ...[]byte) (out [64]byte, n int) {
	if h == crypto.SHA256 {
		var s [32]byte
		if len(parts) == 1 {
			s = sha256.Sum256(parts[0])
		} else {
			bp := scratchPool.Get().(*[]byte)
			b := (*bp)[:0]
			for _, p := range parts {
				b = append(b, p...)
			}
			s = sha256.Sum256(b)
			*bp = b[:0]
			scratchPool.Put(bp)
		}
		copy(out[:], s[:])
		return out, 32
	}
	d := h.New()
	for _, p := range parts {
		d.Write(p)
	}
	return out, copy(out[:], d.Sum(nil))
}

var setTag = []byte{0x31}

// siNeeds says which optional signed attributes a profile requires.
type siNeeds int

const (
	needESS           siNeeds = 1 << iota // signing-certificate-v2 (RFC 5035)
	needAlgProtection                     // CMS algorithm protection (RFC 6211)
)

// checkSignerInfo verifies a SignerInfo over content per RFC 5652 §5.4 and §5.6: content-type matches
// eContentType, message-digest matches, signing-certificate-v2 (RFC 5035) names the certificate, the signature
// verifies, and CMS algorithm protection (RFC 6211 §3) matches when present (required is true for
// HIX-Rx-CAdES signatures). sigs, when not nil, remembers signatures that verified (sigcache.go).
func checkSignerInfo(si *signerInfo, eContentType, content []byte, signer *certEntry, need siNeeds, tp *TrustPolicy, at time.Time, sigs *sigCache) (SubIndication, string) {
	algProtRequired := need&needAlgProtection != 0
	h := hashFromDER(si.digestOID)
	if h == 0 || tp.algorithm(hashName(h), 0, at) == algRefused {
		return CryptoConstraintsFailure, "digest algorithm not allowed"
	}
	if si.signedAttrsRaw == nil {
		return FormatFailure, "no signed attributes"
	}
	if duplicateAttr(si.signedAttrs) { // RFC 5652 §5.3 / EN 319 122-1: each signed attribute at most once
		return FormatFailure, "duplicate signed attribute"
	}
	if name, bits := keyName(signer.cert.PublicKey); tp.algorithm(name, bits, at) == algRefused {
		return CryptoConstraintsFailure, "signing key " + name + " is not allowed by the policy"
	}
	ct, _ := findAttr(si.signedAttrs, dContentType)
	mdA, _ := findAttr(si.signedAttrs, dMessageDigest)
	if ct == nil || mdA == nil {
		return FormatFailure, "content-type or message-digest attribute missing"
	}
	v, ok := ct.single()
	var oid cryptobyte.String
	if !ok || !v.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || !bytes.Equal(oid, eContentType) {
		return FormatFailure, "content-type attribute does not match eContentType"
	}
	v, ok = mdA.single()
	var md cryptobyte.String
	if !ok || !v.ReadASN1(&md, cbasn1.OCTET_STRING) {
		return FormatFailure, "malformed message-digest attribute"
	}
	if sum, n := digestOf(h, content); !bytes.Equal(sum[:n], md) {
		return HashFailure, "message digest does not match the content"
	}
	if _, n := findAttr(si.signedAttrs, dSigningCertV2); n > 0 || need&needESS != 0 {
		if sub, why := checkSigningCertV2(si, signer); sub != "" {
			return sub, why
		}
	}
	family, sigHash := sigAlgFromDER(si.sigAlgOID)
	if family == "" || (sigHash != 0 && sigHash != h) {
		return CryptoConstraintsFailure, "signature algorithm not allowed"
	}
	sum, n := digestOf(h, setTag, si.signedAttrsRaw[1:])
	digest := sum[:n]
	valid, known := verifySignature(sigs, signer, family, h, digest, si.signature)
	if !known {
		return CryptoConstraintsFailure, "public key algorithm not allowed"
	}
	if !valid {
		return SigCryptoFailure, "signature does not verify"
	}
	ap, _ := findAttr(si.signedAttrs, dAlgProtection)
	if ap == nil {
		if algProtRequired {
			return FormatFailure, "CMS algorithm protection attribute missing"
		}
		return "", ""
	}
	// CMSAlgorithmProtection ::= SEQUENCE { digestAlgorithm, signatureAlgorithm [1] IMPLICIT OPTIONAL, ... }
	v, ok = ap.single()
	var seq, dAlg, sAlg cryptobyte.String
	if !ok || !v.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Element(&dAlg, cbasn1.SEQUENCE) ||
		!seq.ReadASN1(&sAlg, cbasn1.Tag(1).ContextSpecific().Constructed()) {
		return SigCryptoFailure, "malformed CMS algorithm protection attribute"
	}
	var siSig cryptobyte.String = si.sigAlgRaw
	var siSigContent cryptobyte.String
	siSig.ReadASN1(&siSigContent, cbasn1.SEQUENCE)
	if !bytes.Equal(dAlg, si.digestAlgRaw) || !bytes.Equal(sAlg, siSigContent) {
		return SigCryptoFailure, "CMS algorithm protection does not match the algorithms used (RFC 6211)"
	}
	return "", ""
}

// duplicateAttr reports whether two attributes have the same type, in O(n log n): the attribute types are
// sorted (by index, in a fixed buffer for the usual counts) and neighbours compared.
func duplicateAttr(attrs []rawAttr) bool {
	var buf [32]int
	idx := buf[:0]
	for i := range attrs {
		idx = append(idx, i)
	}
	slices.SortFunc(idx, func(a, b int) int { return bytes.Compare(attrs[a].oid, attrs[b].oid) })
	for k := 1; k < len(idx); k++ {
		if bytes.Equal(attrs[idx[k-1]].oid, attrs[idx[k]].oid) {
			return true
		}
	}
	return false
}

// checkSigningCertV2 checks that signing-certificate-v2 (RFC 5035 §3) is present and its first ESSCertIDv2
// hashes to the signer's certificate.
func checkSigningCertV2(si *signerInfo, signer *certEntry) (SubIndication, string) {
	a, n := findAttr(si.signedAttrs, dSigningCertV2)
	if a == nil || n != 1 {
		return FormatFailure, "signing-certificate-v2 attribute missing"
	}
	v, ok := a.single()
	var scv2, certs, id, hashV cryptobyte.String
	if !ok || !v.ReadASN1(&scv2, cbasn1.SEQUENCE) || !scv2.ReadASN1(&certs, cbasn1.SEQUENCE) || !certs.ReadASN1(&id, cbasn1.SEQUENCE) {
		return FormatFailure, "malformed signing-certificate-v2"
	}
	h := crypto.SHA256
	if id.PeekASN1Tag(cbasn1.SEQUENCE) {
		var alg, oid cryptobyte.String
		if !id.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
			return FormatFailure, "malformed signing-certificate-v2"
		}
		if h = hashFromDER(oid); h == 0 {
			return CryptoConstraintsFailure, "signing-certificate-v2 hash not allowed"
		}
	}
	if !id.ReadASN1(&hashV, cbasn1.OCTET_STRING) {
		return FormatFailure, "malformed signing-certificate-v2"
	}
	var got []byte
	if h == crypto.SHA256 {
		got = signer.fp[:]
	} else {
		d := h.New()
		d.Write(signer.cert.Raw)
		got = d.Sum(nil)
	}
	if !bytes.Equal(got, hashV) {
		return NoSigningCertificateFound, "signing-certificate-v2 does not name the certificate that signed"
	}
	return "", ""
}

// checkPolicyAttrs checks the HIX-Rx-CAdES signed attributes: mime-type, commitment-type-indication (proof of
// origin) and signature-policy-identifier with the expected OID and hash (EN 319 122-1 §5.2.3, §5.2.4, §5.2.9).
func (v *Verifier) checkPolicyAttrs(si *signerInfo) (SubIndication, string) {
	a, n := findAttr(si.signedAttrs, dMimeType)
	if a == nil || n != 1 {
		return SigConstraintsFailure, "mime-type attribute missing"
	}
	val, ok := a.single()
	var mt cryptobyte.String
	if !ok || !val.ReadASN1(&mt, cbasn1.UTF8String) || string(mt) != MIMEFHIRJSON {
		return SigConstraintsFailure, "mime-type must be " + MIMEFHIRJSON
	}
	a, n = findAttr(si.signedAttrs, dCommitmentType)
	var seq, oid cryptobyte.String
	if a == nil || n != 1 {
		return SigConstraintsFailure, "commitment-type-indication missing"
	}
	if val, ok = a.single(); !ok || !val.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || !bytes.Equal(oid, dCommitOrigin) {
		return SigConstraintsFailure, "commitment type must be proof of origin"
	}
	a, n = findAttr(si.signedAttrs, dSigPolicyID)
	if a == nil || n != 1 {
		return SigConstraintsFailure, "signature-policy-identifier missing"
	}
	var spid, hav, alg, halg, hv cryptobyte.String
	var pol asn1.ObjectIdentifier
	if val, ok = a.single(); !ok || !val.ReadASN1(&spid, cbasn1.SEQUENCE) || !spid.ReadASN1ObjectIdentifier(&pol) ||
		!spid.ReadASN1(&hav, cbasn1.SEQUENCE) || !hav.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1(&halg, cbasn1.OBJECT_IDENTIFIER) ||
		!hav.ReadASN1(&hv, cbasn1.OCTET_STRING) {
		return SigConstraintsFailure, "malformed signature-policy-identifier"
	}
	if !pol.Equal(v.policy.OID) {
		return SigConstraintsFailure, "signature policy " + pol.String() + " is not " + v.policy.OID.String()
	}
	if !bytes.Equal(halg, dSHA256) || !bytes.Equal(hv, v.policy.Hash) {
		return SigConstraintsFailure, "signature policy hash does not match the published policy"
	}
	return "", ""
}

// timeAttr reads a signing-time value (UTCTime or GeneralizedTime).
func readTime(v cryptobyte.String) (time.Time, bool) {
	var t time.Time
	if v.PeekASN1Tag(cbasn1.UTCTime) {
		return t, v.ReadASN1UTCTime(&t) && v.Empty()
	}
	return t, v.ReadASN1GeneralizedTime(&t) && v.Empty()
}
