package api

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"

	"github.com/mohr-hix/mohr/internal/ids"
)

// decodeJSON decodes exactly one JSON value from r's body into v, strictly: unknown fields, trailing data and
// wrong types are errors. The body is already limited by enforce; exceeding the limit surfaces as
// *http.MaxBytesError (413).
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return malformed("trailing data after the JSON body")
	}
	return nil
}

func jsonError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	if errors.Is(err, io.EOF) {
		return malformed("empty body")
	}
	return malformed("body is not valid JSON for this operation (syntax, type or unknown field)")
}

// readAll reads a limited body (binary protocols, CMS).
func readAll(r *http.Request) ([]byte, error) {
	var b []byte
	var err error
	if n := r.ContentLength; n > 0 && n <= 1<<20 {
		// Sized from Content-Length (bounded: the header is the client's word; MaxBytesReader bounds what is
		// read), so a prescription is read without regrowing the buffer.
		buf := bytes.NewBuffer(make([]byte, 0, n+bytes.MinRead))
		_, err = buf.ReadFrom(r.Body)
		b = buf.Bytes()
	} else {
		b, err = io.ReadAll(r.Body)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, malformed("could not read the body")
	}
	if len(b) == 0 {
		return nil, malformed("empty body")
	}
	return b, nil
}

var (
	reSerial   = regexp.MustCompile(`^[0-9a-f]{1,40}$`)
	reProfile  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	reKeyID    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
	reTokenID  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	reCode     = regexp.MustCompile(`^[A-Za-z0-9_-]{8,128}$`)
	reDNSLabel = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// parseCSR parses and checks a DER PKCS#10 request.
func parseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, invalid("csr is required")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, invalid("csr is not a DER PKCS#10 request")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, invalid("csr signature does not verify")
	}
	return csr, nil
}

func (sub *SubjectIDs) validate() error {
	if len(sub.CommonName) > 64 {
		return invalid("subject.commonName is longer than 64 characters")
	}
	if sub.SIAMID != "" {
		v, err := ids.SIAMID(sub.SIAMID)
		if err != nil {
			return err
		}
		sub.SIAMID = v
	}
	if sub.LicenceNumber != "" {
		v, err := ids.LicenceNumber(sub.LicenceNumber)
		if err != nil {
			return err
		}
		sub.LicenceNumber = v
	}
	if sub.NationalCode != "" {
		v, err := ids.NationalCode(sub.NationalCode)
		if err != nil {
			return err
		}
		sub.NationalCode = v
	}
	if sub.CouncilNumber != "" {
		v, err := ids.CouncilNumber(sub.CouncilNumber)
		if err != nil {
			return err
		}
		sub.CouncilNumber = v
	}
	switch Role(sub.Role) {
	case "", RoleOperator, RoleRAOfficer, RoleAuditor, RolePharmacy, RoleInsurer:
	default:
		return invalid("subject.role must be operator, ra-officer, auditor, pharmacy or insurer")
	}
	if len(sub.DNSNames) > 16 {
		return invalid("at most 16 dnsNames")
	}
	for _, d := range sub.DNSNames {
		if len(d) > 253 || !reDNSLabel.MatchString(d) {
			return invalid("dnsNames holds a name that is not a lower-case host name")
		}
	}
	return nil
}

// queryInt reads a required non-negative integer query parameter.
func queryInt(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, malformed("query parameter " + name + " is required")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, malformed("query parameter " + name + " must be a non-negative integer")
	}
	return n, nil
}
