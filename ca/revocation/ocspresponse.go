package revocation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// OCSP response status codes (RFC 6960 §4.2.1).
const (
	statusSuccessful       = 0
	statusMalformedRequest = 1
	statusInternalError    = 2
	statusTryLater         = 3
	statusUnauthorized     = 6
)

// errorResponse is an OCSPResponse with no responseBytes: SEQUENCE { ENUMERATED status }.
func errorResponse(status byte) []byte { return []byte{0x30, 0x03, 0x0a, 0x01, status} }

var (
	malformedResponse    = errorResponse(statusMalformedRequest)
	internalResponse     = errorResponse(statusInternalError)
	tryLaterResponse     = errorResponse(statusTryLater)
	unauthorizedResponse = errorResponse(statusUnauthorized)
)

var (
	oidOCSPBasic   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}
	oidECDSASHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSASHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidRSASHA256   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidEd25519     = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// certStatus is the CertStatus of one SingleResponse (RFC 6960 §4.2.1).
type certStatus int

const (
	statusGood certStatus = iota
	statusRevoked
	statusUnknown
)

// single is what a SingleResponse says about one certificate.
type single struct {
	status     certStatus
	revokedAt  time.Time
	reason     Reason
	thisUpdate time.Time
	nextUpdate time.Time
}

// responseSigner signs BasicOCSPResponses with the delegated responder key.
type responseSigner struct {
	key     crypto.Signer
	hash    crypto.Hash // 0 for Ed25519
	sigAlg  asn1.ObjectIdentifier
	nullArg bool     // RSA AlgorithmIdentifiers carry NULL parameters (RFC 4055 §5)
	keyHash []byte   // ResponderID byKey: SHA-1 of the subjectPublicKey BIT STRING value (RFC 6960 §4.2.1)
	certs   [][]byte // certs to include: the responder certificate (RFC 6960 §4.2.2.2)
}

func newResponseSigner(key crypto.Signer, cert *x509.Certificate) (*responseSigner, error) {
	rs := &responseSigner{key: key, certs: [][]byte{cert.Raw}}
	var err error
	if rs.hash, rs.sigAlg, rs.nullArg, err = signatureParams(key.Public()); err != nil {
		return nil, err
	}
	spk, err := subjectPublicKeyBits(cert.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, err
	}
	h := sha1.Sum(spk)
	rs.keyHash = h[:]
	return rs, nil
}

// signatureParams picks the signature algorithm for a key, as crypto/x509 does by default: ECDSA with the
// hash matching the curve, RSA PKCS #1 v1.5 with SHA-256 (RFC 4055 §5: NULL parameters), or Ed25519
// (RFC 8410 §3: no parameters, no pre-hash).
func signatureParams(pub crypto.PublicKey) (h crypto.Hash, oid asn1.ObjectIdentifier, nullArg bool, err error) {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return crypto.SHA256, oidECDSASHA256, false, nil
		case elliptic.P384():
			return crypto.SHA384, oidECDSASHA384, false, nil
		case elliptic.P521():
			return crypto.SHA512, oidECDSASHA512, false, nil
		}
		return 0, nil, false, fmt.Errorf("%w: key curve %s", ErrConfig, pub.Curve.Params().Name)
	case *rsa.PublicKey:
		return crypto.SHA256, oidRSASHA256, true, nil
	case ed25519.PublicKey:
		return 0, oidEd25519, false, nil
	}
	return 0, nil, false, fmt.Errorf("%w: key type %T", ErrConfig, pub)
}

// subjectPublicKeyBits returns the bits of the subjectPublicKey BIT STRING of a SubjectPublicKeyInfo,
// which is what RFC 6960 §4.1.1 (issuerKeyHash) and §4.2.1 (KeyHash) hash.
func subjectPublicKeyBits(spki []byte) ([]byte, error) {
	s := cryptobyte.String(spki)
	var seq, alg cryptobyte.String
	var bits asn1.BitString
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1(&alg, cbasn1.SEQUENCE) || !seq.ReadASN1BitString(&bits) {
		return nil, fmt.Errorf("%w: SubjectPublicKeyInfo", ErrConfig)
	}
	return bits.RightAlign(), nil
}

