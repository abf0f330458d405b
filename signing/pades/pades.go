package pades

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/digitorus/pdf"
	"github.com/digitorus/pdfsign/revocation"
	"github.com/digitorus/pdfsign/sign"

	"github.com/mohr-hix/mohr/signing"
)

// Level is a PAdES baseline level (ETSI EN 319 142-1 §6).
type Level string

// The levels Sign makes.
const (
	LevelBB  Level = "B-B"
	LevelBT  Level = "B-T"
	LevelBLT Level = "B-LT"
)

// Options configure Sign.
type Options struct {
	Signer crypto.Signer
	// Chain is the signing certificate first, then intermediates (never the root).
	Chain []*x509.Certificate
	// Timestamper, when set, adds a signature timestamp to the CMS (B-T, EN 319 142-1 §6.3).
	Timestamper signing.Timestamper
	// Revocation, when set (with a Timestamper), makes B-LT: OCSP responses for every certificate of the
	// signer's chain and of the TSA's chain except the trust anchor, written with the certificates into the
	// document security store (EN 319 142-1 §5.4, §6.3). pdfsign never fetches anything itself.
	Revocation signing.RevocationSource
	// CRLs and OCSPs (DER CRLs and OCSPResponses obtained beforehand, for example by the exchange) are added
	// to the DSS as they are (B-LT).
	CRLs, OCSPs [][]byte
	// ExtraCerts are added to the DSS /Certs (for example the OCSP responder's chain).
	ExtraCerts             []*x509.Certificate
	Name, Location, Reason string
	// Now is the signing time written to /M; time.Now when nil. The CMS carries no signing-time
	// (EN 319 142-1 §5.2.1).
	Now func() time.Time
}

// Errors of this package.
var (
	// ErrNoSignature: the PDF holds no signature.
	ErrNoSignature = errors.New("pades: no signature in the PDF")
	// ErrNoRoom: the CMS does not fit the /Contents reservation.
	ErrNoRoom = errors.New("pades: signature larger than its /Contents reservation")
	// ErrLevel: B-LT was asked for without a timestamp (B-LT builds on B-T).
	ErrLevel = errors.New("pades: B-LT needs a signature timestamp")
	// ErrNotPrescriber: the signing certificate is not a physician-signing certificate.
	ErrNotPrescriber = errors.New("pades: the signing certificate is not a prescriber's (physician-signing profile)")
	// ErrChangedAfterSigning: content other than validation data was appended after the last signature.
	ErrChangedAfterSigning = errors.New("pades: the document was changed after the last signature")
)

// Sign signs pdfBytes as a PAdES baseline signature (ETSI EN 319 142-1): SubFilter ETSI.CAdES.detached, a
// CMS with signing-certificate-v2 and no signing-time (the time is in /M), B-T when o.Timestamper is set and
// B-LT (a DSS dictionary with VRI) when o.Revocation, o.CRLs or o.OCSPs are set as well.
//
// digitorus/pdfsign lays out the incremental update (signature field and widget, AcroForm, signature
// dictionary, xref) and reserves /Contents; Mohr then writes the CMS itself with signing.Sign, because
// pdfsign's CMS (digitorus/pkcs7) always carries signing-time and Adobe's revocation attribute and its
// dictionary names SubFilter adbe.pkcs7.detached, all three of which PAdES baseline excludes. The layout pass
// signs with a throwaway key of the certificate's type, so the real key (a card) signs exactly once. The output
// is re-read and checked before it is returned (DEPS.md: pdfsign finds its placeholder by searching).
func Sign(ctx context.Context, pdfBytes []byte, o Options) ([]byte, Level, error) {
	if o.Signer == nil || len(o.Chain) == 0 {
		return nil, "", signing.ErrNoChain
	}
	blt := o.Revocation != nil || len(o.CRLs) > 0 || len(o.OCSPs) > 0
	if blt && o.Timestamper == nil {
		return nil, "", ErrLevel
	}
	if err := checkPrescriber(o.Chain[0]); err != nil {
		return nil, "", err
	}
	return signUnchecked(ctx, pdfBytes, o, blt)
}

