package signing

import (
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// dAdbeRevocation is Adobe's adbe-revocationInfoArchival signed attribute (1.2.840.113583.1.1.8), where
// PDF signers such as digitorus/pdfsign embed OCSP responses (ISO 32000-1 §12.8.3.3.2).
var dAdbeRevocation = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x2f, 0x01, 0x01, 0x08}

// adbeOCSP returns the OCSPResponses of an adbe-revocationInfoArchival attribute:
//
//	RevocationInfoArchival ::= SEQUENCE { crl [0] EXPLICIT SEQUENCE OF CRLs OPTIONAL,
//	    ocsp [1] EXPLICIT SEQUENCE OF OCSPResponse OPTIONAL, otherRevInfo [2] EXPLICIT ... OPTIONAL }
func adbeOCSP(si *signerInfo) [][]byte {
	a, _ := findAttr(si.signedAttrs, dAdbeRevocation)
	if a == nil {
		return nil
	}
	v, ok := a.single()
	var seq cryptobyte.String
	if !ok || !v.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return nil
	}
	var out [][]byte
	for !seq.Empty() {
		var tag cbasn1.Tag
		var body cryptobyte.String
		if !seq.ReadAnyASN1(&body, &tag) {
			return out
		}
		if tag != tagExplicit1 {
			continue
		}
		var list cryptobyte.String
		if !body.ReadASN1(&list, cbasn1.SEQUENCE) {
			return out
		}
		for !list.Empty() {
			var r cryptobyte.String
			if !list.ReadASN1Element(&r, cbasn1.SEQUENCE) {
				return out
			}
			out = append(out, r)
		}
	}
	return out
}
