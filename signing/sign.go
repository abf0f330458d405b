package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/keys"
)

// MIMEFHIRJSON is the media type of a FHIR R4 resource in JSON, the content of an HIX-Rx-CAdES signature.
const MIMEFHIRJSON = "application/fhir+json"

// RxPolicyHashHex is the SHA-256 of docs/signature-policy.md as Mohr publishes it; the
// signature-policy-identifier attribute (ETSI EN 319 122-1 §5.2.9) carries it. A test keeps the two in step:
// changing the policy document means a new hash, which old signatures keep referring to.
const RxPolicyHashHex = "73ba909fbb0353cf0442bfcbd1a1139389d792e590b26bf7f51b45ee011264eb"

// RxPolicyURI is where the policy document is published (a signature-policy qualifier, EN 319 122-1 §5.2.9.1).
const RxPolicyURI = "urn:oid:2.999.1742.3.1"

// SignaturePolicy identifies a signature policy by OID and by the SHA-256 of its document.
type SignaturePolicy struct {
	OID  asn1.ObjectIdentifier
	Hash []byte // SHA-256 of the policy document
	URI  string // optional SPuri qualifier
}

// RxPolicy returns the HIX-Rx-CAdES policy (hixext.OIDSignaturePolicyRx).
func RxPolicy() SignaturePolicy {
	h, _ := hex.DecodeString(RxPolicyHashHex)
	return SignaturePolicy{OID: hixext.OIDSignaturePolicyRx, Hash: h, URI: RxPolicyURI}
}

// SignOptions configure Sign.
type SignOptions struct {
	// Signer is the signing key: a card, an HSM or a file key. Each signature it returns is verified before use.
	Signer crypto.Signer
	// Chain is the signing certificate first, then the intermediates; never the root (HIX-Rx-CAdES §3).
	Chain []*x509.Certificate
	// Hash is the digest algorithm; SHA-256 when zero.
	Hash crypto.Hash
	// Now is the clock that gives the signing-time attribute; time.Now when nil.
	Now func() time.Time
	// MIMEType is the mime-type attribute (EN 319 122-1 §5.2.4.2); MIMEFHIRJSON when empty.
	MIMEType string
	// Policy is the signature policy; RxPolicy() when nil. NoPolicy omits the attribute (sealed reports).
	Policy   *SignaturePolicy
	NoPolicy bool
	// PAdES makes the CMS of a PAdES baseline signature (ETSI EN 319 142-1 §5.1, SubFilter
	// ETSI.CAdES.detached) instead of a prescription signature: content is the PDF's /ByteRange bytes and is
	// not enveloped (detached), and the signed attributes are content-type (id-data), message-digest,
	// signing-certificate-v2 and CMS algorithm protection only. EN 319 142-1 §5.2.1 forbids signing-time (the
	// claimed time goes to the signature dictionary's /M); mime-type, commitment type and policy are left out.
	PAdES bool
}

