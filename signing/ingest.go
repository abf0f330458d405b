package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Prescription is what the exchange keeps of an accepted prescription.
type Prescription struct {
	// ID is the hex SHA-256 of the FHIR Bundle (the signed content).
	ID         string
	ReceivedAt time.Time
	// Signature is the B-LT CMS SignedData (DER); Content is the FHIR Bundle it envelopes.
	Signature []byte
	Content   []byte
	// Who and when, from the validation.
	PrescriberNationalCode string
	CouncilNumber          string
	PatientNationalCode    string
	SigningTime            time.Time
	// Report is the validation report of the B-LT signature; SealedReport is that report CMS-signed by the
	// exchange's organisation seal (DER).
	Report       *Report
	SealedReport []byte
}

// PrescriptionStore persists accepted prescriptions. The database layer implements it.
type PrescriptionStore interface {
	SavePrescription(ctx context.Context, rec Prescription) error
}

// Seal is the exchange's organisation-seal key and its chain (seal certificate first, no root).
type Seal struct {
	Signer crypto.Signer
	Chain  []*x509.Certificate
}

// MIMEReportJSON is the media type of a sealed validation report's content.
const MIMEReportJSON = "application/json"

// SealReport returns r as JSON in an attached CMS SignedData signed with the seal (signed attributes as for
// prescriptions, with mime-type application/json and no signature policy).
func SealReport(ctx context.Context, r *Report, s Seal, now func() time.Time) ([]byte, error) {
	js, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("signing: marshal report: %w", err)
	}
	return Sign(ctx, js, SignOptions{Signer: s.Signer, Chain: s.Chain, Now: now, MIMEType: MIMEReportJSON, NoPolicy: true})
}

// FreshRevocationSource is a RevocationSource that can also give an OCSP response produced at or after a given
// time. The Ingestor prefers it: B-LT must embed revocation data produced after the signature timestamp it has
// just added (docs/signature-policy.md §4; EN 319 102-1 §5.6.2.3 freshness), which a responder's pre-signed
// responses (RFC 5019 §4, refreshed every few hours) never are. Mohr's own responder implements it by signing a
// response for the ingestion (revocation.Responder.SignFresh).
type FreshRevocationSource interface {
	RevocationSource
	OCSPAfter(ctx context.Context, cert, issuer *x509.Certificate, notBefore time.Time) ([]byte, error)
}

// ErrStaleRevocation: the revocation source answered with a response produced before the signature timestamp,
// which B-LT may not embed. The prescription was not rejected; the exchange could not finish and the caller may
// retry.
var ErrStaleRevocation = errors.New("signing: revocation data produced before the signature timestamp")