// addCertID appends a CertID (RFC 6960 §4.1.1) with NULL hash parameters.
func addCertID(b *cryptobyte.Builder, h crypto.Hash, nameHash, keyHash, rawSerial []byte) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			switch h {
			case crypto.SHA1:
				b.AddASN1ObjectIdentifier(oidSHA1)
			case crypto.SHA256:
				b.AddASN1ObjectIdentifier(oidSHA256)
			case crypto.SHA384:
				b.AddASN1ObjectIdentifier(oidSHA384)
			case crypto.SHA512:
				b.AddASN1ObjectIdentifier(oidSHA512)
			default:
				b.SetError(fmt.Errorf("revocation: CertID hash %v", h))
			}
			b.AddASN1NULL()
		})
		b.AddASN1OctetString(nameHash)
		b.AddASN1OctetString(keyHash)
		b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(rawSerial) })
	})
}

// sign builds and signs a successful OCSPResponse with one SingleResponse (RFC 6960 §4.2.1, in the
// RFC 5019 §2.2 profile):
//
//	OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, responseBytes [0] EXPLICIT ResponseBytes }
//	ResponseBytes ::= SEQUENCE { responseType id-pkix-ocsp-basic, response OCTET STRING }
//	BasicOCSPResponse ::= SEQUENCE { tbsResponseData ResponseData, signatureAlgorithm, signature BIT STRING,
//	                                 certs [0] EXPLICIT SEQUENCE OF Certificate }
//	ResponseData ::= SEQUENCE { responderID ResponderID (byKey [2]), producedAt GeneralizedTime,
//	                            responses SEQUENCE OF SingleResponse,
//	                            responseExtensions [1] EXPLICIT Extensions OPTIONAL }
//
// golang.org/x/crypto/ocsp.CreateResponse cannot be used: it puts extensions into singleExtensions, so the
// RFC 8954 nonce (a responseExtension) cannot be echoed, and it stamps producedAt from time.Now, so the
// clock cannot be injected. The nonce, when not nil, is echoed in responseExtensions.
func (rs *responseSigner) sign(id CertID, s single, producedAt time.Time, nonce []byte) ([]byte, error) {
	var tb cryptobyte.Builder
	tb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(rs.keyHash)
		})
		b.AddASN1GeneralizedTime(producedAt.UTC().Truncate(time.Second))
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				addCertID(b, id.Hash, id.IssuerNameHash, id.IssuerKeyHash, id.rawSerial)
				switch s.status {
				case statusGood:
					b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(*cryptobyte.Builder) {})
				case statusRevoked:
					b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1GeneralizedTime(s.revokedAt.UTC().Truncate(time.Second))
						// As in CRLs (RFC 5280 §5.3.1), unspecified is expressed by leaving the reason out.
						if s.reason != Unspecified {
							b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
								b.AddASN1Enum(int64(s.reason))
							})
						}
					})
				default:
					b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(*cryptobyte.Builder) {})
				}
				b.AddASN1GeneralizedTime(s.thisUpdate.UTC().Truncate(time.Second))
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1GeneralizedTime(s.nextUpdate.UTC().Truncate(time.Second))
				})
			})
		})
		if nonce != nil {
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidOCSPNonce)
						b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
							b.AddASN1OctetString(nonce)
						})
					})
				})
			})
		}
	})
	tbs, err := tb.Bytes()
	if err != nil {
		return nil, fmt.Errorf("revocation: encode ResponseData: %w", err)
	}

	digest := tbs
	if rs.hash != 0 {
		h := rs.hash.New()
		h.Write(tbs)
		digest = h.Sum(nil)
	}
	sig, err := rs.key.Sign(rand.Reader, digest, rs.hash)
	if err != nil {
		return nil, fmt.Errorf("revocation: sign OCSP response: %w", err)
	}

	var bb cryptobyte.Builder
	bb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(rs.sigAlg)
			if rs.nullArg {
				b.AddASN1NULL()
			}
		})
		b.AddASN1BitString(sig)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, c := range rs.certs {
					b.AddBytes(c)
				}
			})
		})
	})
	basic, err := bb.Bytes()
	if err != nil {
		return nil, fmt.Errorf("revocation: encode BasicOCSPResponse: %w", err)
	}
	var ob cryptobyte.Builder
	ob.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Enum(statusSuccessful)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidOCSPBasic)
				b.AddASN1OctetString(basic)
			})
		})
	})
	return ob.Bytes()
}
