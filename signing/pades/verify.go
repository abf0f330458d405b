package pades

import (
	"context"
	"fmt"

	"github.com/mohr-hix/mohr/signing"
)

// SubFilterPAdES is the /SubFilter of a PAdES baseline signature (ETSI EN 319 142-1 §5.1).
const SubFilterPAdES = "ETSI.CAdES.detached"

// Verify checks every signature of a PDF with v, through the one validation pipeline of package signing, and
// returns one report per signature. Each signature is checked over its /ByteRange bytes with the validation
// data of the document security store (Verifier.VerifyDetachedWith: DSS certificates for path building, DSS
// OCSP responses and CRLs for revocation). Content appended after the last signature other than validation
// data (CheckAppended) makes that signature TOTAL_FAILED/FORMAT_FAILURE; a signature whose /SubFilter is not
// ETSI.CAdES.detached or adbe.pkcs7.detached is FORMAT_FAILURE.
func Verify(ctx context.Context, pdfBytes []byte, v *signing.Verifier) ([]*signing.Report, error) {
	sigs, err := Signatures(pdfBytes)
	if err != nil {
		return nil, err
	}
	var out []*signing.Report
	for i, s := range sigs {
		var r *signing.Report
		switch s.SubFilter {
		case SubFilterPAdES, "adbe.pkcs7.detached":
			vd := &signing.ValidationData{Certs: s.Validation.Certs, OCSPs: s.Validation.OCSPs, CRLs: s.Validation.CRLs}
			r = v.VerifyDetachedWith(ctx, s.CMS, s.Signed, vd)
		default:
			r = &signing.Report{Indication: signing.TotalFailed, SubIndication: signing.FormatFailure,
				Reason: fmt.Sprintf("unsupported /SubFilter %q", s.SubFilter)}
		}
		// PAdES B-LT (EN 319 142-1 §6.3): a B-T signature whose revocation data came from the document (the DSS)
		// rather than from the verifier's own source.
		if r.Passed() && r.Level == "B-T" && len(r.Revocation) > 0 && r.Revocation[0].Source == "embedded" {
			r.Level = "B-LT"
		}
		r.Name = fmt.Sprintf("signature %d", i+1)
		if r.Passed() && i == len(sigs)-1 {
			if err := CheckAppended(pdfBytes, s.ByteRange[2]+s.ByteRange[3]); err != nil {
				r.Indication, r.SubIndication, r.Reason = signing.TotalFailed, signing.FormatFailure, err.Error()
			}
		}
		out = append(out, r)
	}
	return out, nil
}