// Ingestor is the exchange's arrival path for signed prescriptions (ARCHITECTURE.md "Signed prescriptions"):
// validate the B-B signature, add a signature timestamp (B-T), add OCSP responses produced at or after the
// timestamp's genTime and the certificates needed (B-LT), validate the result, store it and return a sealed validation report.
type Ingestor struct {
	Verifier    *Verifier
	Timestamper Timestamper
	Revocation  RevocationSource
	Store       PrescriptionStore
	Seal        Seal
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// IngestResult is the outcome of Ingest.
type IngestResult struct {
	Report       *Report
	SealedReport []byte
	// Prescription is set when the prescription was accepted and stored.
	Prescription *Prescription
}

// Ingest validates, upgrades to B-LT, stores and reports on one signed prescription. A prescription that does
// not pass gets a sealed report and ErrRejected (nothing is stored); other errors mean the exchange could not
// finish (TSA, OCSP, store or seal unavailable) and the caller may retry.
func (in *Ingestor) Ingest(ctx context.Context, der []byte) (*IngestResult, error) {
	now := in.Now
	if now == nil {
		now = time.Now
	}
	res := &IngestResult{}
	seal := func(r *Report) error {
		var err error
		res.Report = r
		res.SealedReport, err = SealReport(ctx, r, in.Seal, now)
		return err
	}
	r := in.Verifier.Verify(ctx, der)
	if !r.Passed() {
		if err := seal(r); err != nil {
			return nil, err
		}
		return res, fmt.Errorf("%w: %s/%s", ErrRejected, r.Indication, r.SubIndication)
	}
	bt, err := AddSignatureTimestamp(ctx, der, in.Timestamper)
	if err != nil {
		return nil, err
	}
	signer, others, err := SignerCertificates(bt)
	if err != nil {
		return nil, err
	}
	issuer := findIssuer(signer, others)
	if issuer == nil {
		return nil, errors.New("signing: issuer of the signing certificate not in the signature")
	}
	genTime, err := newestSignatureTimestamp(bt)
	if err != nil {
		return nil, err
	}
	resp, err := in.revocationAfter(ctx, signer, issuer, genTime)
	if err != nil {
		return nil, err
	}
	vd := ValidationData{OCSPs: [][]byte{resp}}
	// The status of the rest of the chain and of the TSA, as the verifier established it for the B-T
	// signature (Report.Used), goes in too, so the B-LT verifies later without asking anyone.
	if rbt := in.Verifier.Verify(ctx, bt); rbt.Used != nil {
		vd.OCSPs = append(vd.OCSPs, rbt.Used.OCSPs...)
		vd.CRLs = append(vd.CRLs, rbt.Used.CRLs...)
	}
	if tsaCerts, err := timestampCerts(bt); err == nil {
		for _, c := range tsaCerts {
			vd.Certs = append(vd.Certs, c.Raw)
		}
	}
	if rc, err := responderCert(resp); err == nil && rc != nil {
		vd.Certs = append(vd.Certs, rc.Raw)
	}
	blt, err := AddValidationData(bt, vd)
	if err != nil {
		return nil, err
	}
	r = in.Verifier.Verify(ctx, blt)
	if !r.Passed() || r.Level != "B-LT" {
		if err := seal(r); err != nil {
			return nil, err
		}
		return res, fmt.Errorf("%w: after upgrade: %s/%s (%s)", ErrRejected, r.Indication, r.SubIndication, r.Level)
	}
	if err := seal(r); err != nil {
		return nil, err
	}
	content, _ := Content(blt)
	rec := Prescription{ID: r.ContentSHA256, ReceivedAt: now().UTC(), Signature: blt, Content: content,
		SigningTime: r.BestSignatureTime, Report: r, SealedReport: res.SealedReport}
	if p := r.Prescriber; p != nil {
		rec.PrescriberNationalCode, rec.CouncilNumber, rec.PatientNationalCode = p.NationalCode, p.CouncilNumber, p.PatientCode
	}
	if err := in.Store.SavePrescription(ctx, rec); err != nil {
		return nil, fmt.Errorf("signing: store prescription: %w", err)
	}
	res.Prescription = &rec
	return res, nil
}

func findIssuer(c *x509.Certificate, pool []*x509.Certificate) *x509.Certificate {
	for _, p := range pool {
		if c.CheckSignatureFrom(p) == nil {
			return p
		}
	}
	return nil
}

// revocationAfter obtains an OCSP response for signer produced at or after t (its producedAt and its thisUpdate),
// from a FreshRevocationSource when Revocation is one, else from Revocation as it answers. Anything older is
// ErrStaleRevocation: never embedded.
func (in *Ingestor) revocationAfter(ctx context.Context, signer, issuer *x509.Certificate, t time.Time) ([]byte, error) {
	var der []byte
	var err error
	if f, ok := in.Revocation.(FreshRevocationSource); ok {
		der, err = f.OCSPAfter(ctx, signer, issuer, t)
	} else {
		der, err = in.Revocation.OCSP(ctx, signer, issuer)
	}
	if err != nil {
		return nil, fmt.Errorf("signing: fetch OCSP: %w", err)
	}
	r, err := ocsp.ParseResponseForCert(der, signer, issuer)
	if err != nil {
		return nil, fmt.Errorf("signing: fetched OCSP response: %w", err)
	}
	if r.ProducedAt.Before(t) || r.ThisUpdate.Before(t) {
		return nil, fmt.Errorf("%w: produced %s, thisUpdate %s, timestamp %s", ErrStaleRevocation,
			r.ProducedAt.UTC().Format(time.RFC3339), r.ThisUpdate.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339Nano))
	}
	return der, nil
}

// newestSignatureTimestamp returns the latest genTime among the signature timestamps of der (the one Ingest has
// just added is the newest).
func newestSignatureTimestamp(der []byte) (time.Time, error) {
	sd, err := parseOne(der)
	if err != nil {
		return time.Time{}, err
	}
	var newest time.Time
	for _, a := range sd.signers[0].unsignedAttrs {
		if !bytes.Equal(a.oid, dSigTimeStamp) {
			continue
		}
		tok, ok := a.single()
		var tsd signedData
		if !ok || parseSignedData(tok, &tsd) != nil || !tsd.hasContent {
			return time.Time{}, formatErr("signature timestamp token")
		}
		info, err := parseTSTInfo(tsd.content)
		if err != nil {
			return time.Time{}, err
		}
		if info.genTime.After(newest) {
			newest = info.genTime
		}
	}
	if newest.IsZero() {
		return time.Time{}, formatErr("no signature timestamp")
	}
	return newest, nil
}
