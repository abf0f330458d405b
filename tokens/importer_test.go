package tokens

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/ids"
)

const goodFacilitiesCSV = `siam_id,name,licence_number,licence_status,licence_from,licence_until,system_id,system_status,system_from,system_until
SIAM-1001,Imam Hospital,LIC-77/1,active,2025-01-01,2027-01-01,SYS-9,active,2025-01-01,2026-12-31
SIAM-1002,"Pharmacy, Razi",LIC-78,suspended,2025-01-01T00:00:00Z,2027-01-01T00:00:00+03:30,,,,
`

func TestParseFacilitiesCSV(t *testing.T) {
	fs, err := ParseFacilitiesCSV(strings.NewReader(goodFacilitiesCSV))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 || fs[0].SIAMID != "SIAM-1001" || fs[1].Name != "Pharmacy, Razi" || fs[1].SystemID != "" {
		t.Fatalf("got %+v", fs)
	}
	if want := time.Date(2026, 12, 31, 20, 30, 0, 0, time.UTC); !fs[1].LicenceUntil.Equal(want) {
		t.Fatalf("licence_until %v, want %v", fs[1].LicenceUntil, want)
	}
	if fs[0].LicenceStatus != StatusActive || fs[1].LicenceStatus != StatusSuspended {
		t.Fatalf("statuses %q %q", fs[0].LicenceStatus, fs[1].LicenceStatus)
	}
}

func TestParseFacilitiesCSVErrors(t *testing.T) {
	header := "siam_id,name,licence_number,licence_status,licence_from,licence_until\n"
	good := "SIAM-1001,A,L1,active,2025-01-01,2026-01-01\n"
	tests := []struct {
		name string
		in   string
		line int
		is   error
	}{
		{"empty", "", 1, nil},
		{"unknown column", "siam_id,name,colour\n", 1, nil},
		{"missing column", "siam_id,name\n", 1, nil},
		{"repeated column", "siam_id,siam_id,name,licence_number,licence_status,licence_from,licence_until\n", 1, nil},
		{"bad SIAM", header + good + "S!,A,L1,active,2025-01-01,2026-01-01\n", 3, ids.ErrSIAMID},
		{"bad licence", header + "SIAM-1001,A,L 1,active,2025-01-01,2026-01-01\n", 2, ids.ErrLicenceNumber},
		{"bad status", header + "SIAM-1001,A,L1,alive,2025-01-01,2026-01-01\n", 2, nil},
		{"bad date", header + "SIAM-1001,A,L1,active,01/01/2025,2026-01-01\n", 2, nil},
		{"reversed validity", header + "SIAM-1001,A,L1,active,2026-01-01,2025-01-01\n", 2, nil},
		{"duplicate", header + good + good, 3, nil},
		{"short row", header + good + "SIAM-1002,A\n", 3, nil},
		{"empty name", header + "SIAM-1001,,L1,active,2025-01-01,2026-01-01\n", 2, nil},
		{"system status without id", "siam_id,name,licence_number,licence_status,licence_from,licence_until,system_status\nSIAM-1001,A,L1,active,2025-01-01,2026-01-01,active\n", 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, err := ParseFacilitiesCSV(strings.NewReader(tt.in))
			var ie *ImportError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v (%T), want *ImportError", err, err)
			}
			if fs != nil {
				t.Errorf("partial result returned: %v", fs)
			}
			if ie.Line != tt.line {
				t.Errorf("line %d, want %d (%v)", ie.Line, tt.line, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err %v is not %v", err, tt.is)
			}
		})
	}
}

