package pades

import (
	"strconv"
	"time"

	"github.com/mohr-hix/mohr/internal/jalali"
)

// tehran is Iran Standard Time, UTC+03:30 (Iran has kept no daylight saving time since 2022): the day a
// prescription is dated is the day in Iran.
var tehran = time.FixedZone("IRST", 3*3600+30*60)

// persianDigits writes the ASCII digits of s as Extended Arabic-Indic (Persian) digits.
func persianDigits(s string) string {
	r := []rune(s)
	for i, c := range r {
		if c >= '0' && c <= '9' {
			r[i] = '۰' + (c - '0')
		}
	}
	return string(r)
}

// dateFa formats the calendar day of t as "۱۲ آذر ۱۴۰۵ خورشیدی (December 3, 2026)": the Jalali date in Persian,
// then the Gregorian date. The word between the year and the Latin run keeps text extractors (pdftotext) from
// moving the year into the Latin run.
func dateFa(t time.Time) string {
	d, err := jalali.FromTime(t)
	if err != nil {
		return t.Format("January 2, 2006")
	}
	return persianDigits(strconv.Itoa(d.Day)) + " " + jalali.MonthName(d.Month, false) + " " +
		persianDigits(strconv.Itoa(d.Year)) + " خورشیدی (" + t.Format("January 2, 2006") + ")"
}
