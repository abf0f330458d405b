package tokens

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/internal/ids"
)

// MaxImportSize bounds the bytes an import reads (64 MiB).
const MaxImportSize = 64 << 20

// Facility registry columns (CSV header names and JSON field names).
var facilityColumns = []string{"siam_id", "name", "licence_number", "licence_status", "licence_from",
	"licence_until", "system_id", "system_status", "system_from", "system_until"}

// Physician registry columns.
var physicianColumns = []string{"national_code", "council_no", "name", "specialty", "status", "valid_from", "valid_until", "status_since"}

// facilityJSON and physicianJSON are the JSON forms; every field is a string so that CSV and JSON share one
// validation path.
type facilityJSON struct {
	SIAMID        string `json:"siam_id"`
	Name          string `json:"name"`
	LicenceNumber string `json:"licence_number"`
	LicenceStatus string `json:"licence_status"`
	LicenceFrom   string `json:"licence_from"`
	LicenceUntil  string `json:"licence_until"`
	SystemID      string `json:"system_id"`
	SystemStatus  string `json:"system_status"`
	SystemFrom    string `json:"system_from"`
	SystemUntil   string `json:"system_until"`
}

type physicianJSON struct {
	NationalCode string `json:"national_code"`
	CouncilNo    string `json:"council_no"`
	Name         string `json:"name"`
	Specialty    string `json:"specialty"`
	Status       string `json:"status"`
	ValidFrom    string `json:"valid_from"`
	ValidUntil   string `json:"valid_until"`
	StatusSince  string `json:"status_since,omitempty"`
}

func (j facilityJSON) row() map[string]string {
	return map[string]string{"siam_id": j.SIAMID, "name": j.Name, "licence_number": j.LicenceNumber,
		"licence_status": j.LicenceStatus, "licence_from": j.LicenceFrom, "licence_until": j.LicenceUntil,
		"system_id": j.SystemID, "system_status": j.SystemStatus, "system_from": j.SystemFrom, "system_until": j.SystemUntil}
}

func (j physicianJSON) row() map[string]string {
	return map[string]string{"national_code": j.NationalCode, "council_no": j.CouncilNo, "name": j.Name,
		"specialty": j.Specialty, "status": j.Status, "valid_from": j.ValidFrom, "valid_until": j.ValidUntil,
		"status_since": j.StatusSince}
}

// ParseFacilitiesCSV reads a facility registry extract: a header line naming columns from siam_id, name,
// licence_number, licence_status, licence_from, licence_until, system_id, system_status, system_from,
// system_until (all required except system_*, which come together or not at all), then one facility per line.
// Dates are RFC 3339 or YYYY-MM-DD (midnight UTC). Parsing is strict: an unknown or repeated column, a malformed
// identifier, a bad date or status, or a SIAM ID listed twice is an *ImportError naming the line, and nothing is
// returned.
func ParseFacilitiesCSV(r io.Reader) ([]Facility, error) {
	rows, err := readCSV(r, facilityColumns, []string{"system_id", "system_status", "system_from", "system_until"})
	if err != nil {
		return nil, err
	}
	return facilitiesFromRows(rows)
}

// ParsePhysiciansCSV reads a council registry extract: columns national_code, council_no, name, specialty,
// status, valid_from, valid_until, status_since (name, specialty and status_since optional; status_since is when
// the status took effect, see Physician.StatusSince). Strict like ParseFacilitiesCSV.
func ParsePhysiciansCSV(r io.Reader) ([]Physician, error) {
	rows, err := readCSV(r, physicianColumns, []string{"name", "specialty", "status_since"})
	if err != nil {
		return nil, err
	}
	return physiciansFromRows(rows)
}

// ParseFacilitiesJSON reads a JSON array of objects with the CSV column names as string fields. Unknown fields
// are errors; ImportError.Line is the line where the offending object starts.
func ParseFacilitiesJSON(r io.Reader) ([]Facility, error) {
	rows, err := jsonRows[facilityJSON](r)
	if err != nil {
		return nil, err
	}
	return facilitiesFromRows(rows)
}

// ParsePhysiciansJSON reads a JSON array of physician objects; strict like ParseFacilitiesJSON.
func ParsePhysiciansJSON(r io.Reader) ([]Physician, error) {
	rows, err := jsonRows[physicianJSON](r)
	if err != nil {
		return nil, err
	}
	return physiciansFromRows(rows)
}

