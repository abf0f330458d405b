package hsm

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"fmt"

	"github.com/miekg/pkcs11"
)

// Key algorithms GenerateKey offers.
const (
	AlgECP256  = "EC-P256"
	AlgECP384  = "EC-P384"
	AlgRSA2048 = "RSA-2048"
	AlgRSA3072 = "RSA-3072"
)

// Algorithms lists the algorithms GenerateKey accepts.
var Algorithms = []string{AlgECP256, AlgECP384, AlgRSA2048, AlgRSA3072, AlgEd25519}

// GenerateKey generates a key pair on the token uri names and returns the private key as a *Key
// (a crypto.Signer). alg is one of "EC-P256", "EC-P384", "RSA-2048", "RSA-3072", "Ed25519". The label is the
// URI's object attribute and the CKA_ID its id attribute; without an id, GenerateKey draws a random
// 16-byte CKA_ID so that a certificate can later be stored beside the key under the same ID.
//
// The private key is a token object (CKA_TOKEN), private (CKA_PRIVATE), sensitive (CKA_SENSITIVE),
// not extractable (CKA_EXTRACTABLE false), and can sign only: CKA_DECRYPT, CKA_UNWRAP and
// CKA_DERIVE are false (PKCS#11 v2.40 section 4.9, private key objects). GenerateKey reads
// CKA_SENSITIVE and CKA_EXTRACTABLE back and destroys the pair if the token did not honour them.
//
// GenerateKey refuses (ErrExists) when an object with the same label or ID is already on the token.
// C_GenerateKeyPair is never repeated automatically, since a lost answer may hide a created key.
func (o *Opener) GenerateKey(ctx context.Context, uri string, alg string) (crypto.Signer, error) {
	u, p, err := o.resolve(uri)
	if err != nil {
		return nil, err
	}
	if err := needObject(u, "private"); err != nil {
		return nil, err
	}
	mech, pubT, privT, err := keygenTemplates(alg)
	if err != nil {
		return nil, err
	}
	id := u.ID
	if len(id) == 0 {
		id = make([]byte, 16)
		rand.Read(id)
	}
	common := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	if u.Object != "" {
		common = append(common, pkcs11.NewAttribute(pkcs11.CKA_LABEL, u.Object))
	}
	pubT = append(pubT, common...)
	privT = append(privT, common...)

	p.keygen.Lock()
	defer p.keygen.Unlock()
	var k *Key
	err = p.do(ctx, u, true, func(s session) error {
		b := p.mod.p
		for _, t := range [][]*pkcs11.Attribute{
			{pkcs11.NewAttribute(pkcs11.CKA_ID, id)},
			{pkcs11.NewAttribute(pkcs11.CKA_LABEL, u.Object)},
		} {
			if t[0].Type == pkcs11.CKA_LABEL && u.Object == "" {
				continue
			}
			hs, err := findObjects(b, s.h, t, 0)
			if err != nil {
				return err
			}
			if len(hs) > 0 {
				return fmt.Errorf("%w: %s on token %q", ErrExists, describe(u.Object, u.ID), u.Token)
			}
		}
		pubH, privH, err := b.GenerateKeyPair(s.h, mech, pubT, privT)
		if err != nil {
			return noRetryError{rvError("C_GenerateKeyPair", err)}
		}
		a, err := attrs(b, s.h, privH, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_KEY_TYPE)
		if err == nil && (!boolAttr(a[pkcs11.CKA_SENSITIVE]) || boolAttr(a[pkcs11.CKA_EXTRACTABLE])) {
			err = ErrNotSensitive
		}
		if err != nil {
			b.DestroyObject(s.h, privH)
			b.DestroyObject(s.h, pubH)
			return noRetryError{err}
		}
		ktype := ulong(a[pkcs11.CKA_KEY_TYPE])
		pub, err := publicKeyFrom(b, s.h, pubH, ktype)
		if err != nil {
			return noRetryError{err}
		}
		ku := *u
		ku.ID = id
		ku.Type = ""
		k = &Key{pool: p, uri: &ku, label: u.Object, id: id, ktype: ktype, pub: pub}
		k.handle.Store(&objectRef{h: privH, epoch: p.epoch.Load()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// keygenTemplates returns the mechanism and the public and private key templates for alg.
func keygenTemplates(alg string) ([]*pkcs11.Mechanism, []*pkcs11.Attribute, []*pkcs11.Attribute, error) {
	priv := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
	}
	pub := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
	}
	switch alg {
	case AlgECP256, AlgECP384:
		curve := elliptic.P256()
		if alg == AlgECP384 {
			curve = elliptic.P384()
		}
		oid, _ := curveOID(curve)
		params, err := asn1.Marshal(oid)
		if err != nil {
			return nil, nil, nil, err
		}
		pub = append(pub, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params))
		priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC))
		return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)}, pub, priv, nil
	case AlgRSA2048, AlgRSA3072:
		bits := 2048
		if alg == AlgRSA3072 {
			bits = 3072
		}
		pub = append(pub, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, bits),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
		priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA))
		return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pub, priv, nil
	case AlgEd25519:
		return ed25519Keygen(pub, priv) // ed25519.go
	}
	return nil, nil, nil, fmt.Errorf("%w: key algorithm %q (want one of %v)", ErrUnsupportedAlgorithm, alg, Algorithms)
}
