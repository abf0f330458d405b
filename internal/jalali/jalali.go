// Package jalali converts between the Gregorian calendar and the Solar Hijri (Jalali, Iranian) calendar, the
// civil calendar of Iran, for dates shown to people. Mohr stores and signs UTC; it renders Jalali dates only
// in user-facing output (shared DOMAIN.md, "Dates").
//
// The conversion is the arithmetic one of Kazimierz M. Borkowski ("The Persian calendar for 3000 years",
// Earth, Moon and Planets 74, 1996), as used by the common jalaali libraries: leap years follow 33-year
// cycles between a table of break years, which agrees with the astronomical calendar (the vernal equinox
// observed at Tehran) for the years 1 to 3177 AP. It is written by hand because the standard library has no
// non-Gregorian calendars and the algorithm is about forty lines.
package jalali

import (
	"errors"
	"time"
)

// Date is a day of the Jalali calendar. Month is 1 (Farvardin) to 12 (Esfand).
type Date struct {
	Year, Month, Day int
}

// ErrRange: the year is outside the range the conversion is exact for.
var ErrRange = errors.New("jalali: year out of range (1 to 3177 AP)")

// breaks are the Jalali years at which the 33-year leap pattern restarts (Borkowski 1996, Table 1).
var breaks = [...]int{-61, 9, 38, 199, 426, 686, 756, 818, 1111, 1181, 1210, 1635, 2060, 2097, 2192, 2262,
	2324, 2394, 2456, 3178}

func div(a, b int) int { return a / b } // truncating, as in the reference algorithm
func mod(a, b int) int { return a - a/b*b }

// cal returns, for Jalali year jy, the Gregorian year gy in which it starts, the day of March of its first
// day (1 Farvardin), and leap: the number of years since the last leap year (0 means jy is a leap year).
func cal(jy int) (gy, march, leap int, err error) {
	if jy < 1 || jy >= breaks[len(breaks)-1] {
		return 0, 0, 0, ErrRange
	}
	gy = jy + 621
	leapJ := -14
	jp := breaks[0]
	jump := 0
	for i := 1; i < len(breaks); i++ {
		jm := breaks[i]
		jump = jm - jp
		if jy < jm {
			break
		}
		leapJ += div(jump, 33)*8 + div(mod(jump, 33), 4)
		jp = jm
	}
	n := jy - jp
	leapJ += div(n, 33)*8 + div(mod(n, 33)+3, 4)
	if mod(jump, 33) == 4 && jump-n == 4 {
		leapJ++
	}
	leapG := div(gy, 4) - div((div(gy, 100)+1)*3, 4) - 150
	march = 20 + leapJ - leapG
	if jump-n < 6 {
		n = n - jump + div(jump+4, 33)*33
	}
	leap = mod(mod(n+1, 33)-1, 4)
	if leap == -1 {
		leap = 4
	}
	return gy, march, leap, nil
}

// IsLeap reports whether Jalali year jy has 366 days (Esfand has 30 days).
func IsLeap(jy int) bool {
	_, _, leap, err := cal(jy)
	return err == nil && leap == 0
}

// MonthDays returns the number of days of month m of year jy: 31 for the first six months, 30 for the next
// five, and 29 or 30 (leap year) for Esfand.
func MonthDays(jy, m int) int {
	switch {
	case m >= 1 && m <= 6:
		return 31
	case m >= 7 && m <= 11:
		return 30
	case m == 12 && IsLeap(jy):
		return 30
	case m == 12:
		return 29
	}
	return 0
}

// civil is a date's Gregorian calendar day at midnight UTC, so differences are whole days.
func civil(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// FromTime returns the Jalali date of t's calendar day in t's location.
func FromTime(t time.Time) (Date, error) {
	y, m, d := t.Date()
	day := civil(y, m, d)
	jy := y - 621
	gy, march, _, err := cal(jy)
	if err != nil {
		return Date{}, err
	}
	k := int(day.Sub(civil(gy, time.March, march)).Hours() / 24)
	if k < 0 {
		// Before 1 Farvardin: the date is in the last months of the previous Jalali year.
		jy--
		gy, march, _, err = cal(jy)
		if err != nil {
			return Date{}, err
		}
		k = int(day.Sub(civil(gy, time.March, march)).Hours() / 24)
	}
	if k <= 185 {
		return Date{Year: jy, Month: 1 + k/31, Day: k%31 + 1}, nil
	}
	k -= 186
	return Date{Year: jy, Month: 7 + k/30, Day: k%30 + 1}, nil
}

// Time returns the Gregorian day of d at midnight in loc.
func (d Date) Time(loc *time.Location) (time.Time, error) {
	if d.Month < 1 || d.Month > 12 || d.Day < 1 || d.Day > MonthDays(d.Year, d.Month) {
		return time.Time{}, errors.New("jalali: no such day")
	}
	gy, march, _, err := cal(d.Year)
	if err != nil {
		return time.Time{}, err
	}
	k := (d.Month-1)*31 - max(d.Month-7, 0) + d.Day - 1
	t := civil(gy, time.March, march).AddDate(0, 0, k)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc), nil
}

// monthsFa and monthsEn are the month names: Farvardin, Ordibehesht, ...
var (
	monthsFa = [12]string{"فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور", "مهر", "آبان", "آذر", "دی", "بهمن", "اسفند"}
	monthsEn = [12]string{"Farvardin", "Ordibehesht", "Khordad", "Tir", "Mordad", "Shahrivar", "Mehr", "Aban", "Azar", "Dey", "Bahman", "Esfand"}
)

// MonthName returns the Persian name of month m (1-12), or its English transliteration when en is set.
func MonthName(m int, en bool) string {
	if m < 1 || m > 12 {
		return ""
	}
	if en {
		return monthsEn[m-1]
	}
	return monthsFa[m-1]
}
