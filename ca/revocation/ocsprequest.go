package revocation

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxRequestSize is the largest OCSP request, in DER bytes, that ParseRequest reads. An RFC 5019 request
// for one certificate with a 32-byte nonce is under 200 bytes; the limit leaves room for a requestor name
// and a signature the responder ignores, and bounds the work an unauthenticated client can ask for. The
// API layer should cap POST bodies at the same number (and GET paths at MaxGETPathSize).
const MaxRequestSize = 4096

// MaxGETPathSize bounds the URL-encoded base64 path RespondGET accepts (RFC 6960 Appendix A.1).
const MaxGETPathSize = 3 * MaxRequestSize

// Object identifiers used in requests and responses.
var (
	oidSHA1      = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidOCSPNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
)

// Nonce lengths of RFC 8954 §2.1: a nonce is 1 to 32 octets; anything else is a malformed request.
// (RFC 9654, which obsoletes RFC 8954, allows up to 128; Mohr keeps the tighter bound the issue names.)
const (
	minNonce = 1
	maxNonce = 32
)

// CertID identifies a certificate in an OCSP request or response (RFC 6960 §4.1.1):
//
//	CertID ::= SEQUENCE {
//	    hashAlgorithm       AlgorithmIdentifier,
//	    issuerNameHash      OCTET STRING, -- Hash of issuer's DN
//	    issuerKeyHash       OCTET STRING, -- Hash of issuer's public key
//	    serialNumber        CertificateSerialNumber }
type CertID struct {
	// Hash is the algorithm of the two issuer hashes: SHA-1 (which RFC 5019 §2.1.1 requires clients to
	// use), SHA-256, SHA-384 or SHA-512.
	Hash           crypto.Hash
	IssuerNameHash []byte
	IssuerKeyHash  []byte
	// rawSerial is the content octets of the serialNumber INTEGER, as received (minimal, DER).
	rawSerial []byte
}

// Serial returns the serial number.
func (id CertID) Serial() *big.Int { return intFromBytes(id.rawSerial) }

// Marshal encodes id in DER, with the hash algorithm's parameters NULL as RFC 6960 §4.1.1 examples do.
func (id CertID) Marshal() ([]byte, error) {
	var b cryptobyte.Builder
	addCertID(&b, id.Hash, id.IssuerNameHash, id.IssuerKeyHash, id.rawSerial)
	return b.Bytes()
}

// Request is an OCSP request (RFC 6960 §4.1.1) reduced to what an RFC 5019 responder uses.
type Request struct {
	// CertID is the first (in the RFC 5019 profile, the only) certificate asked about.
	CertID CertID
	// Count is how many CertIDs the requestList held. The responder answers the first only: see Responder.
	Count int
	// Nonce is the value of the RFC 8954 nonce extension, nil if the request has none.
	Nonce []byte
}

// ParseRequest parses a DER OCSPRequest:
//
//	OCSPRequest ::= SEQUENCE {
//	    tbsRequest                  TBSRequest,
//	    optionalSignature   [0]     EXPLICIT Signature OPTIONAL }
//	TBSRequest ::= SEQUENCE {
//	    version             [0]     EXPLICIT Version DEFAULT v1,
//	    requestorName       [1]     EXPLICIT GeneralName OPTIONAL,
//	    requestList                 SEQUENCE OF Request,
//	    requestExtensions   [2]     EXPLICIT Extensions OPTIONAL }
//	Request ::= SEQUENCE {
//	    reqCert                     CertID,
//	    singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
//
// It is written with cryptobyte rather than taken from golang.org/x/crypto/ocsp, whose ParseRequest
// drops requestExtensions (so the RFC 8954 nonce is lost), silently keeps only the first of several
// CertIDs, and goes through reflection-based encoding/asn1 on the hot path of every request. This parser
// allocates only the returned struct, checks every CertID in the list, and rejects trailing data,
// versions other than v1, hash parameters other than absent or NULL, non-minimal serial INTEGERs,
// unknown critical extensions, duplicate nonces and nonces outside RFC 8954's 1..32 octets, all with
// ErrMalformedRequest. A requestor signature (RFC 6960 §4.1.2) is checked for shape only and ignored, as
// RFC 5019 §2.1.2 permits: this responder answers everyone.
func ParseRequest(der []byte) (*Request, error) {
	req := new(Request)
	if err := parseRequest(der, req); err != nil {
		return nil, err
	}
	return req, nil
}

