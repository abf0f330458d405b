package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// rebuild re-encodes sd with its single SignerInfo's unsigned attributes and the certificates extended. Every
// signed byte (encapContentInfo, signed attributes, signature) is copied as it was.
func rebuild(sd *signedData, addCerts [][]byte, addAttrs [][]byte) ([]byte, error) {
	si := &sd.signers[0]
	p := signerInfoParts{sid: si.sidRaw, digestAlg: si.digestAlgRaw, sigAlg: si.sigAlgRaw, signature: si.signature}
	var set cryptobyte.String = si.signedAttrsRaw
	var content cryptobyte.String
	if !set.ReadASN1(&content, tagImplicit0) {
		return nil, formatErr("signedAttrs")
	}
	p.signedAttrs = content
	for _, a := range si.unsignedAttrs {
		p.unsignedAttr = append(p.unsignedAttr, a.raw)
	}
	p.unsignedAttr = append(p.unsignedAttr, addAttrs...)
	out := signedDataParts{version: sd.version, eContentRaw: sd.eContentRaw, crls: sd.crls, signerInfos: [][]byte{p.marshal()}}
	var s cryptobyte.String = sd.digestAlgsRaw
	var algs cryptobyte.String
	s.ReadASN1(&algs, cbasn1.SET)
	for !algs.Empty() {
		var a cryptobyte.String
		if !algs.ReadASN1Element(&a, cbasn1.SEQUENCE) {
			return nil, formatErr("digestAlgorithms")
		}
		out.digestAlgs = append(out.digestAlgs, a)
	}
	out.certs = append(out.certs, sd.certs...)
	for _, c := range addCerts {
		dup := false
		for _, have := range out.certs {
			if bytes.Equal(have, c) {
				dup = true
				break
			}
		}
		if !dup {
			out.certs = append(out.certs, c)
		}
	}
	return out.marshal()
}

// ErrArchived: a signature with an archive timestamp takes only further archive timestamps
// (docs/signature-policy.md §4).
var ErrArchived = errors.New("signing: signature has an archive timestamp; only archive timestamps may be added")

func refuseArchived(sd *signedData) error {
	if _, n := findAttr(sd.signers[0].unsignedAttrs, dArchiveTS); n > 0 {
		return ErrArchived
	}
	return nil
}

func parseOne(der []byte) (*signedData, error) {
	sd := new(signedData)
	if err := parseSignedData(der, sd); err != nil {
		return nil, err
	}
	if len(sd.signers) != 1 {
		return nil, formatErr("exactly one SignerInfo is required")
	}
	return sd, nil
}

// AddSignatureTimestamp upgrades a B-B signature to B-T (ETSI EN 319 122-1 §5.3): it time-stamps the
// SignerInfo's signature value (RFC 3161 Appendix A) with ts and adds the token as the unsigned attribute
// id-aa-signatureTimeStampToken.
func AddSignatureTimestamp(ctx context.Context, der []byte, ts Timestamper) ([]byte, error) {
	out, _, _, err := addSignatureTimestamp(ctx, der, ts)
	return out, err
}

// addSignatureTimestamp is AddSignatureTimestamp, also returning the token it added and, when ts is the
// in-process TSA, the token's signature as the TSA verified it before releasing it.
func addSignatureTimestamp(ctx context.Context, der []byte, ts Timestamper) ([]byte, []byte, *signedHere, error) {
	sd, err := parseOne(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return addSignatureTimestampParsed(ctx, sd, ts)
}

// addSignatureTimestampParsed is addSignatureTimestamp of a signature already parsed (parseOne).
func addSignatureTimestampParsed(ctx context.Context, sd *signedData, ts Timestamper) ([]byte, []byte, *signedHere, error) {
	if err := refuseArchived(sd); err != nil {
		return nil, nil, nil, err
	}
	d := crypto.SHA256.New()
	d.Write(sd.signers[0].signature)
	var tok []byte
	var signed *signedHere
	var err error
	if t, ok := ts.(*TSA); ok {
		tok, signed, err = t.timestampSigned(ctx, crypto.SHA256, d.Sum(nil))
	} else {
		tok, err = ts.Timestamp(ctx, crypto.SHA256, d.Sum(nil))
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrTimestamp, err)
	}
	out, err := rebuild(sd, nil, [][]byte{attribute(oidAttrSigTimeStamp, func(b *cryptobyte.Builder) { b.AddBytes(tok) })})
	return out, tok, signed, err
}

// ValidationData is validation material in DER (EN 319 102-1 §5.2.5, §5.2.6): certificates (X.509), OCSP
// responses (OCSPResponse, RFC 6960 §4.2.1) and CRLs (CertificateList, RFC 5280 §5.1). B-LT adds it to a
// signature (AddValidationData); a PDF's document security store hands it to the verifier
// (Verifier.VerifyDetachedWith); the verifier's Report.Used says what a validation relied on, so that an
// upgrade embeds exactly that.
type ValidationData struct {
	Certs, OCSPs, CRLs [][]byte
}

