package hsm

import (
	"crypto"
	"crypto/ed25519"
	"encoding/asn1"
	"fmt"

	"github.com/miekg/pkcs11"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// AlgEd25519 is the GenerateKey algorithm of Ed25519 keys (RFC 8032), signed with CKM_EDDSA.
const AlgEd25519 = "Ed25519"

// Edwards-curve key type and mechanisms of PKCS#11 v3.0 (Current Mechanisms sections 2.3.5-2.3.7 and 2.3.14).
// github.com/miekg/pkcs11 v1.1.2 carries the v2.40 headers, which predate them, so the values are written here;
// SoftHSM 2.6 uses the same ones.
const (
	ckkECEdwards            = 0x40   // CKK_EC_EDWARDS
	ckmECEdwardsKeyPairGen  = 0x1055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	ckmEdDSA                = 0x1057 // CKM_EDDSA
	ed25519CurveName        = "edwards25519"
	ed25519PointOctetString = 2 + ed25519.PublicKeySize // 04 20 || key
)

// Ways CKA_EC_PARAMS names edwards25519. PKCS#11 v3.0 section 2.3.5 allows the curve name as a
// PrintableString (what OpenSC's pkcs11-tool writes) or the RFC 8410 algorithm OID id-Ed25519 (what
// GenerateKey writes; SoftHSM 2.6.1 accepts both, checked on 3 Dec 2026). Older OpenSC and GnuPG used an
// OID under GnuPG's arc, which some tokens still hold.
var (
	oidEd25519      = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidEd25519GnuPG = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 15, 1}
)

var mechEdDSA = []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}

// ed25519Keygen completes GenerateKey's templates for an Ed25519 key pair.
func ed25519Keygen(pub, priv []*pkcs11.Attribute) ([]*pkcs11.Mechanism, []*pkcs11.Attribute, []*pkcs11.Attribute, error) {
	params, err := asn1.Marshal(oidEd25519)
	if err != nil {
		return nil, nil, nil, err
	}
	pub = append(pub, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params))
	priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards))
	return []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}, pub, priv, nil
}

// isEd25519Params reports whether CKA_EC_PARAMS names edwards25519 in one of the encodings above.
func isEd25519Params(params []byte) bool {
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(params, &oid); err == nil && len(rest) == 0 {
		return oid.Equal(oidEd25519) || oid.Equal(oidEd25519GnuPG)
	}
	var name cryptobyte.String
	s := cryptobyte.String(params)
	return s.ReadASN1(&name, cbasn1.PrintableString) && s.Empty() && string(name) == ed25519CurveName
}

// ed25519PublicFrom reads an Edwards public key object: CKA_EC_PARAMS must name edwards25519 (Ed448 and other
// curves are refused) and CKA_EC_POINT holds the RFC 8032 public key, a DER OCTET STRING around the 32 bytes
// (PKCS#11 v3.0 section 2.3.5); a bare 32-byte value, as some modules return, is accepted too.
func ed25519PublicFrom(p backend, sh pkcs11.SessionHandle, o pkcs11.ObjectHandle) (crypto.PublicKey, error) {
	a, err := attrs(p, sh, o, pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT)
	if err != nil {
		return nil, err
	}
	if !isEd25519Params(a[pkcs11.CKA_EC_PARAMS]) {
		return nil, fmt.Errorf("%w: Edwards curve other than edwards25519", ErrUnsupportedAlgorithm)
	}
	return parseEd25519Point(a[pkcs11.CKA_EC_POINT])
}

// parseEd25519Point decodes CKA_EC_POINT of an Ed25519 key.
func parseEd25519Point(point []byte) (ed25519.PublicKey, error) {
	if len(point) == ed25519PointOctetString {
		var inner cryptobyte.String
		s := cryptobyte.String(point)
		if s.ReadASN1(&inner, cbasn1.OCTET_STRING) && s.Empty() {
			point = inner
		}
	}
	if len(point) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: bad CKA_EC_POINT for Ed25519", ErrUnsupportedAlgorithm)
	}
	return ed25519.PublicKey(append([]byte(nil), point...)), nil
}

// ed25519Mechanism returns CKM_EDDSA for pure Ed25519 (RFC 8032 section 5.1): msg is the whole message, and
// opts must not ask for a pre-hash (Ed25519ph) or a context (Ed25519ctx), which the mechanism would need
// CK_EDDSA_PARAMS for and Mohr does not use.
func ed25519Mechanism(msg []byte, opts crypto.SignerOpts) ([]*pkcs11.Mechanism, []byte, error) {
	if opts.HashFunc() != 0 {
		return nil, nil, fmt.Errorf("%w: Ed25519 signs the message, not a %v digest", ErrUnsupportedAlgorithm, opts.HashFunc())
	}
	if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
		return nil, nil, fmt.Errorf("%w: Ed25519ctx", ErrUnsupportedAlgorithm)
	}
	return mechEdDSA, msg, nil
}
