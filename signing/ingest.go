package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
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
	// Submitter names who submitted it (the API caller), for read access; empty when unknown.
	Submitter string
	// SignatureTimestamp is the RFC 3161 token of the signature timestamp the ingestion added, when it is the
	// signature's only timestamp (the input was B-B): TokenArchiveDue needs only it, not a parse of Signature.
	SignatureTimestamp []byte
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
	sealed, _, err := sealReport(ctx, r, s, now)
	return sealed, err
}

// sealReport is SealReport, also returning the report's JSON (the sealed content).
func sealReport(ctx context.Context, r *Report, s Seal, now func() time.Time) ([]byte, []byte, error) {
	js, err := json.Marshal(r)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: marshal report: %w", err)
	}
	sealed, err := Sign(ctx, js, SignOptions{Signer: s.Signer, Chain: s.Chain, Now: now, MIMEType: MIMEReportJSON, NoPolicy: true})
	return sealed, js, err
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
	// ReportJSON is Report as JSON, the content SealedReport signs.
	ReportJSON []byte
	// Prescription is set when the prescription was accepted and stored.
	Prescription *Prescription
}

// Ingest validates, upgrades to B-LT, stores and reports on one signed prescription. A prescription that does
// not pass gets a sealed report and ErrRejected (nothing is stored); other errors mean the exchange could not
// finish (TSA, OCSP, store or seal unavailable) and the caller may retry.
func (in *Ingestor) Ingest(ctx context.Context, der []byte) (*IngestResult, error) {
	return in.IngestAs(ctx, der, "")
}

// IngestAs is Ingest recording who submitted the prescription (Prescription.Submitter).
func (in *Ingestor) IngestAs(ctx context.Context, der []byte, submitter string) (*IngestResult, error) {
	now := in.Now
	if now == nil {
		now = time.Now
	}
	// The three validations of one ingestion (the input, the B-T signature, the B-LT result) judge the
	// prescriber against the registry as it stood at the first lookup, milliseconds earlier: one query, not three.
	if memo, _ := ctx.Value(registryMemoKey{}).(*registryMemo); memo == nil {
		ctx = withRegistryMemo(ctx)
	}
	res := &IngestResult{}
	seal := func(r *Report) error {
		var err error
		res.Report = r
		res.SealedReport, res.ReportJSON, err = sealReport(ctx, r, in.Seal, now)
		return err
	}
	// Each of the ingestion's three documents (the B-B input, the B-T and the B-LT it builds) is parsed once
	// here, and its parsed form handed to every step that reads it (validation, timestamping, revocation,
	// re-encoding, the stored content): the parser never sees the same bytes twice.
	bb := new(signedData)
	r := in.Verifier.verifyParsed(ctx, bb, parseSignedData(der, bb))
	if !r.Passed() {
		if err := seal(r); err != nil {
			return nil, err
		}
		return res, fmt.Errorf("%w: %s/%s", ErrRejected, r.Indication, r.SubIndication)
	}
	bt, tok, signed, err := addSignatureTimestampParsed(ctx, bb, in.Timestamper)
	if err != nil {
		return nil, err
	}
	// The in-process TSA verified the token's signature before releasing it: the validations below find that
	// verification (same certificate, digest and signature value) instead of making it again.
	in.Verifier.rememberSignedHere(signed)
	if len(r.Timestamps) > 0 {
		tok = nil // not the only signature timestamp
	}
	btsd, err := parseOne(bt)
	if err != nil {
		return nil, err
	}
	blt, err := in.addRevocation(ctx, btsd)
	if err != nil {
		return nil, err
	}
	bltsd := new(signedData)
	r = in.Verifier.verifyParsed(ctx, bltsd, parseSignedData(blt, bltsd))
	if !r.Passed() || r.Level != "B-LT" {
		if err := seal(r); err != nil {
			return nil, err
		}
		return res, fmt.Errorf("%w: after upgrade: %s/%s (%s)", ErrRejected, r.Indication, r.SubIndication, r.Level)
	}
	if err := seal(r); err != nil {
		return nil, err
	}
	// The content the B-LT envelopes (it passed, so it has one), aliasing blt: both are stored, neither changes.
	content := bltsd.content
	rec := Prescription{ID: r.ContentSHA256, ReceivedAt: now().UTC(), Signature: blt, Content: content,
		SigningTime: r.BestSignatureTime, Report: r, SealedReport: res.SealedReport, Submitter: submitter, SignatureTimestamp: tok}
	if p := r.Prescriber; p != nil {
		rec.PrescriberNationalCode, rec.CouncilNumber, rec.PatientNationalCode = p.NationalCode, p.CouncilNumber, p.PatientCode
	}
	if err := in.Store.SavePrescription(ctx, rec); err != nil {
		return nil, fmt.Errorf("signing: store prescription: %w", err)
	}
	res.Prescription = &rec
	return res, nil
}