// Sign makes an HIX-Rx-CAdES B-B signature (ETSI EN 319 122-1 §5.2; docs/signature-policy.md): a CMS
// SignedData (RFC 5652 §5) enveloping content, with the signed attributes content-type, message-digest,
// signing-time (RFC 5652 §11), signing-certificate-v2 (RFC 5035 §3), CMS algorithm protection (RFC 6211),
// mime-type, commitment-type-indication (proof of origin) and signature-policy-identifier (EN 319 122-1
// §5.2.3, §5.2.4, §5.2.9), and the chain without the root. It returns the DER ContentInfo.
func Sign(ctx context.Context, content []byte, o SignOptions) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.Signer == nil || len(o.Chain) == 0 || o.Chain[0] == nil {
		return nil, ErrNoChain
	}
	cert := o.Chain[0]
	if err := keys.MatchesCertificate(o.Signer, cert); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyMismatch, err)
	}
	h := o.Hash
	if h == 0 {
		h = crypto.SHA256
	}
	hOID, ok := hashOID(h)
	if !ok {
		return nil, fmt.Errorf("%w: hash %v", ErrUnsupportedKey, h)
	}
	sigAlg, sopts, err := signatureAlgorithm(cert.PublicKey, h)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	mt := o.MIMEType
	if mt == "" {
		mt = MIMEFHIRJSON
	}
	digestAlg := algIDBytes(hOID, false)
	md := h.New()
	md.Write(content)

	attrs := [][]byte{
		attribute(oidAttrContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidData) }),
		attribute(oidAttrMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(md.Sum(nil)) }),
		nil, // signing-time, below
		signingCertV2Attr(cert, h),
		attribute(oidAttrAlgProtection, func(b *cryptobyte.Builder) {
			// CMSAlgorithmProtection ::= SEQUENCE { digestAlgorithm, signatureAlgorithm [1] IMPLICIT ... }
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(digestAlg)
				b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					b.AddBytes(sigAlg[2:]) // the AlgorithmIdentifier's content (its length is < 128)
				})
			})
		}),
		attribute(oidAttrMimeType, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(mt)) })
		}),
		attribute(oidAttrCommitmentType, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidCommitmentOrigin) })
		}),
	}
	if o.PAdES {
		attrs = append(attrs[:2], attrs[3:5]...)
	} else {
		attrs[2] = attribute(oidAttrSigningTime, func(b *cryptobyte.Builder) { utcOrGeneralized(b, now()) })
	}
	if !o.NoPolicy && !o.PAdES {
		pol := RxPolicy()
		if o.Policy != nil {
			pol = *o.Policy
		}
		attrs = append(attrs, policyAttr(pol))
	}
	signedAttrs := setOf(attrs)
	sig, err := signAttrs(o.Signer, h, sopts, signedAttrs)
	if err != nil {
		return nil, err
	}
	si := signerInfoParts{
		sid: issuerAndSerial(cert.RawIssuer, cert.SerialNumber), digestAlg: digestAlg,
		signedAttrs: signedAttrs, sigAlg: sigAlg, signature: sig,
	}
	sd := signedDataParts{digestAlgs: [][]byte{digestAlg}, eContentType: oidData, content: content, signerInfos: [][]byte{si.marshal()}}
	if o.PAdES { // detached: EncapsulatedContentInfo without eContent (RFC 5652 §5.2)
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidData) })
		sd.eContentRaw = b.BytesOrPanic()
	}
	for _, c := range o.Chain {
		if !bytes.Equal(c.RawSubject, c.RawIssuer) || c.CheckSignatureFrom(c) != nil { // never the root
			sd.certs = append(sd.certs, c.Raw)
		}
	}
	return sd.marshal()
}

// signAttrs signs the DER SET OF signed attributes (RFC 5652 §5.4: the [0] IMPLICIT tag is replaced by SET).
func signAttrs(s crypto.Signer, h crypto.Hash, opts crypto.SignerOpts, setContent []byte) ([]byte, error) {
	sig, _, err := signAttrsDigest(s, h, opts, setContent)
	return sig, err
}

// signAttrsDigest is signAttrs, also returning the digest signed (and verified before the signature was released).
func signAttrsDigest(s crypto.Signer, h crypto.Hash, opts crypto.SignerOpts, setContent []byte) (sig, digest []byte, err error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(setContent) })
	d := h.New()
	d.Write(b.BytesOrPanic())
	digest = d.Sum(nil)
	sig, err = keys.Verifying(s).Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: sign: %w", err)
	}
	return sig, digest, nil
}

// signingCertV2Attr encodes the signing-certificate-v2 attribute (RFC 5035 §3): one ESSCertIDv2 with the
// certificate's hash and its IssuerSerial. The hashAlgorithm is omitted for SHA-256 (the DEFAULT).
func signingCertV2Attr(cert *x509.Certificate, h crypto.Hash) []byte {
	d := h.New()
	d.Write(cert.Raw)
	return attribute(oidAttrSigningCertV2, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SigningCertificateV2
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // certs
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ESSCertIDv2
					if h != crypto.SHA256 {
						oid, _ := hashOID(h)
						algID(b, oid, false)
					}
					b.AddASN1OctetString(d.Sum(nil))
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // IssuerSerial
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // GeneralNames
							b.AddASN1(cbasn1.Tag(4).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
								b.AddBytes(cert.RawIssuer) // directoryName [4] EXPLICIT Name
							})
						})
						b.AddASN1BigInt(cert.SerialNumber)
					})
				})
			})
		})
	})
}

// policyAttr encodes signature-policy-identifier (EN 319 122-1 §5.2.9): SignaturePolicyId with the policy OID,
// its hash as OtherHashAlgAndValue (SHA-256) and an SPuri qualifier.
func policyAttr(p SignaturePolicy) []byte {
	return attribute(oidAttrSigPolicyID, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(p.OID)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				algID(b, oidSHA256, false)
				b.AddASN1OctetString(p.Hash)
			})
			if p.URI != "" {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidSPQualifierURI)
						b.AddASN1(cbasn1.IA5String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(p.URI)) })
					})
				})
			}
		})
	})
}

// sha256Sum is a convenience for fingerprints.
func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
