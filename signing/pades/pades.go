package pades

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/digitorus/pdf"
	"github.com/digitorus/pdfsign/revocation"
	"github.com/digitorus/pdfsign/sign"

	"github.com/mohr-hix/mohr/signing"
)

// Options configure Sign.
type Options struct {
	Signer crypto.Signer
	// Chain is the signing certificate first, then intermediates.
	Chain []*x509.Certificate
	// TSAURL is the RFC 3161 service (pdfsign takes a URL: the api package's POST /tsa).
	TSAURL string
	// Revocation supplies OCSP responses to embed; pdfsign's own network calls have no timeouts, so Mohr never
	// lets it fetch (shared DEPS.md).
	Revocation             signing.RevocationSource
	Name, Reason, Location string
	// Now is the signing time in the signature dictionary; time.Now when nil.
	Now func() time.Time
}

// ErrNoSignature: the PDF holds no signature.
var ErrNoSignature = errors.New("pades: no signature in the PDF")

// Sign signs pdfBytes with digitorus/pdfsign (an approval signature with an RFC 3161 timestamp and embedded
// OCSP) and returns the signed PDF. The output is re-read and its signatures checked for integrity
// (DEPS.md: pdfsign finds its /Contents placeholder by searching for zeros).
func Sign(ctx context.Context, pdfBytes []byte, o Options) ([]byte, error) {
	if o.Signer == nil || len(o.Chain) == 0 {
		return nil, signing.ErrNoChain
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	rdr, err := pdf.NewReader(bytes.NewReader(pdfBytes), int64(len(pdfBytes)))
	if err != nil {
		return nil, fmt.Errorf("pades: read PDF: %w", err)
	}
	sd := sign.SignData{
		Signature: sign.SignDataSignature{
			Info:     sign.SignDataSignatureInfo{Name: o.Name, Reason: o.Reason, Location: o.Location, Date: now()},
			CertType: sign.ApprovalSignature, DocMDPPerm: sign.AllowFillingExistingFormFieldsAndSignaturesPerms,
		},
		Signer: o.Signer, DigestAlgorithm: crypto.SHA256, Certificate: o.Chain[0],
		CertificateChains: [][]*x509.Certificate{o.Chain},
		TSA:               sign.TSA{URL: o.TSAURL},
	}
	if o.Revocation != nil {
		sd.RevocationFunction = func(cert, issuer *x509.Certificate, i *revocation.InfoArchival) error {
			if issuer == nil {
				return nil
			}
			der, err := o.Revocation.OCSP(ctx, cert, issuer)
			if err != nil {
				return err
			}
			return i.AddOCSP(der)
		}
	}
	var out bytes.Buffer
	if err := sign.Sign(bytes.NewReader(pdfBytes), &out, rdr, int64(len(pdfBytes)), sd); err != nil {
		return nil, fmt.Errorf("pades: sign: %w", err)
	}
	if _, err := Signatures(out.Bytes()); err != nil {
		return nil, fmt.Errorf("pades: signed output does not re-read: %w", err)
	}
	return out.Bytes(), nil
}

// Signature is one PDF signature: its CMS (DER) and the bytes its /ByteRange covers.
type Signature struct {
	CMS       []byte
	Signed    []byte
	ByteRange [4]int64
}

var sigRE = regexp.MustCompile(`/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]`)

// Signatures finds the signatures of a PDF by their /ByteRange; the /Contents hex string is the gap between the
// two ranges (ISO 32000-1 §12.8.1).
func Signatures(pdfBytes []byte) ([]Signature, error) {
	var out []Signature
	for _, m := range sigRE.FindAllSubmatch(pdfBytes, -1) {
		var br [4]int64
		for i := range br {
			br[i], _ = strconv.ParseInt(string(m[i+1]), 10, 64)
		}
		size := int64(len(pdfBytes))
		if br[0] != 0 || br[1] < 0 || br[2] < br[1] || br[3] < 0 || br[2]+br[3] > size {
			return nil, fmt.Errorf("pades: bad /ByteRange %v", br)
		}
		gap := bytes.TrimSpace(pdfBytes[br[1]:br[2]])
		if len(gap) < 2 || gap[0] != '<' || gap[len(gap)-1] != '>' {
			return nil, errors.New("pades: /Contents is not a hex string between the byte ranges")
		}
		raw, err := hex.DecodeString(string(gap[1 : len(gap)-1]))
		if err != nil {
			return nil, fmt.Errorf("pades: /Contents: %w", err)
		}
		// The placeholder is zero-padded: keep the one DER element.
		if n := derLen(raw); n > 0 && n <= len(raw) {
			raw = raw[:n]
		}
		signed := make([]byte, 0, br[1]+br[3])
		signed = append(signed, pdfBytes[br[0]:br[0]+br[1]]...)
		signed = append(signed, pdfBytes[br[2]:br[2]+br[3]]...)
		out = append(out, Signature{CMS: raw, Signed: signed, ByteRange: br})
	}
	if len(out) == 0 {
		return nil, ErrNoSignature
	}
	return out, nil
}

// derLen returns the length of the DER element at the start of b, or 0.
func derLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	l := int(b[1])
	if l < 0x80 {
		return 2 + l
	}
	n := l & 0x7f
	if n == 0 || n > 4 || len(b) < 2+n {
		return 0
	}
	l = 0
	for _, c := range b[2 : 2+n] {
		l = l<<8 | int(c)
	}
	return 2 + n + l
}

// Verify checks every signature of a PDF with v (signing.Verifier.VerifyDetached) and returns one report per
// signature. A signature whose byte range does not reach the end of the file is reported INDETERMINATE:
// content was appended after it.
func Verify(ctx context.Context, pdfBytes []byte, v *signing.Verifier) ([]*signing.Report, error) {
	sigs, err := Signatures(pdfBytes)
	if err != nil {
		return nil, err
	}
	var out []*signing.Report
	for i, s := range sigs {
		r := v.VerifyDetached(ctx, s.CMS, s.Signed)
		r.Name = fmt.Sprintf("signature %d", i+1)
		if r.Passed() && i == len(sigs)-1 && s.ByteRange[2]+s.ByteRange[3] != int64(len(pdfBytes)) {
			r.Indication, r.SubIndication, r.Reason = signing.TotalFailed, signing.FormatFailure, "the document was changed after the last signature"
		}
		out = append(out, r)
	}
	return out, nil
}
