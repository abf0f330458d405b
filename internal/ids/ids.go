// Package ids validates the national identifiers of the health domain: the Iranian national code
// (کد ملی), medical-council numbers and SIAM facility IDs. See ../shared/DOMAIN.md "Identifiers".
package ids

import (
	"errors"
	"strings"
)

// Errors callers may branch on with errors.Is.
var (
	ErrNationalCodeFormat   = errors.New("ids: national code must be 10 digits")
	ErrNationalCodeChecksum = errors.New("ids: national code checksum does not match")
	ErrNationalCodeRepeated = errors.New("ids: national code of ten identical digits is invalid")
	ErrCouncilNumber        = errors.New("ids: medical-council number must be 1 to 10 ASCII digits")
	ErrSIAMID               = errors.New("ids: SIAM ID must be 4 to 20 ASCII letters, digits or '-'")
	ErrLicenceNumber        = errors.New("ids: licence number must be 1 to 40 ASCII letters, digits, '-' or '/'")
)

// NormalizeDigits maps Persian (U+06F0..U+06F9) and Arabic-Indic (U+0660..U+0669) digits to ASCII
// and trims surrounding space. Other characters are left as they are.
func NormalizeDigits(s string) string {
	s = strings.TrimSpace(s)
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r >= '۰' && r <= '۹':
			b.WriteRune('0' + (r - '۰'))
		case r >= '٠' && r <= '٩':
			b.WriteRune('0' + (r - '٠'))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// NationalCode normalises code and checks it: ten digits d1..d10, S = d1*10 + ... + d9*2, r = S mod 11,
// valid when d10 == r for r < 2 and d10 == 11-r otherwise; ten identical digits are rejected.
// It returns the ASCII form.
func NationalCode(code string) (string, error) {
	c := NormalizeDigits(code)
	if len(c) != 10 {
		return "", ErrNationalCodeFormat
	}
	sum := 0
	same := true
	for i := 0; i < 10; i++ {
		if c[i] < '0' || c[i] > '9' {
			return "", ErrNationalCodeFormat
		}
		if c[i] != c[0] {
			same = false
		}
		if i < 9 {
			sum += int(c[i]-'0') * (10 - i)
		}
	}
	if same {
		return "", ErrNationalCodeRepeated
	}
	r := sum % 11
	check := int(c[9] - '0')
	if (r < 2 && check != r) || (r >= 2 && check != 11-r) {
		return "", ErrNationalCodeChecksum
	}
	return c, nil
}

// NationalCodeCheckDigit returns the check digit for the first nine digits of a national code.
// It is used by the synthetic data generators.
func NationalCodeCheckDigit(first9 string) (byte, error) {
	if len(first9) != 9 {
		return 0, ErrNationalCodeFormat
	}
	sum := 0
	for i := 0; i < 9; i++ {
		if first9[i] < '0' || first9[i] > '9' {
			return 0, ErrNationalCodeFormat
		}
		sum += int(first9[i]-'0') * (10 - i)
	}
	r := sum % 11
	if r < 2 {
		return byte('0' + r), nil
	}
	return byte('0' + 11 - r), nil
}

// CouncilNumber normalises and checks a medical-council number: 1 to 10 ASCII digits.
func CouncilNumber(n string) (string, error) {
	c := NormalizeDigits(n)
	if len(c) < 1 || len(c) > 10 {
		return "", ErrCouncilNumber
	}
	for i := 0; i < len(c); i++ {
		if c[i] < '0' || c[i] > '9' {
			return "", ErrCouncilNumber
		}
	}
	return c, nil
}

// SIAMID normalises and checks a SIAM facility identifier.
func SIAMID(s string) (string, error) {
	c := NormalizeDigits(s)
	if len(c) < 4 || len(c) > 20 {
		return "", ErrSIAMID
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		if !(ch >= '0' && ch <= '9' || ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch == '-') {
			return "", ErrSIAMID
		}
	}
	return c, nil
}

// LicenceNumber normalises and checks a facility activity licence number.
func LicenceNumber(s string) (string, error) {
	c := NormalizeDigits(s)
	if len(c) < 1 || len(c) > 40 {
		return "", ErrLicenceNumber
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		if !(ch >= '0' && ch <= '9' || ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch == '-' || ch == '/') {
			return "", ErrLicenceNumber
		}
	}
	return c, nil
}
