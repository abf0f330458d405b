package ca

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mohr-hix/mohr/keys"
)

// The TBSCertificate is built once, by crypto/x509, and then linted and signed as it is:
//
//   - buildTBS has x509.CreateCertificate build it for the real issuer (its name, key identifier and
//     signature algorithm) with a signer that never signs: CreateCertificate hands a crypto.MessageSigner the
//     whole TBSCertificate (crypto.SignMessage), so tbsCapture keeps it and stops the call. Before, a throwaway
//     key signed a whole lint copy and CreateCertificate verified that signature, two ECDSA operations per
//     certificate whose result was thrown away.
//   - lintCopy wraps the TBS in a Certificate whose signature is one made by a throwaway key once, at New: zlint
//     reads the TBS and the signature algorithm, never whether the signature verifies.
//   - signTBS signs that very TBS with the CA key and assembles the certificate (RFC 5280 §4.1).
//
// crypto/x509 offers no other way to obtain a TBS or to sign a given one; the assembly below is three DER
// elements in a SEQUENCE, written with cryptobyte.

// errTBSCaptured stops x509.CreateCertificate once the TBS is captured.
var errTBSCaptured = errors.New("ca: TBS captured")

// tbsCapture is the signer handed to x509.CreateCertificate by buildTBS.
type tbsCapture struct {
	pub  crypto.PublicKey
	tbs  []byte
	opts crypto.SignerOpts
}

func (t *tbsCapture) Public() crypto.PublicKey { return t.pub }

// Sign is never what CreateCertificate calls when SignMessage exists; if a later crypto/x509 did, the TBS
// would not be known and issuance stops (buildTBS).
func (t *tbsCapture) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("ca: crypto/x509 did not hand the TBSCertificate to the signer")
}

func (t *tbsCapture) SignMessage(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	t.tbs, t.opts = msg, opts
	return nil, errTBSCaptured
}

var _ crypto.MessageSigner = (*tbsCapture)(nil)

// tbsCert is a TBSCertificate built for the CA's issuer, with what signing it needs.
type tbsCert struct {
	tbs   []byte            // the DER TBSCertificate
	algID []byte            // its signature AlgorithmIdentifier (DER), which the Certificate repeats
	opts  crypto.SignerOpts // how the CA key signs it (hash, PSS)
}

// buildTBS has crypto/x509 build the TBSCertificate of tmpl for pub, issued by the CA's issuer. Errors of the
// template are the request's (ErrBadRequest).
func (c *CA) buildTBS(tmpl *x509.Certificate, pub crypto.PublicKey) (tbsCert, error) {
	capt := &tbsCapture{pub: c.issuer.Signer.Public()}
	_, err := x509.CreateCertificate(c.opt.Rand, tmpl, c.issuer.Cert, pub, capt)
	if !errors.Is(err, errTBSCaptured) {
		if err == nil {
			err = errors.New("certificate created without a signature")
		}
		return tbsCert{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if capt.opts == nil {
		return tbsCert{}, errors.New("ca: no signature options for the TBS")
	}
	// TBSCertificate ::= SEQUENCE { version [0] EXPLICIT OPTIONAL, serialNumber, signature AlgorithmIdentifier, ... }
	in := cryptobyte.String(capt.tbs)
	var seq, algID cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!seq.SkipASN1(cbasn1.INTEGER) || !seq.ReadASN1Element(&algID, cbasn1.SEQUENCE) {
		return tbsCert{}, errors.New("ca: malformed TBSCertificate from crypto/x509")
	}
	return tbsCert{tbs: capt.tbs, algID: algID, opts: capt.opts}, nil
}

// assemble returns the DER Certificate SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }.
func assemble(t tbsCert, sig []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(t.tbs)
		b.AddBytes(t.algID)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// lintCopy returns the certificate zlint reads: the TBS with the throwaway key's signature made at New.
func (c *CA) lintCopy(t tbsCert) ([]byte, error) { return assemble(t, c.lintSig) }

// lintSignature is a signature by the throwaway key of the issuer's key type, made once: the lint copies
// carry it so that their signature field has the shape the real one will have.
func lintSignature(throwaway crypto.Signer) ([]byte, error) {
	msg := []byte("mohr: lint copy, not a certificate")
	if _, ok := throwaway.(ed25519.PrivateKey); ok {
		return throwaway.Sign(nil, msg, crypto.Hash(0)) // Ed25519 signs the message itself
	}
	digest := sha256.Sum256(msg)
	return throwaway.Sign(rand.Reader, digest[:], crypto.SHA256)
}

// signTBS signs the TBSCertificate that was linted, byte for byte, with the CA key and returns the certificate.
// The signature is verified against the issuer certificate's key unless the signer verifies its own signatures
// (keys.Verifying, hsm.Key): once, not twice.
//
// The certificate returned is lint, the parsed lint copy, with the real DER and signature: everything else
// x509.ParseCertificate reads comes from the TBS and the algorithm identifier the two share
// (TestSignTBSKeyTypes checks it against a parse of the DER).
func (c *CA) signTBS(t tbsCert, lint *x509.Certificate) (*x509.Certificate, []byte, error) {
	digest := t.tbs
	if h := t.opts.HashFunc(); h != 0 {
		hh := h.New()
		hh.Write(t.tbs)
		digest = hh.Sum(nil)
	}
	sig, err := c.issuer.Signer.Sign(c.opt.Rand, digest, t.opts)
	if err != nil {
		return nil, nil, err
	}
	if sv, ok := c.issuer.Signer.(keys.SelfVerifying); !ok || !sv.VerifiesSignatures() {
		if err := keys.VerifyDigest(c.issuer.Cert.PublicKey, digest, sig, t.opts); err != nil {
			return nil, nil, fmt.Errorf("signature over the certificate returned by the CA key is invalid: %w", err)
		}
	}
	der, err := assemble(t, sig)
	if err != nil {
		return nil, nil, err
	}
	cert := *lint
	cert.Raw, cert.Signature = der, sig
	return &cert, der, nil
}
