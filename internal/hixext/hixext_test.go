package hixext

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	fe, err := Facility{SIAMID: "SIAM-1001", LicenceNumber: "LIC/1402/7", SystemCertID: "SYS-9"}.Extension()
	if err != nil {
		t.Fatal(err)
	}
	ae, err := Admission{Authority: "IRIMC", Profession: "Physician", RegistrationNumber: "123456"}.Extension()
	if err != nil {
		t.Fatal(err)
	}
	c := &x509.Certificate{Extensions: []pkixExt{fe, ae}}
	f, err := ParseFacility(c)
	if err != nil || f.SIAMID != "SIAM-1001" || f.LicenceNumber != "LIC/1402/7" || f.SystemCertID != "SYS-9" {
		t.Fatalf("facility = %+v, %v", f, err)
	}
	a, err := ParseAdmission(c)
	if err != nil || a.RegistrationNumber != "123456" || a.Profession != "Physician" || a.Authority != "IRIMC" {
		t.Fatalf("admission = %+v, %v", a, err)
	}
	if _, err := ParseFacility(&x509.Certificate{}); !errors.Is(err, ErrNotPresent) {
		t.Fatalf("want ErrNotPresent, got %v", err)
	}
	bad := &x509.Certificate{Extensions: []pkixExt{{Id: OIDAdmission, Value: []byte{0x30, 0x01}}}}
	if _, err := ParseAdmission(bad); err == nil {
		t.Fatal("malformed admission accepted")
	}
}

type pkixExt = pkix.Extension