// jsonRows reads a JSON array of J objects (strictly, see readJSONArray) as numbered rows.
func jsonRows[J interface{ row() map[string]string }](r io.Reader) ([]numberedRow, error) {
	var rows []numberedRow
	err := readJSONArray(r, func(dec *json.Decoder) (map[string]string, error) {
		var j J
		if err := dec.Decode(&j); err != nil {
			return nil, err
		}
		return j.row(), nil
	}, &rows)
	return rows, err
}

type numberedRow struct {
	line int
	cols map[string]string
}

func readCSV(r io.Reader, known, optional []string) ([]numberedRow, error) {
	cr := csv.NewReader(io.LimitReader(r, MaxImportSize))
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, &ImportError{Line: 1, Err: errors.New("empty file: header line missing")}
	}
	if err != nil {
		return nil, &ImportError{Line: csvLine(err, 1), Err: csvCause(err)}
	}
	isKnown := map[string]bool{}
	for _, k := range known {
		isKnown[k] = true
	}
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff")
		}
		if !isKnown[h] {
			return nil, &ImportError{Line: 1, Err: fmt.Errorf("unknown column %q", h)}
		}
		if seen[h] {
			return nil, &ImportError{Line: 1, Err: fmt.Errorf("column %q repeated", h)}
		}
		seen[h] = true
		header[i] = h
	}
	isOpt := map[string]bool{}
	for _, o := range optional {
		isOpt[o] = true
	}
	for _, k := range known {
		if !seen[k] && !isOpt[k] {
			return nil, &ImportError{Line: 1, Err: fmt.Errorf("required column %q missing", k)}
		}
	}
	var rows []numberedRow
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &ImportError{Line: csvLine(err, 1), Err: csvCause(err)}
		}
		line, _ := cr.FieldPos(0)
		m := make(map[string]string, len(header))
		for i, h := range header {
			m[h] = rec[i]
		}
		rows = append(rows, numberedRow{line: line, cols: m})
	}
	return rows, nil
}

func csvLine(err error, def int) int {
	var pe *csv.ParseError
	if errors.As(err, &pe) && pe.Line > 0 {
		return pe.Line
	}
	return def
}

func csvCause(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func readJSONArray(r io.Reader, decodeOne func(*json.Decoder) (map[string]string, error), out *[]numberedRow) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxImportSize+1))
	if err != nil {
		return fmt.Errorf("tokens: read import: %w", err)
	}
	if len(data) > MaxImportSize {
		return &ImportError{Line: 1, Err: errors.New("file too large")}
	}
	lineAt := func(off int64) int { return 1 + bytes.Count(data[:min(int(off), len(data))], []byte{'\n'}) }
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('[') {
		return &ImportError{Line: lineAt(dec.InputOffset()), Err: errors.New("expected a JSON array of records")}
	}
	for dec.More() {
		// The object starts after any whitespace and comma before it.
		start := dec.InputOffset()
		for start < int64(len(data)) && strings.ContainsRune(" \t\r\n,", rune(data[start])) {
			start++
		}
		m, err := decodeOne(dec)
		if err != nil {
			return &ImportError{Line: lineAt(start), Err: jsonCause(err)}
		}
		*out = append(*out, numberedRow{line: lineAt(start), cols: m})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return &ImportError{Line: lineAt(dec.InputOffset()), Err: errors.New("unterminated JSON array")}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &ImportError{Line: lineAt(dec.InputOffset()), Err: errors.New("data after the JSON array")}
	}
	return nil
}

func jsonCause(err error) error {
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field") {
		return errors.New(strings.TrimPrefix(msg, "json: "))
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q must be a string", te.Field)
	}
	return errors.New("malformed JSON record")
}

func facilitiesFromRows(rows []numberedRow) ([]Facility, error) {
	out := make([]Facility, 0, len(rows))
	seen := map[string]int{}
	for _, row := range rows {
		f, err := facilityFromRow(row.cols)
		if err != nil {
			return nil, &ImportError{Line: row.line, Err: err}
		}
		if first, dup := seen[f.SIAMID]; dup {
			return nil, &ImportError{Line: row.line, Err: fmt.Errorf("SIAM ID %s already listed on line %d", f.SIAMID, first)}
		}
		seen[f.SIAMID] = row.line
		out = append(out, f)
	}
	return out, nil
}