// signUnchecked is Sign after its checks of the options and the certificate.
func signUnchecked(ctx context.Context, pdfBytes []byte, o Options, blt bool) ([]byte, Level, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	reserve := 4096
	for _, c := range o.Chain {
		reserve += len(c.Raw)
	}
	if o.Timestamper != nil {
		reserve += 8192 // a token with the TSA's chain
	}
	out, err := layout(pdfBytes, o, now(), reserve)
	if err != nil {
		return nil, "", err
	}
	sigs, err := Signatures(out)
	if err != nil {
		return nil, "", fmt.Errorf("pades: re-read layout: %w", err)
	}
	s := sigs[len(sigs)-1]
	// The signature dictionary is the object holding this /ByteRange: patch its SubFilter (same length, so
	// no offset moves) before the bytes are signed.
	dictStart := bytes.LastIndex(out[:s.ByteRange[1]], []byte(" 0 obj"))
	old := []byte("/SubFilter /adbe.pkcs7.detached")
	i := bytes.LastIndex(out[:s.ByteRange[1]], old)
	if dictStart < 0 || i < dictStart {
		return nil, "", errors.New("pades: signature dictionary not found in the layout")
	}
	copy(out[i:], "/SubFilter /ETSI.CAdES.detached")
	br := s.ByteRange
	signed := append(append([]byte{}, out[:br[1]]...), out[br[2]:br[2]+br[3]]...)

	cms, err := signing.Sign(ctx, signed, signing.SignOptions{Signer: o.Signer, Chain: o.Chain, PAdES: true})
	if err != nil {
		return nil, "", err
	}
	level := LevelBB
	rec := &recorder{inner: o.Timestamper}
	if o.Timestamper != nil {
		if cms, err = signing.AddSignatureTimestamp(ctx, cms, rec); err != nil {
			return nil, "", err
		}
		level = LevelBT
	}
	room := int(br[2]-br[1]) - 2
	h := hex.EncodeToString(cms)
	if len(h) > room {
		return nil, "", fmt.Errorf("%w: %d > %d hex digits", ErrNoRoom, len(h), room)
	}
	copy(out[br[1]+1:], h)
	for j := br[1] + 1 + int64(len(h)); j < br[2]-1; j++ {
		out[j] = '0'
	}
	if blt {
		vd, err := collect(ctx, rec.token, o)
		if err != nil {
			return nil, "", err
		}
		if out, err = AddDSS(out, vd); err != nil {
			return nil, "", err
		}
		level = LevelBLT
	}
	check, err := Signatures(out)
	if err != nil {
		return nil, "", fmt.Errorf("pades: signed output does not re-read: %w", err)
	}
	if last := check[len(check)-1]; !bytes.Equal(last.CMS, cms) || !bytes.Equal(last.Signed, signed) {
		return nil, "", errors.New("pades: signed output does not hold the signature made")
	}
	return out, level, nil
}

