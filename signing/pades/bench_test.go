package pades

import (
	"context"
	"testing"

	"github.com/mohr-hix/mohr/signing"
)

// BenchmarkVerifyPDF verifies a B-LT printout end to end (PDF parsing, AcroForm, DSS, CheckAppended and the
// verifier). BenchmarkVerifyPDFBaseline is the same verification with the CMS, signed bytes and DSS values
// already extracted: the ratio of the two is the cost of reading the PDF. Run both in one process and report
// the ratio (the machine is shared).
func BenchmarkVerifyPDF(b *testing.B) {
	f, blt := benchFixture(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if rs, err := Verify(ctx, blt, f.v); err != nil || !rs[0].Passed() {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyPDFBaseline(b *testing.B) {
	f, blt := benchFixture(b)
	s, _ := Signatures(blt)
	vd := &signing.ValidationData{Certs: s[0].Validation.Certs, OCSPs: s[0].Validation.OCSPs, CRLs: s[0].Validation.CRLs}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := f.v.VerifyDetachedWith(ctx, s[0].CMS, s[0].Signed, vd); !r.Passed() {
			b.Fatal(r.Summary())
		}
	}
}

func BenchmarkRender(b *testing.B) {
	f, _ := benchFixture(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Render(f.bundle, f.doc.Cert); err != nil {
			b.Fatal(err)
		}
	}
}

func benchFixture(b *testing.B) (*fixture, []byte) {
	f := setup(b)
	return f, f.sign(b, LevelBLT)
}
