package signing

import (
	"crypto"
	"encoding/asn1"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Object identifiers, kept both as asn1.ObjectIdentifier (for building and reports) and as their DER
// content bytes (for comparison on the verification hot path without decoding).
var (
	oidData                 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}         // RFC 5652 §4
	oidSignedData           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}         // RFC 5652 §5.1
	oidTSTInfo              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}  // RFC 3161 §2.4.2
	oidAttrContentType      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}         // RFC 5652 §11.1
	oidAttrMessageDigest    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}         // RFC 5652 §11.2
	oidAttrSigningTime      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}         // RFC 5652 §11.3
	oidAttrSigningCertV2    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47} // RFC 5035 §3
	oidAttrAlgProtection    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 52}        // RFC 6211 §2
	oidAttrMimeType         = asn1.ObjectIdentifier{0, 4, 0, 1733, 2, 1}                // ETSI EN 319 122-1 §5.2.4.2
	oidAttrCommitmentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 16} // ETSI EN 319 122-1 §5.2.3
	oidAttrSigPolicyID      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 15} // ETSI EN 319 122-1 §5.2.9
	oidAttrSigTimeStamp     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14} // RFC 3161 App. A; EN 319 122-1 §5.3
	oidAttrRevocationValues = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 24} // ETSI EN 319 122-1 §A.1.2
	oidAttrCertValues       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 23} // ETSI EN 319 122-1 §A.1.1
	oidSPQualifierURI       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 5, 1}  // ETSI EN 319 122-1 §5.2.9.1
	oidCommitmentOrigin     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 6, 1}  // proof of origin
	oidOCSPBasic            = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}      // RFC 6960 §4.2.1
	oidSHA256               = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}     // RFC 5754
	oidSHA384               = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}     // RFC 5754
	oidSHA512               = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}     // RFC 5754
	oidECDSASHA256          = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}          // RFC 5758
	oidECDSASHA384          = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}          // RFC 5758
	oidECDSASHA512          = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}          // RFC 5758
	oidRSASHA256            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}        // RFC 4055
	oidRSASHA384            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}        // RFC 4055
	oidRSASHA512            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}        // RFC 4055
	oidRSAEncryption        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}         // RFC 8017
)

// derOID returns the content octets of the DER encoding of oid.
func derOID(oid asn1.ObjectIdentifier) []byte {
	var b cryptobyte.Builder
	b.AddASN1ObjectIdentifier(oid)
	der := b.BytesOrPanic()
	var s cryptobyte.String = der
	var content cryptobyte.String
	if !s.ReadASN1(&content, cbasn1.OBJECT_IDENTIFIER) {
		panic("signing: bad OID")
	}
	return content
}

var (
	dData           = derOID(oidData)
	dSignedData     = derOID(oidSignedData)
	dTSTInfo        = derOID(oidTSTInfo)
	dContentType    = derOID(oidAttrContentType)
	dMessageDigest  = derOID(oidAttrMessageDigest)
	dSigningTime    = derOID(oidAttrSigningTime)
	dSigningCertV2  = derOID(oidAttrSigningCertV2)
	dAlgProtection  = derOID(oidAttrAlgProtection)
	dMimeType       = derOID(oidAttrMimeType)
	dCommitmentType = derOID(oidAttrCommitmentType)
	dSigPolicyID    = derOID(oidAttrSigPolicyID)
	dSigTimeStamp   = derOID(oidAttrSigTimeStamp)
	dRevocationVals = derOID(oidAttrRevocationValues)
	dCertValues     = derOID(oidAttrCertValues)
	dCommitOrigin   = derOID(oidCommitmentOrigin)
	dSHA256         = derOID(oidSHA256)
	dSHA384         = derOID(oidSHA384)
	dSHA512         = derOID(oidSHA512)
	dECDSASHA256    = derOID(oidECDSASHA256)
	dECDSASHA384    = derOID(oidECDSASHA384)
	dECDSASHA512    = derOID(oidECDSASHA512)
	dRSASHA256      = derOID(oidRSASHA256)
	dRSASHA384      = derOID(oidRSASHA384)
	dRSASHA512      = derOID(oidRSASHA512)
	dRSAEncryption  = derOID(oidRSAEncryption)
	dOCSPBasic      = derOID(oidOCSPBasic)
)

// hashOID maps a digest algorithm to its OID.
func hashOID(h crypto.Hash) (asn1.ObjectIdentifier, bool) {
	switch h {
	case crypto.SHA256:
		return oidSHA256, true
	case crypto.SHA384:
		return oidSHA384, true
	case crypto.SHA512:
		return oidSHA512, true
	}
	return nil, false
}

// hashFromDER maps DER OID content to a digest algorithm (SHA-2 only: the policy forbids SHA-1).
func hashFromDER(oid []byte) crypto.Hash {
	switch string(oid) {
	case string(dSHA256):
		return crypto.SHA256
	case string(dSHA384):
		return crypto.SHA384
	case string(dSHA512):
		return crypto.SHA512
	}
	return 0
}

// sigAlgFromDER maps DER signature-algorithm OID content to the key family and the hash it binds (0 for
// rsaEncryption, whose hash is the SignerInfo digestAlgorithm).
func sigAlgFromDER(oid []byte) (family string, h crypto.Hash) {
	switch string(oid) {
	case string(dECDSASHA256):
		return "ecdsa", crypto.SHA256
	case string(dECDSASHA384):
		return "ecdsa", crypto.SHA384
	case string(dECDSASHA512):
		return "ecdsa", crypto.SHA512
	case string(dRSASHA256):
		return "rsa", crypto.SHA256
	case string(dRSASHA384):
		return "rsa", crypto.SHA384
	case string(dRSASHA512):
		return "rsa", crypto.SHA512
	case string(dRSAEncryption):
		return "rsa", 0
	}
	return "", 0
}