// AddValidationData upgrades a B-T signature to B-LT: the OCSP responses go into the revocation-values
// unsigned attribute as BasicOCSPResponses (ocspVals, EN 319 122-1 §A.1.2), the CRLs into its crlVals, and
// the certificates (except roots) into SignedData.certificates (EN 319 122-1 §5.5.1 allows either place for
// certificate values).
func AddValidationData(der []byte, vd ValidationData) ([]byte, error) {
	return addValidationData(der, vd, x509.ParseCertificate)
}

// addValidationData is AddValidationData with the certificates parsed by parse (a Verifier's cache).
func addValidationData(der []byte, vd ValidationData, parse func([]byte) (*x509.Certificate, error)) ([]byte, error) {
	sd, err := parseOne(der)
	if err != nil {
		return nil, err
	}
	return addValidationDataParsed(sd, vd, parse)
}

// addValidationDataParsed is addValidationData of a signature already parsed (parseOne).
func addValidationDataParsed(sd *signedData, vd ValidationData, parse func([]byte) (*x509.Certificate, error)) ([]byte, error) {
	if err := refuseArchived(sd); err != nil {
		return nil, err
	}
	var basics [][]byte
	for _, r := range vd.OCSPs {
		b, err := basicFromOCSPResponse(r)
		if err != nil {
			return nil, err
		}
		basics = append(basics, b)
	}
	var certs [][]byte
	for _, der := range vd.Certs {
		c, err := parse(der)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate: %v", errFormat, err)
		}
		if !bytes.Equal(c.RawIssuer, c.RawSubject) { // never a root
			certs = append(certs, der)
		}
	}
	var attrs [][]byte
	if len(basics) > 0 || len(vd.CRLs) > 0 {
		attrs = append(attrs, attribute(oidAttrRevocationValues, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // RevocationValues
				if len(vd.CRLs) > 0 {
					b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) { // crlVals [0]
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							for _, x := range vd.CRLs {
								b.AddBytes(x)
							}
						})
					})
				}
				if len(basics) > 0 {
					b.AddASN1(tagExplicit1, func(b *cryptobyte.Builder) { // ocspVals [1]
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							for _, x := range basics {
								b.AddBytes(x)
							}
						})
					})
				}
			})
		}))
	}
	return rebuild(sd, certs, attrs)
}

// basicFromOCSPResponse extracts the BasicOCSPResponse of a successful OCSPResponse (RFC 6960 §4.2.1).
func basicFromOCSPResponse(der []byte) ([]byte, error) {
	s := cryptobyte.String(der)
	var resp, rb, seq, oid, basic cryptobyte.String
	var status int
	if !s.ReadASN1(&resp, cbasn1.SEQUENCE) || !resp.ReadASN1Enum(&status) || status != 0 ||
		!resp.ReadASN1(&rb, tagExplicit0) || !rb.ReadASN1(&seq, cbasn1.SEQUENCE) ||
		!seq.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || !bytes.Equal(oid, dOCSPBasic) ||
		!seq.ReadASN1(&basic, cbasn1.OCTET_STRING) {
		return nil, formatErr("not a successful basic OCSP response")
	}
	return basic, nil
}

// SignerCertificates returns the signing certificate and the other certificates of a SignedData, parsed.
func SignerCertificates(der []byte) (signer *x509.Certificate, others []*x509.Certificate, err error) {
	sd, err := parseOne(der)
	if err != nil {
		return nil, nil, err
	}
	var all []*certEntry
	for _, c := range sd.certs {
		x, err := x509.ParseCertificate(c)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: certificate: %v", errFormat, err)
		}
		all = append(all, &certEntry{cert: x})
	}
	e := findSigner(&sd.signers[0], all)
	if e == nil {
		return nil, nil, fmt.Errorf("%w: signing certificate not found", errFormat)
	}
	for _, c := range all {
		if c != e {
			others = append(others, c.cert)
		}
	}
	return e.cert, others, nil
}

// Content returns the enveloped content of a SignedData.
func Content(der []byte) ([]byte, error) {
	sd, err := parseOne(der)
	if err != nil {
		return nil, err
	}
	if !sd.hasContent {
		return nil, formatErr("no enveloped content")
	}
	return bytes.Clone(sd.content), nil
}

// timestampCerts returns the certificates inside the signature timestamp tokens of der.
func timestampCerts(der []byte) ([]*x509.Certificate, error) {
	sd, err := parseOne(der)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for _, a := range sd.signers[0].unsignedAttrs {
		if !bytes.Equal(a.oid, dSigTimeStamp) {
			continue
		}
		tok, ok := a.single()
		if !ok {
			continue
		}
		var tsd signedData
		if parseSignedData(tok, &tsd) != nil {
			continue
		}
		for _, c := range tsd.certs {
			if x, err := x509.ParseCertificate(c); err == nil {
				out = append(out, x)
			}
		}
	}
	return out, nil
}
