package pades

import (
	"strconv"
	"time"
)

func itoa(i int) string { return strconv.Itoa(i) }

// jalali returns the Solar Hijri (Jalali) date of t's calendar day: the arithmetic 33-year-cycle conversion
// commonly used in Iran's software (exact for 1300-1500 AP, the years a prescription can carry).
func jalali(t time.Time) (jy, jm, jd int) {
	gy, gm, gd := t.Date()
	cum := [...]int{0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334}
	gy2 := gy
	if gm > 2 {
		gy2 = gy + 1
	}
	days := 355666 + 365*gy + (gy2+3)/4 - (gy2+99)/100 + (gy2+399)/400 + gd + cum[gm-1]
	jy = -1595 + 33*(days/12053)
	days %= 12053
	jy += 4 * (days / 1461)
	days %= 1461
	if days > 365 {
		jy += (days - 1) / 365
		days = (days - 1) % 365
	}
	if days < 186 {
		return jy, 1 + days/31, 1 + days%31
	}
	return jy, 7 + (days-186)/30, 1 + (days-186)%30
}

var jalaliMonths = [...]string{"فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور", "مهر", "آبان", "آذر", "دی", "بهمن", "اسفند"}

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

// dateFa formats t as "۱۲ آذر ۱۴۰۵ خورشیدی (December 3, 2026)": the Jalali date in Persian, then the Gregorian
// date. The word between the year and the Latin run keeps text extractors (pdftotext) from moving the year
// into the Latin run.
func dateFa(t time.Time) string {
	y, m, d := jalali(t)
	return persianDigits(itoa(d)) + " " + jalaliMonths[m-1] + " " + persianDigits(itoa(y)) + " خورشیدی (" + t.Format("January 2, 2006") + ")"
}
