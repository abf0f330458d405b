package testpki

import (
	"crypto/x509"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/internal/hixext"
)

func TestProfiles(t *testing.T) {
	p, err := New(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	tests := []struct {
		name    string
		profile Profile
		opts    LeafOptions
		check   func(*x509.Certificate) bool
	}{
		{"physician", PhysicianSigning, LeafOptions{CommonName: "Dr. A", NationalCode: "0499370899", CouncilNumber: "12345"}, func(c *x509.Certificate) bool {
			adm, err := hixext.ParseAdmission(c)
			return c.KeyUsage == x509.KeyUsageContentCommitment && c.Subject.SerialNumber == "IDCIR-0499370899" && err == nil && adm.RegistrationNumber == "12345"
		}},
		{"seal", OrganisationSeal, LeafOptions{CommonName: "Pharmacy"}, func(c *x509.Certificate) bool {
			return c.KeyUsage == x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment
		}},
		{"tsa", TSA, LeafOptions{CommonName: "TSA"}, func(c *x509.Certificate) bool {
			for _, e := range c.Extensions {
				if e.Id.Equal(oidExtKeyUsage) {
					return e.Critical && len(c.ExtKeyUsage) == 1 && c.ExtKeyUsage[0] == x509.ExtKeyUsageTimeStamping
				}
			}
			return false
		}},
		{"facility", FacilityAdapter, LeafOptions{CommonName: "Clinic", SIAMID: "SIAM-0001", Licence: "L-1"}, func(c *x509.Certificate) bool {
			f, err := hixext.ParseFacility(c)
			return err == nil && f.SIAMID == "SIAM-0001" && c.ExtKeyUsage[0] == x509.ExtKeyUsageClientAuth
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := p.Issue(tc.profile, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			inter := x509.NewCertPool()
			inter.AddCert(p.Intermediate)
			if _, err := l.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: p.Clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Fatal(err)
			}
			if !tc.check(l.Cert) {
				t.Fatal("profile not as documented")
			}
		})
	}
}

func TestOCSPAndRevocation(t *testing.T) {
	p, err := New(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	l, _ := p.Issue(OrganisationSeal, LeafOptions{CommonName: "X"})
	status := func() int {
		der, err := p.OCSP(l.Cert)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ocsp.ParseResponseForCert(der, l.Cert, p.Intermediate)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	if status() != ocsp.Good {
		t.Fatal("want good")
	}
	p.Revoke(l.Cert.SerialNumber, p.Clock.Now().Add(time.Hour), 1)
	if status() != ocsp.Good {
		t.Fatal("revoked in the future must still be good now")
	}
	p.Clock.Advance(2 * time.Hour)
	if status() != ocsp.Revoked {
		t.Fatal("want revoked")
	}
}