// parseRequest is ParseRequest into a caller's Request, so the responder's hot path does not allocate one.
func parseRequest(der []byte, req *Request) error {
	if len(der) > MaxRequestSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMalformedRequest, len(der), MaxRequestSize)
	}
	in := cryptobyte.String(der)
	var outer, tbs cryptobyte.String
	if !in.ReadASN1(&outer, cbasn1.SEQUENCE) || !in.Empty() {
		return malformed("not a single DER SEQUENCE")
	}
	if !outer.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return malformed("tbsRequest")
	}
	if outer.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var sig, inner cryptobyte.String
		if !outer.ReadASN1(&sig, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
			!sig.ReadASN1(&inner, cbasn1.SEQUENCE) || !sig.Empty() {
			return malformed("optionalSignature")
		}
	}
	if !outer.Empty() {
		return malformed("trailing data in OCSPRequest")
	}

	var version cryptobyte.String
	var present bool
	if !tbs.ReadOptionalASN1(&version, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return malformed("version")
	}
	if present {
		var v int64
		if !version.ReadASN1Int64WithTag(&v, cbasn1.INTEGER) || !version.Empty() || v != 0 {
			return malformed("version is not v1")
		}
	}
	var name cryptobyte.String
	if !tbs.ReadOptionalASN1(&name, &present, cbasn1.Tag(1).Constructed().ContextSpecific()) {
		return malformed("requestorName")
	}
	var list cryptobyte.String
	if !tbs.ReadASN1(&list, cbasn1.SEQUENCE) {
		return malformed("requestList")
	}
	*req = Request{}
	for !list.Empty() {
		var one, certID cryptobyte.String
		if !list.ReadASN1(&one, cbasn1.SEQUENCE) || !one.ReadASN1(&certID, cbasn1.SEQUENCE) {
			return malformed("request")
		}
		var ext cryptobyte.String
		if !one.ReadOptionalASN1(&ext, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) || !one.Empty() {
			return malformed("singleRequestExtensions")
		}
		if present {
			if _, err := parseExtensions(ext, false); err != nil {
				return err
			}
		}
		id, err := parseCertID(certID)
		if err != nil {
			return err
		}
		if req.Count == 0 {
			req.CertID = id
		}
		req.Count++
	}
	if req.Count == 0 {
		return malformed("empty requestList")
	}
	var exts cryptobyte.String
	if !tbs.ReadOptionalASN1(&exts, &present, cbasn1.Tag(2).Constructed().ContextSpecific()) {
		return malformed("requestExtensions")
	}
	if present {
		nonce, err := parseExtensions(exts, true)
		if err != nil {
			return err
		}
		req.Nonce = nonce
	}
	if !tbs.Empty() {
		return malformed("trailing data in TBSRequest")
	}
	return nil
}

func malformed(what string) error { return fmt.Errorf("%w: %s", ErrMalformedRequest, what) }

