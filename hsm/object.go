package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Named curves by the OID that CKA_EC_PARAMS holds (PKCS#11 v2.40 Current Mechanisms section 2.3.3,
// ECParameters namedCurve from RFC 5480 section 2.1.1.1).
var (
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521 = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
)

func curveOID(c elliptic.Curve) (asn1.ObjectIdentifier, bool) {
	switch c {
	case elliptic.P256():
		return oidP256, true
	case elliptic.P384():
		return oidP384, true
	case elliptic.P521():
		return oidP521, true
	}
	return nil, false
}

func curveFromParams(params []byte) (elliptic.Curve, error) {
	var oid asn1.ObjectIdentifier
	rest, err := asn1.Unmarshal(params, &oid)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: CKA_EC_PARAMS is not a named curve", ErrUnsupportedAlgorithm)
	}
	switch {
	case oid.Equal(oidP256):
		return elliptic.P256(), nil
	case oid.Equal(oidP384):
		return elliptic.P384(), nil
	case oid.Equal(oidP521):
		return elliptic.P521(), nil
	}
	return nil, fmt.Errorf("%w: curve %v", ErrUnsupportedAlgorithm, oid)
}

// findObjects returns up to max+1 handles of the objects matching tmpl (PKCS#11 v2.40 section 5.7
// C_FindObjectsInit, C_FindObjects, C_FindObjectsFinal).
func findObjects(p backend, sh pkcs11.SessionHandle, tmpl []*pkcs11.Attribute, max int) ([]pkcs11.ObjectHandle, error) {
	if err := p.FindObjectsInit(sh, tmpl); err != nil {
		return nil, rvError("C_FindObjectsInit", err)
	}
	var all []pkcs11.ObjectHandle
	for len(all) <= max {
		hs, _, err := p.FindObjects(sh, max+1-len(all))
		if err != nil {
			p.FindObjectsFinal(sh)
			return nil, rvError("C_FindObjects", err)
		}
		if len(hs) == 0 {
			break
		}
		all = append(all, hs...)
	}
	if err := p.FindObjectsFinal(sh); err != nil {
		return nil, rvError("C_FindObjectsFinal", err)
	}
	return all, nil
}

