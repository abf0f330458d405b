package revocation

import (
	"crypto/rand"
	"encoding/asn1"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/keys"
)

var (
	oidAuthorityKeyID = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber      = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidReasonCode     = asn1.ObjectIdentifier{2, 5, 29, 21}
)

// signCRL builds and signs one shard's CRL (RFC 5280 §5.1):
//
//	CertificateList ::= SEQUENCE { tbsCertList TBSCertList, signatureAlgorithm, signatureValue BIT STRING }
//	TBSCertList ::= SEQUENCE {
//	     version                 Version (v2),
//	     signature               AlgorithmIdentifier,
//	     issuer                  Name,
//	     thisUpdate              Time,
//	     nextUpdate              Time,
//	     revokedCertificates     SEQUENCE OF SEQUENCE {
//	          userCertificate         CertificateSerialNumber,
//	          revocationDate          Time,
//	          crlEntryExtensions      Extensions OPTIONAL } OPTIONAL,
//	     crlExtensions           [0] EXPLICIT Extensions OPTIONAL }
//
// with the authority key identifier (§5.2.1), the CRL number (§5.2.3) and the critical issuing distribution
// point (§5.2.5) as crlExtensions, and a reasonCode entry extension (§5.3.1) except for unspecified, which
// RFC 5280 asks to express by leaving the extension out.
//
// It is written with cryptobyte instead of crypto/x509.CreateRevocationList, whose reflection-based
// encoding/asn1 marshalling and per-entry big.Int made a 1,000,000-entry population cost about 5x the CPU
// and several times the memory (docs/revocation.md has the numbers). Serials go from the store's hex
// straight to INTEGER octets. The signer is wrapped so that its signature is verified before the CRL is
// released (an HSM that misbehaves must not publish a bad CRL); tests parse every CRL with crypto/x509 and
// openssl.
func signCRL(is *ca.Issuer, c PublishedCRL, entries []ca.RevokedEntry) ([]byte, error) {
	if len(is.Cert.SubjectKeyId) == 0 {
		return nil, fmt.Errorf("%w: issuer certificate lacks a subject key identifier", ErrConfig)
	}
	hash, sigAlg, nullArg, err := signatureParams(is.Signer.Public())
	if err != nil {
		return nil, err
	}
	idp, err := issuingDistributionPoint(c.URL)
	if err != nil {
		return nil, err
	}
	addAlg := func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(sigAlg)
			if nullArg {
				b.AddASN1NULL()
			}
		})
	}
	var serial []byte
	tb := cryptobyte.NewBuilder(make([]byte, 0, 64+len(entries)*48))
	tb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1) // v2
		addAlg(b)
		b.AddBytes(is.Cert.RawSubject)
		addTime(b, c.ThisUpdate)
		addTime(b, c.NextUpdate)
		if len(entries) > 0 {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, e := range entries {
					var err error
					if serial, err = serialOctets(serial[:0], e.Serial); err != nil {
						b.SetError(err)
						return
					}
					r := Reason(e.Reason)
					if r == RemoveFromCRL || reasonNames[r] == "" {
						b.SetError(fmt.Errorf("%w: store reason %d for %s", ErrBadReason, e.Reason, e.Serial))
						return
					}
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(serial) })
						addTime(b, e.RevokedAt)
						if r != Unspecified {
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
									b.AddASN1ObjectIdentifier(oidReasonCode)
									b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
										b.AddASN1Enum(int64(r))
									})
								})
							})
						}
					})
				}
			})
		}
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidAuthorityKeyID)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
								b.AddBytes(is.Cert.SubjectKeyId)
							})
						})
					})
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidCRLNumber)
					b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
						b.AddASN1Int64(c.Number)
					})
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidIssuingDistributionPoint)
					b.AddASN1Boolean(true)
					b.AddASN1OctetString(idp)
				})
			})
		})
	})
	tbs, err := tb.Bytes()
	if err != nil {
		return nil, fmt.Errorf("revocation: encode TBSCertList: %w", err)
	}
	digest := tbs
	if hash != 0 {
		h := hash.New()
		h.Write(tbs)
		digest = h.Sum(nil)
	}
	sig, err := keys.Verifying(is.Signer).Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, fmt.Errorf("revocation: sign CRL: %w", err)
	}
	out := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(sig)+32))
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		addAlg(b)
		b.AddASN1BitString(sig)
	})
	return out.Bytes()
}

// addTime adds a Time as RFC 5280 §5.1.2.4 requires: UTCTime through 2049, GeneralizedTime from 2050.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC().Truncate(time.Second)
	if t.Year() < 2050 {
		b.AddASN1UTCTime(t)
	} else {
		b.AddASN1GeneralizedTime(t)
	}
}

// serialOctets appends to dst the content octets of the DER INTEGER for a positive serial in the store's
// hex: leading zeros stripped, a 0x00 prefix where the high bit is set. It does not allocate beyond dst.
func serialOctets(dst []byte, hexSerial string) ([]byte, error) {
	s := strings.TrimLeft(hexSerial, "0")
	if s == "" || len(s) > 64 {
		return nil, fmt.Errorf("%w: store serial %q", ErrBadSerial, hexSerial)
	}
	start := len(dst)
	dst = append(dst, 0) // sign octet, dropped below unless needed
	i := 0
	if len(s)%2 == 1 {
		v, ok := hexNibble(s[0])
		if !ok {
			return nil, fmt.Errorf("%w: store serial %q", ErrBadSerial, hexSerial)
		}
		dst = append(dst, v)
		i = 1
	}
	for ; i < len(s); i += 2 {
		hi, ok1 := hexNibble(s[i])
		lo, ok2 := hexNibble(s[i+1])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: store serial %q", ErrBadSerial, hexSerial)
		}
		dst = append(dst, hi<<4|lo)
	}
	if dst[start+1]&0x80 == 0 {
		dst = append(dst[:start], dst[start+1:]...)
	}
	return dst, nil
}

func hexNibble(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
