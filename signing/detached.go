package signing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// dAdbeRevocation is Adobe's adbe-revocationInfoArchival signed attribute (1.2.840.113583.1.1.8), where
// PDF signers such as digitorus/pdfsign embed OCSP responses (ISO 32000-1 §12.8.3.3.2).
var dAdbeRevocation = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x2f, 0x01, 0x01, 0x08}

// adbeOCSP returns the OCSPResponses of an adbe-revocationInfoArchival attribute:
//
//	RevocationInfoArchival ::= SEQUENCE { crl [0] EXPLICIT SEQUENCE OF CRLs OPTIONAL,
//	    ocsp [1] EXPLICIT SEQUENCE OF OCSPResponse OPTIONAL, otherRevInfo [2] EXPLICIT ... OPTIONAL }
func adbeOCSP(si *signerInfo) [][]byte {
	a, _ := findAttr(si.signedAttrs, dAdbeRevocation)
	if a == nil {
		return nil
	}
	v, ok := a.single()
	var seq cryptobyte.String
	if !ok || !v.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return nil
	}
	var out [][]byte
	for !seq.Empty() {
		var tag cbasn1.Tag
		var body cryptobyte.String
		if !seq.ReadAnyASN1(&body, &tag) {
			return out
		}
		if tag != tagExplicit1 {
			continue
		}
		var list cryptobyte.String
		if !body.ReadASN1(&list, cbasn1.SEQUENCE) {
			return out
		}
		for !list.Empty() {
			var r cryptobyte.String
			if !list.ReadASN1Element(&r, cbasn1.SEQUENCE) {
				return out
			}
			out = append(out, r)
		}
	}
	return out
}

// VerifyDetached validates a detached CMS signature over content, as PDF signatures are (ETSI EN 319 142-1
// PAdES baseline; ISO 32000-1 §12.8): the cryptographic checks, the chain, signature timestamps as POE,
// validity at the best signature time and revocation (embedded Adobe-style, or from the RevocationSource).
// The prescription policy and health-domain checks do not apply to a printout and are not made.
func (v *Verifier) VerifyDetached(ctx context.Context, der, content []byte) *Report {
	return v.VerifyDetachedWith(ctx, der, content, nil)
}

// VerifyDetachedWith is VerifyDetached with validation data found outside the CMS, such as a PDF's document
// security store (ETSI EN 319 142-1 §5.4): its certificates join those of the SignedData for path building
// and its OCSP responses and CRLs are candidates for revocation checking. vd may be nil.
func (v *Verifier) VerifyDetachedWith(ctx context.Context, der, content []byte, vd *ValidationData) *Report {
	now := v.cfg.Now().UTC()
	r := &Report{ValidationTime: now, BestSignatureTime: now}
	sd := new(signedData)
	if err := parseSignedData(der, sd); err != nil {
		return r.fail(FormatFailure, "%v", err)
	}
	if len(sd.signers) != 1 || sd.hasContent {
		return r.fail(FormatFailure, "a detached signature with one SignerInfo is required")
	}
	si := &sd.signers[0]
	cs := sha256.Sum256(content)
	r.ContentSHA256 = hex.EncodeToString(cs[:])
	var certs []*certEntry
	allCerts := sd.certs
	var extraOCSP [][]byte
	if vd != nil {
		allCerts = append(append([][]byte(nil), sd.certs...), vd.Certs...)
		extraOCSP = vd.OCSPs
	}
	for _, c := range allCerts {
		e, err := v.cert(c)
		if err != nil {
			return r.fail(FormatFailure, "certificate: %v", err)
		}
		certs = append(certs, e)
	}
	signer := findSigner(si, certs)
	if signer == nil {
		return r.fail(NoSigningCertificateFound, "the signing certificate is not in the signature")
	}
	info := signer.info
	r.Signer = &info
	if sub, why := checkSignerInfo(si, sd.eContentType, content, signer, 0); sub != "" {
		return r.fail(sub, "%s", why)
	}
	ch := v.chain(signer, certs, false)
	if ch.sub != "" {
		return r.fail(ch.sub, "%s", ch.reason)
	}
	for _, c := range ch.chain {
		r.Chain = append(r.Chain, c.info)
	}
	poe, failed := v.signatureTimestamps(si, allCerts, r)
	if failed != nil {
		return failed
	}
	best := r.BestSignatureTime
	if failed := chainBounds(ch.chain, best, poe, r); failed != nil {
		return failed
	}
	if len(ch.chain) < 2 {
		return r.fail(CertificateChainGeneralFailure, "the signing certificate is a trust anchor")
	}
	if sub, why := v.checkRevocation(ctx, si, extraOCSP, signer, ch.chain[1], best, poe, r); sub != "" {
		return r.fail(sub, "%s", why)
	}
	r.Indication = TotalPassed
	return r
}
