package jalali

import (
	"testing"
	"time"
)

// Known dates: Nowruz (1 Farvardin) as announced by the Iranian calendar authority, and historical dates.
var known = []struct {
	g time.Time
	j Date
}{
	{civil(1979, time.February, 11), Date{1357, 11, 22}}, // 22 Bahman 1357, the revolution's anniversary
	{civil(1975, time.March, 21), Date{1354, 1, 1}},
	{civil(2020, time.March, 20), Date{1399, 1, 1}},
	{civil(2021, time.March, 20), Date{1399, 12, 30}}, // 1399 is a leap year
	{civil(2021, time.March, 21), Date{1400, 1, 1}},
	{civil(2023, time.March, 21), Date{1402, 1, 1}},
	{civil(2024, time.March, 19), Date{1402, 12, 29}},
	{civil(2024, time.March, 20), Date{1403, 1, 1}},
	{civil(2025, time.March, 20), Date{1403, 12, 30}}, // 1403 is a leap year
	{civil(2025, time.March, 21), Date{1404, 1, 1}},
	{civil(2026, time.March, 21), Date{1405, 1, 1}},
	{civil(2026, time.December, 3), Date{1405, 9, 12}},
	{civil(2029, time.March, 20), Date{1408, 1, 1}},
	{civil(2000, time.January, 1), Date{1378, 10, 11}},
	{civil(1900, time.March, 21), Date{1279, 1, 1}},
	{civil(2024, time.September, 22), Date{1403, 7, 1}}, // Mehr begins after six months of 31 days
	{civil(2024, time.September, 21), Date{1403, 6, 31}},
}

func TestKnownDates(t *testing.T) {
	for _, k := range known {
		got, err := FromTime(k.g)
		if err != nil || got != k.j {
			t.Errorf("FromTime(%s) = %v, %v; want %v", k.g.Format(time.DateOnly), got, err, k.j)
		}
		back, err := k.j.Time(time.UTC)
		if err != nil || !back.Equal(k.g) {
			t.Errorf("%v.Time() = %s, %v; want %s", k.j, back.Format(time.DateOnly), err, k.g.Format(time.DateOnly))
		}
	}
}

// TestEveryDay walks every day from 1800 to 2200: each day is the next Jalali day, months have their
// lengths, leap years come in the 33-year pattern (8 per 33 years), and the conversion round-trips.
func TestEveryDay(t *testing.T) {
	start := civil(1800, time.January, 1)
	prev, err := FromTime(start)
	if err != nil {
		t.Fatal(err)
	}
	leaps := map[int]bool{}
	for d := start.AddDate(0, 0, 1); d.Year() < 2200; d = d.AddDate(0, 0, 1) {
		j, err := FromTime(d)
		if err != nil {
			t.Fatal(err)
		}
		want := prev
		want.Day++
		if want.Day > MonthDays(prev.Year, prev.Month) {
			want.Day, want.Month = 1, want.Month+1
			if want.Month > 12 {
				want.Month, want.Year = 1, want.Year+1
			}
		}
		if j != want {
			t.Fatalf("%s: %v after %v, want %v", d.Format(time.DateOnly), j, prev, want)
		}
		if j.Month == 12 && j.Day == 30 {
			leaps[j.Year] = true
		}
		if back, err := j.Time(time.UTC); err != nil || !back.Equal(d) {
			t.Fatalf("round trip %s -> %v -> %s, %v", d.Format(time.DateOnly), j, back, err)
		}
		prev = j
	}
	// 33-year cycles hold 8 leap years.
	for y := 1300; y+33 <= 1500; y += 33 {
		n := 0
		for k := y; k < y+33; k++ {
			if leaps[k] {
				n++
			}
		}
		if n != 8 {
			t.Errorf("years %d-%d: %d leap years, want 8", y, y+32, n)
		}
	}
	for _, y := range []int{1375, 1379, 1383, 1387, 1391, 1395, 1399, 1403, 1408} {
		if !leaps[y] || !IsLeap(y) {
			t.Errorf("%d should be a leap year", y)
		}
	}
	for _, y := range []int{1400, 1401, 1402, 1404, 1405, 1406, 1407} {
		if leaps[y] || IsLeap(y) {
			t.Errorf("%d should not be a leap year", y)
		}
	}
}

func TestRefused(t *testing.T) {
	for _, d := range []Date{{1404, 12, 30}, {1403, 13, 1}, {1403, 0, 1}, {1403, 7, 31}, {0, 1, 1}, {3178, 1, 1}} {
		if _, err := d.Time(time.UTC); err == nil {
			t.Errorf("%v accepted", d)
		}
	}
	if _, err := FromTime(civil(3900, 1, 1)); err == nil {
		t.Error("year 3900 accepted")
	}
}

// TestLocation: the calendar day is taken in t's own location (Tehran is UTC+3:30).
func TestLocation(t *testing.T) {
	teh := time.FixedZone("IRST", 3*3600+1800)
	u := time.Date(2024, time.March, 19, 21, 0, 0, 0, time.UTC) // 00:30 on 20 March in Tehran
	if j, _ := FromTime(u); j != (Date{1402, 12, 29}) {
		t.Errorf("UTC: %v", j)
	}
	if j, _ := FromTime(u.In(teh)); j != (Date{1403, 1, 1}) {
		t.Errorf("Tehran: %v", j)
	}
}