// addRevocation upgrades a B-T signature, parsed (parseOne), to B-LT: an OCSP response produced at or after its newest signature
// timestamp, and the TSA and responder certificates. Certificates are parsed, chains checked and the fresh
// response verified through the Verifier's caches (by fingerprint), so the validation of the result finds them
// there instead of doing the work again.
func (in *Ingestor) addRevocation(ctx context.Context, sd *signedData) ([]byte, error) {
	v := in.Verifier
	var all []*certEntry
	for _, c := range sd.certs {
		e, err := v.cert(c)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate: %v", errFormat, err)
		}
		all = append(all, e)
	}
	signer := findSigner(&sd.signers[0], all)
	if signer == nil {
		return nil, fmt.Errorf("%w: signing certificate not found", errFormat)
	}
	var issuer *certEntry
	for _, c := range all {
		if c != signer && v.issuedBy(signer, c) {
			issuer = c
			break
		}
	}
	if issuer == nil {
		return nil, errors.New("signing: issuer of the signing certificate not in the signature")
	}
	genTime, err := newestSignatureTimestamp(sd)
	if err != nil {
		return nil, err
	}
	resp, res, err := in.revocationAfter(ctx, signer, issuer, genTime)
	if err != nil {
		return nil, err
	}
	vd := ValidationData{OCSPs: [][]byte{resp}}
	// The status of the rest of the chain and of the TSA, as the verifier established it for the B-T
	// signature (Report.Used), goes in too, so the B-LT verifies later without asking anyone.
	if rbt := v.verifyParsed(ctx, sd, nil); rbt.Used != nil {
		// The signer's own status is the fresh response above, never one produced before the timestamp: the
		// responses the report used for the signing certificate stay out.
		signers := map[string]bool{}
		for _, ri := range rbt.Revocation {
			if ri.Serial == signer.info.Serial {
				signers[ri.ResponseSHA256] = true
			}
		}
		for _, o := range rbt.Used.OCSPs {
			if fp := sha256.Sum256(o); !signers[hex.EncodeToString(fp[:])] {
				vd.OCSPs = append(vd.OCSPs, o)
			}
		}
		vd.CRLs = append(vd.CRLs, rbt.Used.CRLs...)
	}
	for _, a := range sd.signers[0].unsignedAttrs {
		var tsd signedData
		if tok, ok := a.single(); !ok || !bytes.Equal(a.oid, dSigTimeStamp) || parseSignedData(tok, &tsd) != nil {
			continue
		}
		for _, c := range tsd.certs {
			if _, err := v.cert(c); err == nil {
				vd.Certs = append(vd.Certs, c)
			}
		}
	}
	if res.responder != nil {
		vd.Certs = append(vd.Certs, res.responder.Raw)
	}
	return addValidationDataParsed(sd, vd, v.parseCert)
}

// parseCert parses a certificate through v's cache (by DER).
func (v *Verifier) parseCert(der []byte) (*x509.Certificate, error) {
	e, err := v.cert(der)
	if err != nil {
		return nil, err
	}
	return e.cert, nil
}

// issuedBy reports whether parent's key signed child (x509 CheckSignatureFrom), remembering the pairs that did
// by fingerprint in the verifier's signature cache (a deterministic check: the same pair gives the same answer).
func (v *Verifier) issuedBy(child, parent *certEntry) bool {
	if !bytes.Equal(child.cert.RawIssuer, parent.cert.RawSubject) {
		return false
	}
	var key [32]byte
	k := sha256.New()
	k.Write([]byte("issued-by\x00"))
	k.Write(child.fp[:])
	k.Write(parent.fp[:])
	k.Sum(key[:0])
	if _, ok := v.sigs.get(key); ok {
		return true
	}
	if child.cert.CheckSignatureFrom(parent.cert) != nil {
		return false
	}
	v.sigs.put(key, struct{}{})
	return true
}

// producedAtSlack is how far producedAt may precede the signature timestamp when thisUpdate does not.
const producedAtSlack = time.Minute