func TestParsePhysicians(t *testing.T) {
	csvIn := "national_code,council_no,specialty,status,valid_from,valid_until\n" +
		"۰۴۹۹۳۷۰۸۹۹,12345,Cardiology,active,2025-01-01,2027-01-01\n"
	ps, err := ParsePhysiciansCSV(strings.NewReader(csvIn))
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].NationalCode != "0499370899" || ps[0].CouncilNo != "12345" {
		t.Fatalf("got %+v", ps[0])
	}
	bad := "national_code,council_no,status,valid_from,valid_until\n0499370898,1,active,2025-01-01,2027-01-01\n"
	if _, err := ParsePhysiciansCSV(strings.NewReader(bad)); !errors.Is(err, ids.ErrNationalCodeChecksum) {
		t.Fatalf("bad checksum: %v", err)
	}
	js := `[
  {"national_code": "0499370899", "council_no": "12345", "status": "active",
   "valid_from": "2025-01-01", "valid_until": "2027-01-01"},
  {"national_code": "0499370899", "council_no": "1", "status": "active",
   "valid_from": "2025-01-01", "valid_until": "2027-01-01", "colour": "red"}
]`
	_, err = ParsePhysiciansJSON(strings.NewReader(js))
	var ie *ImportError
	if !errors.As(err, &ie) || ie.Line != 4 || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestParseFacilitiesJSON(t *testing.T) {
	js := `[{"siam_id":"SIAM-1001","name":"A","licence_number":"L1","licence_status":"active",
"licence_from":"2025-01-01","licence_until":"2026-01-01"},
{"siam_id":"SIAM-1002","name":"B","licence_number":"L2","licence_status":"active",
"licence_from":"2025-01-01","licence_until":"2026-01-01","system_id":"S","system_status":"revoked","system_from":"2025-01-01","system_until":"2026-01-01"}]`
	fs, err := ParseFacilitiesJSON(strings.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 || fs[1].SystemStatus != StatusRevoked {
		t.Fatalf("%+v", fs)
	}
	for name, in := range map[string]string{
		"not array":  `{"siam_id":"x"}`,
		"number":     `[{"siam_id":1}]`,
		"trailing":   `[] []`,
		"unknown":    `[{"siam_id":"SIAM-1","x":"y"}]`,
		"bad siam":   `[{"siam_id":"S","name":"A","licence_number":"L1","licence_status":"active","licence_from":"2025-01-01","licence_until":"2026-01-01"}]`,
		"unfinished": `[{"siam_id":"SIAM-1001"`,
	} {
		if _, err := ParseFacilitiesJSON(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// writeFacilitiesCSV is the inverse of ParseFacilitiesCSV, for round-trip properties.
func writeFacilitiesCSV(fs []Facility) string {
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write(facilityColumns)
	d := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format(time.RFC3339)
	}
	for _, f := range fs {
		w.Write([]string{f.SIAMID, f.Name, f.LicenceNumber, string(f.LicenceStatus), d(f.LicenceFrom), d(f.LicenceUntil),
			f.SystemID, string(f.SystemStatus), d(f.SystemFrom), d(f.SystemUntil)})
	}
	w.Flush()
	return b.String()
}

func facilitiesJSON(fs []Facility) string {
	d := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format(time.RFC3339)
	}
	var out []facilityJSON
	for _, f := range fs {
		out = append(out, facilityJSON{f.SIAMID, f.Name, f.LicenceNumber, string(f.LicenceStatus), d(f.LicenceFrom),
			d(f.LicenceUntil), f.SystemID, string(f.SystemStatus), d(f.SystemFrom), d(f.SystemUntil)})
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// FuzzParseFacilitiesCSV checks that the parser never panics and that whatever it accepts survives a round trip
// through CSV and JSON unchanged (canonical form).
func FuzzParseFacilitiesCSV(f *testing.F) {
	f.Add(goodFacilitiesCSV)
	f.Fuzz(func(t *testing.T, in string) {
		fs, err := ParseFacilitiesCSV(strings.NewReader(in))
		if err != nil {
			var ie *ImportError
			if !errors.As(err, &ie) || ie.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		again, err := ParseFacilitiesCSV(strings.NewReader(writeFacilitiesCSV(fs)))
		if err != nil {
			t.Fatalf("re-parse CSV: %v", err)
		}
		if !reflect.DeepEqual(fs, again) && !(len(fs) == 0 && len(again) == 0) {
			t.Fatalf("CSV round trip changed records:\n%+v\n%+v", fs, again)
		}
		fromJSON, err := ParseFacilitiesJSON(strings.NewReader(facilitiesJSON(fs)))
		if err != nil && len(fs) > 0 {
			t.Fatalf("parse JSON form: %v", err)
		}
		if len(fs) > 0 && !reflect.DeepEqual(fs, fromJSON) {
			t.Fatalf("JSON form differs:\n%+v\n%+v", fs, fromJSON)
		}
	})
}

// FuzzParseFacilitiesJSON checks the JSON parser the same way.
func FuzzParseFacilitiesJSON(f *testing.F) {
	f.Add(`[{"siam_id":"SIAM-1001","name":"A","licence_number":"L1","licence_status":"active","licence_from":"2025-01-01","licence_until":"2026-01-01"}]`)
	f.Fuzz(func(t *testing.T, in string) {
		fs, err := ParseFacilitiesJSON(strings.NewReader(in))
		if err != nil {
			var ie *ImportError
			if errors.As(err, &ie) && ie.Line < 1 {
				t.Fatalf("error line %d: %v", ie.Line, err)
			}
			return
		}
		again, err := ParseFacilitiesJSON(strings.NewReader(facilitiesJSON(fs)))
		if len(fs) == 0 {
			return
		}
		if err != nil || !reflect.DeepEqual(fs, again) {
			t.Fatalf("JSON round trip: %v\n%+v\n%+v", err, fs, again)
		}
	})
}

// FuzzParsePhysiciansCSV checks the physician parser: no panic, accepted identifiers are canonical.
func FuzzParsePhysiciansCSV(f *testing.F) {
	f.Add("national_code,council_no,specialty,status,valid_from,valid_until\n0499370899,12345,Cardiology,active,2025-01-01,2027-01-01\n")
	f.Fuzz(func(t *testing.T, in string) {
		ps, err := ParsePhysiciansCSV(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, p := range ps {
			if nc, err := ids.NationalCode(p.NationalCode); err != nil || nc != p.NationalCode {
				t.Fatalf("accepted non-canonical national code %q", p.NationalCode)
			}
			if !p.ValidFrom.Before(p.ValidUntil) {
				t.Fatalf("accepted reversed validity")
			}
		}
	})
}

// FuzzParsePhysiciansJSON checks the JSON physician parser.
func FuzzParsePhysiciansJSON(f *testing.F) {
	f.Add(`[{"national_code":"0499370899","council_no":"12345","status":"active","valid_from":"2025-01-01","valid_until":"2027-01-01"}]`)
	f.Fuzz(func(t *testing.T, in string) {
		ps, err := ParsePhysiciansJSON(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, p := range ps {
			if nc, err := ids.NationalCode(p.NationalCode); err != nil || nc != p.NationalCode {
				t.Fatalf("accepted non-canonical national code %q", p.NationalCode)
			}
		}
	})
}
