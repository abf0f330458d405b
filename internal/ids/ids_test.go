package ids

import (
	"errors"
	"testing"
)

func TestNationalCode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
		err  error
	}{
		{"worked example", "0499370899", "0499370899", nil},
		{"persian digits", "۰۴۹۹۳۷۰۸۹۹", "0499370899", nil},
		{"arabic-indic digits", "٠٤٩٩٣٧٠٨٩٩", "0499370899", nil},
		{"surrounding space", " 0499370899\n", "0499370899", nil},
		{"bad checksum", "0499370898", "", ErrNationalCodeChecksum},
		{"all same", "1111111111", "", ErrNationalCodeRepeated},
		{"too short", "049937089", "", ErrNationalCodeFormat},
		{"letters", "04993708a9", "", ErrNationalCodeFormat},
		{"empty", "", "", ErrNationalCodeFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NationalCode(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("NationalCode(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("NationalCode(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckDigitAgreesWithValidator(t *testing.T) {
	for _, p := range []string{"049937089", "123456789", "000000001", "987654321", "001234567"} {
		d, err := NationalCodeCheckDigit(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NationalCode(p + string(d)); err != nil {
			t.Errorf("%s%c: %v", p, d, err)
		}
	}
}

func FuzzNationalCode(f *testing.F) {
	for _, s := range []string{"0499370899", "۰۴۹۹۳۷۰۸۹۹", "", "1111111111", "abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := NationalCode(s)
		if err != nil {
			return
		}
		// A valid code is idempotent and ASCII.
		c2, err := NationalCode(c)
		if err != nil || c2 != c || len(c) != 10 {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", s, c, c2, err)
		}
	})
}

func TestIdentifiers(t *testing.T) {
	if _, err := CouncilNumber("12345"); err != nil {
		t.Error(err)
	}
	if _, err := CouncilNumber("12a45"); !errors.Is(err, ErrCouncilNumber) {
		t.Error("want ErrCouncilNumber")
	}
	if _, err := SIAMID("SIAM-1001"); err != nil {
		t.Error(err)
	}
	if _, err := SIAMID("x"); !errors.Is(err, ErrSIAMID) {
		t.Error("want ErrSIAMID")
	}
	if _, err := LicenceNumber("LIC/1402/77"); err != nil {
		t.Error(err)
	}
	if _, err := LicenceNumber("bad licence"); !errors.Is(err, ErrLicenceNumber) {
		t.Error("want ErrLicenceNumber")
	}
}
