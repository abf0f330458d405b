package hsm

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/mohr-hix/mohr/keys"
)

// StoreCertificate stores cert on the token as a CKO_CERTIFICATE object of type CKC_X_509 (PKCS#11
// v2.40 section 4.6.3) with the CKA_ID and CKA_LABEL of the private key uri names, beside the key,
// as PKCS#11 applications expect to find it. It refuses a certificate whose public key is not the
// key's (keys.ErrKeyMismatch) and a second certificate with the same CKA_ID (ErrExists).
func (o *Opener) StoreCertificate(ctx context.Context, uri string, cert *x509.Certificate) error {
	if cert == nil {
		return fmt.Errorf("hsm: nil certificate")
	}
	k, err := o.openKey(ctx, uri)
	if err != nil {
		return err
	}
	if err := keys.MatchesCertificate(k, cert); err != nil {
		return fmt.Errorf("hsm: store certificate for %s: %w", describe(k.label, k.id), err)
	}
	serial, err := asn1.Marshal(cert.SerialNumber)
	if err != nil {
		return fmt.Errorf("hsm: certificate serial: %w", err)
	}
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_ID, k.id),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, k.label),
		pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, cert.RawSubject),
		pkcs11.NewAttribute(pkcs11.CKA_ISSUER, cert.RawIssuer),
		pkcs11.NewAttribute(pkcs11.CKA_SERIAL_NUMBER, serial),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, cert.Raw),
	}
	p := k.pool
	p.keygen.Lock()
	defer p.keygen.Unlock()
	return p.do(ctx, k.uri, true, func(s session) error {
		hs, err := findObjects(p.mod.p, s.h, objectTemplate(pkcs11.CKO_CERTIFICATE, labelIfNoID(k.label, k.id), k.id), 0)
		if err != nil {
			return err
		}
		if len(hs) > 0 {
			return fmt.Errorf("%w: certificate for %s", ErrExists, describe(k.label, k.id))
		}
		if _, err := p.mod.p.CreateObject(s.h, tmpl); err != nil {
			return noRetryError{rvError("C_CreateObject", err)}
		}
		return nil
	})
}

func labelIfNoID(label string, id []byte) string {
	if len(id) > 0 {
		return ""
	}
	return label
}

// Certificate returns the certificate uri names: the CKO_CERTIFICATE object with the URI's object
// label and/or id, which StoreCertificate puts beside the key of the same name. Certificates are
// public objects, so no login is needed.
func (o *Opener) Certificate(ctx context.Context, uri string) (*x509.Certificate, error) {
	u, p, err := o.resolve(uri)
	if err != nil {
		return nil, err
	}
	if u.Type == "private" || u.Type == "public" {
		u2 := *u
		u2.Type = "cert"
		u = &u2
	}
	if err := needObject(u, "cert"); err != nil {
		return nil, err
	}
	var c *x509.Certificate
	err = p.do(ctx, u, false, func(s session) error {
		h, err := findOne(p.mod.p, s.h, pkcs11.CKO_CERTIFICATE, labelIfNoID(u.Object, u.ID), u.ID)
		if err != nil {
			return err
		}
		c, err = readCertificate(p.mod.p, s.h, h)
		return err
	})
	return c, err
}

func readCertificate(b backend, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (*x509.Certificate, error) {
	a, err := attrs(b, sh, h, pkcs11.CKA_VALUE)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(a[pkcs11.CKA_VALUE])
	if err != nil {
		return nil, fmt.Errorf("hsm: certificate object: %w", err)
	}
	return c, nil
}
