package ca

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mohr-hix/mohr/keys"
)

// signTBS signs the TBSCertificate that was linted (lintDER's, byte for byte) with the CA key and returns the
// certificate. crypto/x509 offers no way to sign a given TBS: x509.CreateCertificate would build the TBS a second
// time and verify the signature a second time when the CA key already does (keys.Verifying, hsm.Key). So the
// Certificate SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue } (RFC 5280 §4.1) is assembled here
// from the linted TBS and algorithm identifier; the signature is verified against the issuer certificate's key
// unless the signer verifies its own signatures. Algorithms not listed take x509.CreateCertificate's way.
func (c *CA) signTBS(tmpl *x509.Certificate, r Request, lintDER []byte, lint *x509.Certificate) (*x509.Certificate, []byte, error) {
	var opts crypto.SignerOpts
	switch lint.SignatureAlgorithm {
	case x509.ECDSAWithSHA256, x509.SHA256WithRSA:
		opts = crypto.SHA256
	case x509.ECDSAWithSHA384, x509.SHA384WithRSA:
		opts = crypto.SHA384
	case x509.ECDSAWithSHA512, x509.SHA512WithRSA:
		opts = crypto.SHA512
	case x509.SHA256WithRSAPSS:
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	case x509.SHA384WithRSAPSS:
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA384}
	case x509.SHA512WithRSAPSS:
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA512}
	case x509.PureEd25519:
		opts = crypto.Hash(0)
	default:
		der, err := x509.CreateCertificate(c.opt.Rand, tmpl, c.issuer.Cert, r.CSR.PublicKey, c.issuer.Signer)
		if err != nil {
			return nil, nil, err
		}
		cert, err := x509.ParseCertificate(der)
		return cert, der, err
	}
	in := cryptobyte.String(lintDER)
	var outer, tbs, algID cryptobyte.String
	if !in.ReadASN1(&outer, cbasn1.SEQUENCE) || !outer.ReadASN1Element(&tbs, cbasn1.SEQUENCE) ||
		!outer.ReadASN1Element(&algID, cbasn1.SEQUENCE) {
		return nil, nil, errors.New("ca: malformed lint certificate")
	}
	digest := []byte(tbs)
	if h := opts.HashFunc(); h != 0 {
		hh := h.New()
		hh.Write(tbs)
		digest = hh.Sum(nil)
	}
	sig, err := c.issuer.Signer.Sign(c.opt.Rand, digest, opts)
	if err != nil {
		return nil, nil, err
	}
	if sv, ok := c.issuer.Signer.(keys.SelfVerifying); !ok || !sv.VerifiesSignatures() {
		if err := keys.VerifyDigest(c.issuer.Cert.PublicKey, digest, sig, opts); err != nil {
			return nil, nil, fmt.Errorf("signature over the certificate returned by the CA key is invalid: %w", err)
		}
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(algID)
		b.AddASN1BitString(sig)
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, der, nil
}