func parseCertID(s cryptobyte.String) (CertID, error) {
	var alg, oidBytes cryptobyte.String
	var id CertID
	if !s.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1(&oidBytes, cbasn1.OBJECT_IDENTIFIER) {
		return id, malformed("CertID hashAlgorithm")
	}
	// Parameters: absent, or NULL (RFC 5754 §2 allows both for the SHA-2 family).
	if !alg.Empty() {
		var null cryptobyte.String
		if !alg.ReadASN1(&null, cbasn1.NULL) || !null.Empty() || !alg.Empty() {
			return id, malformed("CertID hashAlgorithm parameters")
		}
	}
	switch {
	case bytes.Equal(oidBytes, contentSHA1):
		id.Hash = crypto.SHA1
	case bytes.Equal(oidBytes, contentSHA256):
		id.Hash = crypto.SHA256
	case bytes.Equal(oidBytes, contentSHA384):
		id.Hash = crypto.SHA384
	case bytes.Equal(oidBytes, contentSHA512):
		id.Hash = crypto.SHA512
	default:
		return id, malformed("CertID hash algorithm not supported")
	}
	var nameHash, keyHash, serial cryptobyte.String
	if !s.ReadASN1(&nameHash, cbasn1.OCTET_STRING) || !s.ReadASN1(&keyHash, cbasn1.OCTET_STRING) ||
		!s.ReadASN1(&serial, cbasn1.INTEGER) || !s.Empty() {
		return id, malformed("CertID fields")
	}
	if len(nameHash) != id.Hash.Size() || len(keyHash) != id.Hash.Size() {
		return id, malformed("CertID hash length")
	}
	if !minimalInteger(serial) || len(serial) > 32 {
		return id, malformed("CertID serialNumber")
	}
	id.IssuerNameHash = nameHash
	id.IssuerKeyHash = keyHash
	id.rawSerial = serial
	return id, nil
}

// parseExtensions walks Extensions (RFC 5280 §4.1) and returns the RFC 8954 nonce if nonceAllowed. An
// unknown critical extension is refused, as RFC 6960 §4.4 lets a responder do.
func parseExtensions(s cryptobyte.String, nonceAllowed bool) ([]byte, error) {
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() || seq.Empty() {
		return nil, malformed("Extensions")
	}
	var nonce []byte
	for !seq.Empty() {
		var ext, oidBytes, value cryptobyte.String
		critical := false
		if !seq.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1(&oidBytes, cbasn1.OBJECT_IDENTIFIER) ||
			!ext.ReadOptionalASN1Boolean(&critical, cbasn1.BOOLEAN, false) ||
			!ext.ReadASN1(&value, cbasn1.OCTET_STRING) || !ext.Empty() {
			return nil, malformed("Extension")
		}
		if nonceAllowed && bytes.Equal(oidBytes, contentOCSPNonce) {
			if nonce != nil {
				return nil, malformed("duplicate nonce")
			}
			// RFC 8954 §2.1: extnValue holds the DER of Nonce ::= OCTET STRING (SIZE(1..32)).
			var n cryptobyte.String
			if !value.ReadASN1(&n, cbasn1.OCTET_STRING) || !value.Empty() {
				return nil, malformed("nonce is not an OCTET STRING")
			}
			if len(n) < minNonce || len(n) > maxNonce {
				return nil, malformed(fmt.Sprintf("nonce of %d octets", len(n)))
			}
			nonce = n
			continue
		}
		if critical {
			return nil, malformed("unknown critical extension")
		}
	}
	return nonce, nil
}

// oidContent returns the content octets of oid's DER encoding, for comparison without parsing.
func oidContent(oid asn1.ObjectIdentifier) []byte {
	der, err := asn1.Marshal(oid)
	if err != nil {
		panic(err) // only called on the constant OIDs above
	}
	var s, content cryptobyte.String = der, nil
	s.ReadASN1(&content, cbasn1.OBJECT_IDENTIFIER)
	return content
}

var (
	contentSHA1      = oidContent(oidSHA1)
	contentSHA256    = oidContent(oidSHA256)
	contentSHA384    = oidContent(oidSHA384)
	contentSHA512    = oidContent(oidSHA512)
	contentOCSPNonce = oidContent(oidOCSPNonce)
)

// minimalInteger reports whether b is the content of a DER INTEGER (X.690 §8.3.2: no redundant
// leading 0x00 or 0xff octet).
func minimalInteger(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	if len(b) > 1 && ((b[0] == 0 && b[1]&0x80 == 0) || (b[0] == 0xff && b[1]&0x80 != 0)) {
		return false
	}
	return true
}

// intFromBytes decodes the content of a DER INTEGER (two's complement, big-endian).
func intFromBytes(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	return n
}

// intBytes encodes a non-negative n as the content of a DER INTEGER.
func intBytes(n *big.Int) []byte {
	b := n.Bytes()
	if len(b) == 0 || b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return b
}