// layout runs digitorus/pdfsign with a throwaway key to write the incremental update with a /Contents
// reservation of at least reserve bytes.
func layout(pdfBytes []byte, o Options, at time.Time, reserve int) ([]byte, error) {
	rdr, err := pdf.NewReader(bytes.NewReader(pdfBytes), int64(len(pdfBytes)))
	if err != nil {
		return nil, fmt.Errorf("pades: read PDF: %w", err)
	}
	var throwaway crypto.Signer
	switch o.Chain[0].PublicKey.(type) {
	case *rsa.PublicKey:
		throwaway, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		throwaway, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	// pdfsign sizes /Contents from the revocation data it is given: an OCTET STRING of the size wanted.
	pad, _ := asn1.Marshal(make([]byte, reserve))
	sd := sign.SignData{
		Signature: sign.SignDataSignature{
			Info:     sign.SignDataSignatureInfo{Name: o.Name, Reason: o.Reason, Location: o.Location, Date: at},
			CertType: sign.ApprovalSignature, DocMDPPerm: sign.AllowFillingExistingFormFieldsAndSignaturesPerms,
		},
		Signer: throwaway, DigestAlgorithm: crypto.SHA256, Certificate: o.Chain[0],
		CertificateChains: [][]*x509.Certificate{o.Chain},
		RevocationData:    revocation.InfoArchival{OCSP: []asn1.RawValue{{FullBytes: pad}}},
	}
	var out bytes.Buffer
	if err := sign.Sign(bytes.NewReader(pdfBytes), &out, rdr, int64(len(pdfBytes)), sd); err != nil {
		return nil, fmt.Errorf("pades: lay out signature: %w", err)
	}
	return out.Bytes(), nil
}

// recorder keeps the token its Timestamper returned, so that B-LT can cover the TSA's certificates.
type recorder struct {
	inner signing.Timestamper
	token []byte
}

func (r *recorder) Timestamp(ctx context.Context, h crypto.Hash, digest []byte) ([]byte, error) {
	tok, err := r.inner.Timestamp(ctx, h, digest)
	r.token = tok
	return tok, err
}

// collect gathers the B-LT validation data for cms: the certificates of the signature and of its timestamp
// token, OCSP responses for each of them whose issuer is among them (never for a trust anchor; the
// intermediates' only when the root is given in ExtraCerts), and o.CRLs.
func collect(ctx context.Context, token []byte, o Options) (ValidationValues, error) {
	var vd ValidationValues
	certs := append([]*x509.Certificate{}, o.Chain...)
	tsa, others, err := signing.SignerCertificates(token)
	if err != nil {
		return vd, fmt.Errorf("pades: timestamp token: %w", err)
	}
	certs = append(append(certs, tsa), others...)
	certs = append(certs, o.ExtraCerts...)
	seen := map[string]bool{}
	var uniq []*x509.Certificate
	for _, c := range certs {
		if !seen[string(c.Raw)] {
			seen[string(c.Raw)] = true
			uniq = append(uniq, c)
		}
	}
	for _, c := range uniq {
		vd.Certs = append(vd.Certs, c.Raw)
	}
	if o.Revocation != nil {
		for _, c := range uniq {
			if bytes.Equal(c.RawIssuer, c.RawSubject) {
				continue // a root: replaced, never revoked (policy §5)
			}
			issuer := issuerOf(c, uniq)
			if issuer == nil {
				continue // an intermediate whose issuer (the root) was not given in ExtraCerts
			}
			r, err := o.Revocation.OCSP(ctx, c, issuer)
			if err != nil {
				return vd, fmt.Errorf("pades: B-LT: OCSP for %q: %w", c.Subject.CommonName, err)
			}
			vd.OCSPs = append(vd.OCSPs, r)
		}
	}
	vd.CRLs = append(vd.CRLs, o.CRLs...)
	vd.OCSPs = append(vd.OCSPs, o.OCSPs...)
	return vd, nil
}

func issuerOf(c *x509.Certificate, pool []*x509.Certificate) *x509.Certificate {
	for _, p := range pool {
		if p != c && bytes.Equal(p.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(p) == nil {
			return p
		}
	}
	return nil
}

// checkPrescriber refuses, before the key is used, a certificate that could not sign a prescription printout:
// one without the physician-signing profile's key usage (contentCommitment), with an extended key usage
// (TLS, OCSP, time-stamping, adapters), or without a council number in the admission extension. The
// verifier's signer constraints (the one validation pipeline in package signing) remain the authority.
func checkPrescriber(c *x509.Certificate) error {
	if c.KeyUsage&x509.KeyUsageContentCommitment == 0 || len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0 {
		return ErrNotPrescriber
	}
	if p, err := PrescriberFromCertificate(c); err != nil || p.CouncilNumber == "" {
		return ErrNotPrescriber
	}
	return nil
}