// revocationAfter obtains an OCSP response for signer produced at or after t (its producedAt and its thisUpdate),
// from a FreshRevocationSource when Revocation is one, else from Revocation as it answers. Anything older is
// ErrStaleRevocation: never embedded. The response is checked as the validation of the result will check it
// (Verifier.checkOCSP: signed by the issuer or a responder it authorised, RFC 6960 §4.2.2.2), through the same
// cache.
func (in *Ingestor) revocationAfter(ctx context.Context, signer, issuer *certEntry, t time.Time) ([]byte, *ocspResult, error) {
	var der []byte
	var err error
	if f, ok := in.Revocation.(FreshRevocationSource); ok {
		der, err = f.OCSPAfter(ctx, signer.cert, issuer.cert, t)
	} else {
		der, err = in.Revocation.OCSP(ctx, signer.cert, issuer.cert)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("signing: fetch OCSP: %w", err)
	}
	basic, err := basicFromOCSPResponse(der)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: fetched OCSP response: %w", err)
	}
	res := in.Verifier.checkOCSP(basic, issuer, true)
	if res.err != nil {
		return nil, nil, fmt.Errorf("signing: fetched OCSP response: %w", res.err)
	}
	r := res.resp
	if r.SerialNumber.Cmp(signer.cert.SerialNumber) != 0 {
		return nil, nil, fmt.Errorf("signing: fetched OCSP response is for serial %x, not the signer's", r.SerialNumber)
	}
	// thisUpdate (when the status was known to be correct, RFC 6960 §4.2.2.1) must not precede the timestamp.
	// producedAt may trail it by producedAtSlack: some responders, golang.org/x/crypto/ocsp's CreateResponse
	// among them, write producedAt truncated to the minute. Mohr's own responder (SignFresh) dates both exactly.
	if r.ThisUpdate.Before(t) || r.ProducedAt.Before(t.Add(-producedAtSlack)) {
		return nil, nil, fmt.Errorf("%w: produced %s, thisUpdate %s, timestamp %s", ErrStaleRevocation,
			r.ProducedAt.UTC().Format(time.RFC3339), r.ThisUpdate.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339Nano))
	}
	return der, res, nil
}

// newestSignatureTimestamp returns the latest genTime among the signature timestamps of sd (the one Ingest has
// just added is the newest).
func newestSignatureTimestamp(sd *signedData) (time.Time, error) {
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

// Levels Upgrade reaches, in order.
var upgradeLevels = []string{"B-B", "B-T", "B-LT", "B-LTA"}

func levelRank(l string) int {
	for i, x := range upgradeLevels {
		if x == l {
			return i
		}
	}
	return -1
}

// ErrLevel: Upgrade was asked for a level it does not make.
var ErrLevel = errors.New("signing: level must be B-T, B-LT or B-LTA")

// Upgrade extends a signature that validates to level ("B-T", "B-LT" or "B-LTA"; EN 319 122-1 §5.3-§5.5) with
// the Ingestor's TSA and revocation source, as ingestion does, and returns it with the report of the result. A
// signature already at or above level comes back unchanged. A signature that does not pass, before or after,
// is ErrRejected with its report.
func (in *Ingestor) Upgrade(ctx context.Context, der []byte, level string) ([]byte, *Report, error) {
	want := levelRank(level)
	if want < 1 {
		return nil, nil, ErrLevel
	}
	r := in.Verifier.Verify(ctx, der)
	if !r.Passed() {
		return nil, r, fmt.Errorf("%w: %s/%s", ErrRejected, r.Indication, r.SubIndication)
	}
	out := der
	var err error
	for have := levelRank(r.Level); have < want; have++ {
		switch upgradeLevels[have+1] {
		case "B-T":
			out, err = AddSignatureTimestamp(ctx, out, in.Timestamper)
		case "B-LT":
			var sd *signedData
			if sd, err = parseOne(out); err == nil {
				out, err = in.addRevocation(ctx, sd)
			}
		case "B-LTA":
			out, err = AddArchiveTimestamp(ctx, out, in.Timestamper)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if levelRank(r.Level) >= want {
		return der, r, nil
	}
	r = in.Verifier.Verify(ctx, out)
	if !r.Passed() || r.Level != level {
		return nil, r, fmt.Errorf("%w: after upgrade: %s/%s (%s)", ErrRejected, r.Indication, r.SubIndication, r.Level)
	}
	return out, r, nil
}

// NextArchiveDue is when der's archive timestamp (its signature timestamp when it has none) must be renewed:
// window before the TSA certificate it relies on expires, or before an algorithm it relies on reaches the end
// of its rule in DefaultAlgorithms (NextArchiveDueUnder for a configured policy).
func NextArchiveDue(der []byte, window time.Duration) (time.Time, error) {
	return NextArchiveDueUnder(der, window, nil)
}

// NextArchiveDueUnder is NextArchiveDue under the trust policy p's AlgorithmRules (RenewalDue's rule as a date).
func NextArchiveDueUnder(der []byte, window time.Duration, p *TrustPolicy) (time.Time, error) {
	st, err := ArchiveStatus(der)
	if err != nil {
		return time.Time{}, err
	}
	end := st.TSANotAfter
	alg, err := archiveAlgorithmsEnd(der, p)
	if err != nil {
		return time.Time{}, err
	}
	if !alg.IsZero() && alg.Before(end) {
		end = alg
	}
	return end.Add(-window), nil
}