func facilityFromRow(c map[string]string) (Facility, error) {
	var f Facility
	var err error
	if f.SIAMID, err = ids.SIAMID(c["siam_id"]); err != nil {
		return f, err
	}
	f.Name = strings.TrimSpace(c["name"])
	if f.Name == "" {
		return f, errors.New("name is empty")
	}
	if f.LicenceNumber, err = ids.LicenceNumber(c["licence_number"]); err != nil {
		return f, err
	}
	if f.LicenceStatus, err = parseStatus("licence_status", c["licence_status"]); err != nil {
		return f, err
	}
	if f.LicenceFrom, f.LicenceUntil, err = parseValidity("licence", c["licence_from"], c["licence_until"]); err != nil {
		return f, err
	}
	sys := strings.TrimSpace(c["system_id"])
	if sys == "" {
		if c["system_status"] != "" || c["system_from"] != "" || c["system_until"] != "" {
			return f, errors.New("system_status and system validity given without system_id")
		}
		return f, nil
	}
	if f.SystemID, err = ids.LicenceNumber(sys); err != nil {
		return f, fmt.Errorf("system_id: %w", err)
	}
	if f.SystemStatus, err = parseStatus("system_status", c["system_status"]); err != nil {
		return f, err
	}
	if f.SystemFrom, f.SystemUntil, err = parseValidity("system", c["system_from"], c["system_until"]); err != nil {
		return f, err
	}
	return f, nil
}

func physiciansFromRows(rows []numberedRow) ([]Physician, error) {
	out := make([]Physician, 0, len(rows))
	seen := map[string]int{}
	for _, row := range rows {
		p, err := physicianFromRow(row.cols)
		if err != nil {
			return nil, &ImportError{Line: row.line, Err: err}
		}
		if first, dup := seen[p.NationalCode]; dup {
			return nil, &ImportError{Line: row.line, Err: fmt.Errorf("national code already listed on line %d", first)}
		}
		seen[p.NationalCode] = row.line
		out = append(out, p)
	}
	return out, nil
}

func physicianFromRow(c map[string]string) (Physician, error) {
	var p Physician
	var err error
	if p.NationalCode, err = ids.NationalCode(c["national_code"]); err != nil {
		return p, err
	}
	if p.CouncilNo, err = ids.CouncilNumber(c["council_no"]); err != nil {
		return p, err
	}
	p.Name = strings.TrimSpace(c["name"])
	p.Specialty = strings.TrimSpace(c["specialty"])
	if p.Status, err = parseStatus("status", c["status"]); err != nil {
		return p, err
	}
	if p.ValidFrom, p.ValidUntil, err = parseValidity("registration", c["valid_from"], c["valid_until"]); err != nil {
		return p, err
	}
	if since := strings.TrimSpace(c["status_since"]); since != "" {
		if p.StatusSince, err = parseDate(since); err != nil {
			return p, fmt.Errorf("status_since: %w", err)
		}
	}
	return p, nil
}

func parseStatus(field, s string) (Status, error) {
	st := Status(strings.ToLower(strings.TrimSpace(s)))
	if !validStatus(st) {
		return "", fmt.Errorf("%s must be active, suspended, revoked or expired", field)
	}
	return st, nil
}

func parseValidity(what, from, until string) (time.Time, time.Time, error) {
	f, err := parseDate(from)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("%s validity start: %w", what, err)
	}
	u, err := parseDate(until)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("%s validity end: %w", what, err)
	}
	if !f.Before(u) {
		return time.Time{}, time.Time{}, fmt.Errorf("%s validity ends before it starts", what)
	}
	return f, u, nil
}

// parseDate accepts RFC 3339 (any offset, stored as UTC) or YYYY-MM-DD (midnight UTC), with Persian or
// Arabic-Indic digits normalised first.
func parseDate(s string) (time.Time, error) {
	s = ids.NormalizeDigits(s)
	if s == "" {
		return time.Time{}, errors.New("date missing")
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		t, err = time.Parse(time.RFC3339, s)
	}
	if err != nil {
		return time.Time{}, errors.New("date must be YYYY-MM-DD or RFC 3339")
	}
	t = t.UTC().Truncate(time.Second)
	if t.Year() < 1900 || t.Year() > 9999 {
		return time.Time{}, errors.New("date out of range (1900-9999)")
	}
	return t, nil
}