// objectTemplate is the search template for objects of class cls that the URI's object and id name.
func objectTemplate(cls uint, label string, id []byte) []*pkcs11.Attribute {
	t := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, cls)}
	if label != "" {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	if len(id) > 0 {
		t = append(t, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	}
	return t
}

// findOne finds exactly one object of class cls by label and/or ID.
func findOne(p backend, sh pkcs11.SessionHandle, cls uint, label string, id []byte) (pkcs11.ObjectHandle, error) {
	hs, err := findObjects(p, sh, objectTemplate(cls, label, id), 1)
	if err != nil {
		return 0, err
	}
	switch len(hs) {
	case 0:
		return 0, fmt.Errorf("%w: no %s named %s", ErrObjectNotFound, className(cls), describe(label, id))
	case 1:
		return hs[0], nil
	}
	return 0, fmt.Errorf("%w: several %s named %s", ErrAmbiguous, className(cls), describe(label, id))
}

func className(cls uint) string {
	switch cls {
	case pkcs11.CKO_PRIVATE_KEY:
		return "private key"
	case pkcs11.CKO_PUBLIC_KEY:
		return "public key"
	case pkcs11.CKO_CERTIFICATE:
		return "certificate"
	}
	return "object"
}

// describe names an object for an error message by its label and ID; neither is secret.
func describe(label string, id []byte) string {
	switch {
	case label != "" && len(id) > 0:
		return fmt.Sprintf("label %q id %x", label, id)
	case label != "":
		return fmt.Sprintf("label %q", label)
	}
	return fmt.Sprintf("id %x", id)
}

// attrs reads the attributes types of object o and returns them by type.
func attrs(p backend, sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, types ...uint) (map[uint][]byte, error) {
	t := make([]*pkcs11.Attribute, len(types))
	for i, ty := range types {
		t[i] = pkcs11.NewAttribute(ty, nil)
	}
	got, err := p.GetAttributeValue(sh, o, t)
	if err != nil {
		return nil, rvError("C_GetAttributeValue", err)
	}
	m := make(map[uint][]byte, len(got))
	for _, a := range got {
		m[a.Type] = a.Value
	}
	return m, nil
}

// publicKeyFrom builds the public key from a public key object's (or an RSA private key object's)
// attributes: CKA_MODULUS and CKA_PUBLIC_EXPONENT for RSA, CKA_EC_PARAMS and CKA_EC_POINT for EC.
// CKA_EC_POINT is a DER OCTET STRING around the uncompressed point (PKCS#11 v2.40 Current Mechanisms
// section 2.3.3); some modules return the bare point, which is accepted too.
func publicKeyFrom(p backend, sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, keyType uint) (crypto.PublicKey, error) {
	switch keyType {
	case pkcs11.CKK_RSA:
		a, err := attrs(p, sh, o, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT)
		if err != nil {
			return nil, err
		}
		n := new(big.Int).SetBytes(a[pkcs11.CKA_MODULUS])
		e := new(big.Int).SetBytes(a[pkcs11.CKA_PUBLIC_EXPONENT])
		if n.Sign() == 0 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return nil, fmt.Errorf("%w: bad RSA public key attributes", ErrUnsupportedAlgorithm)
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case pkcs11.CKK_EC:
		a, err := attrs(p, sh, o, pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT)
		if err != nil {
			return nil, err
		}
		curve, err := curveFromParams(a[pkcs11.CKA_EC_PARAMS])
		if err != nil {
			return nil, err
		}
		point := a[pkcs11.CKA_EC_POINT]
		var inner cryptobyte.String
		s := cryptobyte.String(point)
		if s.ReadASN1(&inner, cbasn1.OCTET_STRING) && s.Empty() {
			point = inner
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("%w: bad CKA_EC_POINT", ErrUnsupportedAlgorithm)
		}
		return pub, nil
	case ckkECEdwards:
		return ed25519PublicFrom(p, sh, o) // ed25519.go
	}
	return nil, fmt.Errorf("%w: PKCS#11 key type %#x", ErrUnsupportedAlgorithm, keyType)
}

// ecdsaDER turns the raw r||s that CKM_ECDSA returns (PKCS#11 v2.40 Current Mechanisms section
// 2.3.1: "the signature is the concatenation of r and s") into the DER Ecdsa-Sig-Value of
// RFC 5480 section 2.2 that crypto.Signer callers expect.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("hsm: CKM_ECDSA returned %d bytes, not r||s", len(raw))
	}
	half := len(raw) / 2
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addUnsigned(b, raw[:half])
		addUnsigned(b, raw[half:])
	})
	return b.Bytes()
}

// addUnsigned adds an ASN.1 INTEGER holding the unsigned big-endian value v in minimal form.
func addUnsigned(b *cryptobyte.Builder, v []byte) {
	for len(v) > 1 && v[0] == 0 {
		v = v[1:]
	}
	b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) {
		if len(v) == 0 || v[0]&0x80 != 0 {
			b.AddUint8(0)
		}
		b.AddBytes(v)
	})
}

// findPrivate finds the private key by label and/or ID. Private objects are invisible to a session
// that is not logged in (PKCS#11 v2.40 section 4.4, CKA_PRIVATE), so when the key is not found and
// the session's state (C_GetSessionInfo) shows that the login was lost, it reports
// CKR_USER_NOT_LOGGED_IN, which makes the pool log in again, rather than "not found".
func findPrivate(p backend, sh pkcs11.SessionHandle, label string, id []byte) (pkcs11.ObjectHandle, error) {
	h, err := findOne(p, sh, pkcs11.CKO_PRIVATE_KEY, label, id)
	if err == nil || !errors.Is(err, ErrObjectNotFound) {
		return h, err
	}
	si, serr := p.GetSessionInfo(sh)
	if serr != nil {
		return 0, rvError("C_GetSessionInfo", serr)
	}
	if si.State != pkcs11.CKS_RO_USER_FUNCTIONS && si.State != pkcs11.CKS_RW_USER_FUNCTIONS {
		return 0, rvError("C_FindObjects", pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN))
	}
	return 0, err
}
