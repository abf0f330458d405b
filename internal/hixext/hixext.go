// Package hixext defines the object identifiers and certificate extensions of the HIX profiles, shared by the
// issuer (package ca) and the verifiers (packages signing, adapter): the facility extension that binds a SIAM ID
// and licence number into an adapter certificate, and the Common PKI AdmissionSyntax that carries a
// physician's medical-council number and profession.
//
// Mohr's own identifiers live under Arc. 2.999 is the ITU-T X.660 "example" arc: it is a placeholder that must be
// replaced by the arc the Ministry of Health is assigned before production (policy OIDs are configuration; the
// extension OIDs below change with a release).
package hixext

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
)

// Arc is the root of Mohr's object identifiers (placeholder; see the package comment).
var Arc = asn1.ObjectIdentifier{2, 999, 1742}

var (
	// OIDFacility identifies the facility extension (FacilityInfo) in adapter certificates.
	OIDFacility = asn1.ObjectIdentifier{2, 999, 1742, 1, 1}
	// OIDAdmission is the Common PKI AdmissionSyntax extension (1.3.36.8.3.3), as German health
	// professional cards use it for the registration number and profession.
	OIDAdmission = asn1.ObjectIdentifier{1, 3, 36, 8, 3, 3}
	// OIDSignaturePolicyRx identifies the HIX-Rx-CAdES signature policy (docs/signature-policy.md).
	OIDSignaturePolicyRx = asn1.ObjectIdentifier{2, 999, 1742, 3, 1}
	// OIDPolicyBase is where the development certificate policy OIDs of each profile live (arc.2.N).
	OIDPolicyBase = asn1.ObjectIdentifier{2, 999, 1742, 2}
	// OIDRoleBase is where operator-role identifiers live (arc.4.N), used in operator certificates.
	OIDRoleBase = asn1.ObjectIdentifier{2, 999, 1742, 4}
	// OIDPolicyRemoteSigning is the certificate policy a physician-signing certificate asserts, beside the
	// physician-signing policy, when its key is held in the signing centre's HSM and activated by the
	// physician alone (EN 419 241-1 SCAL2; docs/remote-signing.md), so that every verifier can tell a remote
	// signature from a card signature.
	OIDPolicyRemoteSigning = asn1.ObjectIdentifier{2, 999, 1742, 6, 1}
)

// ErrNotPresent is returned when a certificate lacks the extension asked for.
var ErrNotPresent = errors.New("hixext: extension not present")

// Facility is the content of the facility extension:
//
//	FacilityInfo ::= SEQUENCE {
//	    siamID          UTF8String,
//	    licenceNumber   UTF8String,
//	    systemCertID    [0] IMPLICIT UTF8String OPTIONAL }
type Facility struct {
	SIAMID        string `asn1:"utf8"`
	LicenceNumber string `asn1:"utf8"`
	SystemCertID  string `asn1:"utf8,optional,tag:0"`
}

// Extension returns f as a non-critical certificate extension.
func (f Facility) Extension() (pkix.Extension, error) {
	if f.SIAMID == "" || f.LicenceNumber == "" {
		return pkix.Extension{}, errors.New("hixext: facility extension needs a SIAM ID and a licence number")
	}
	der, err := asn1.Marshal(f)
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("hixext: marshal facility: %w", err)
	}
	return pkix.Extension{Id: OIDFacility, Value: der}, nil
}

// ParseFacility reads the facility extension of cert.
func ParseFacility(cert *x509.Certificate) (Facility, error) {
	for _, e := range cert.Extensions {
		if e.Id.Equal(OIDFacility) {
			var f Facility
			rest, err := asn1.Unmarshal(e.Value, &f)
			if err != nil || len(rest) != 0 {
				return Facility{}, fmt.Errorf("hixext: malformed facility extension")
			}
			return f, nil
		}
	}
	return Facility{}, ErrNotPresent
}

// Admission is the part of Common PKI's AdmissionSyntax (1.3.36.8.3.3) that Mohr uses: one admission with one
// profession. Profession is a free text such as "Physician" or a specialty; RegistrationNumber is the
// medical-council number.
type Admission struct {
	Authority          string // the naming authority's name, e.g. "Iran Medical Council"
	Profession         string
	RegistrationNumber string
}

// The ASN.1 of Common PKI 2.0 part 1, AdmissionSyntax, reduced to what Mohr writes:
//
//	AdmissionSyntax ::= SEQUENCE { admissionAuthority GeneralName OPTIONAL, contentsOfAdmissions SEQUENCE OF Admissions }
//	Admissions ::= SEQUENCE { admissionAuthority [0] EXPLICIT GeneralName OPTIONAL,
//	    namingAuthority [1] EXPLICIT NamingAuthority OPTIONAL, professionInfos SEQUENCE OF ProfessionInfo }
//	NamingAuthority ::= SEQUENCE { namingAuthorityId OID OPTIONAL, namingAuthorityUrl IA5String OPTIONAL,
//	    namingAuthorityText DirectoryString OPTIONAL }
//	ProfessionInfo ::= SEQUENCE { namingAuthority [0] EXPLICIT NamingAuthority OPTIONAL,
//	    professionItems SEQUENCE OF DirectoryString, professionOIDs SEQUENCE OF OID OPTIONAL,
//	    registrationNumber PrintableString OPTIONAL, addProfessionInfo OCTET STRING OPTIONAL }
type admissionSyntax struct {
	Contents []admissions
}

type admissions struct {
	NamingAuthority namingAuthority `asn1:"optional,explicit,tag:1"`
	ProfessionInfos []professionInfo
}

type namingAuthority struct {
	Text string `asn1:"utf8,optional"`
}

type professionInfo struct {
	ProfessionItems    []string
	RegistrationNumber string `asn1:"printable,optional"`
}

// Extension returns a as a non-critical AdmissionSyntax extension.
func (a Admission) Extension() (pkix.Extension, error) {
	if a.RegistrationNumber == "" || a.Profession == "" {
		return pkix.Extension{}, errors.New("hixext: admission needs a registration number and a profession")
	}
	v := admissionSyntax{Contents: []admissions{{
		NamingAuthority: namingAuthority{Text: a.Authority},
		ProfessionInfos: []professionInfo{{ProfessionItems: []string{a.Profession}, RegistrationNumber: a.RegistrationNumber}},
	}}}
	der, err := asn1.Marshal(v)
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("hixext: marshal admission: %w", err)
	}
	return pkix.Extension{Id: OIDAdmission, Value: der}, nil
}

// ParseAdmission reads the first profession of the first admission in cert's AdmissionSyntax extension.
func ParseAdmission(cert *x509.Certificate) (Admission, error) {
	for _, e := range cert.Extensions {
		if !e.Id.Equal(OIDAdmission) {
			continue
		}
		var v admissionSyntax
		rest, err := asn1.Unmarshal(e.Value, &v)
		if err != nil || len(rest) != 0 || len(v.Contents) == 0 || len(v.Contents[0].ProfessionInfos) == 0 ||
			len(v.Contents[0].ProfessionInfos[0].ProfessionItems) == 0 {
			return Admission{}, errors.New("hixext: malformed admission extension")
		}
		p := v.Contents[0].ProfessionInfos[0]
		return Admission{Authority: v.Contents[0].NamingAuthority.Text, Profession: p.ProfessionItems[0], RegistrationNumber: p.RegistrationNumber}, nil
	}
	return Admission{}, ErrNotPresent
}

// NationalCodePrefix is the ETSI EN 319 412-1 §5.1.3 semantics identifier for national identity numbers,
// with Iran's ISO 3166 code: subject serialNumber "IDCIR-<national code>".
const NationalCodePrefix = "IDCIR-"

// NationalCodeFromSubject returns the national code in cert's subject serialNumber, or ErrNotPresent.
// It does not validate the checksum; callers use internal/ids for that.
func NationalCodeFromSubject(cert *x509.Certificate) (string, error) {
	s := cert.Subject.SerialNumber
	if !strings.HasPrefix(s, NationalCodePrefix) {
		return "", ErrNotPresent
	}
	return strings.TrimPrefix(s, NationalCodePrefix), nil
}

// Role OIDs under OIDRoleBase. An operator or organisation-seal certificate carries its role as a certificate
// policy OID (RFC 5280 §4.2.1.4); the API maps it to an access role.
var (
	OIDRoleOperator  = asn1.ObjectIdentifier{2, 999, 1742, 4, 1}
	OIDRoleRAOfficer = asn1.ObjectIdentifier{2, 999, 1742, 4, 2}
	OIDRoleAuditor   = asn1.ObjectIdentifier{2, 999, 1742, 4, 3}
	OIDRolePharmacy  = asn1.ObjectIdentifier{2, 999, 1742, 4, 4}
	OIDRoleInsurer   = asn1.ObjectIdentifier{2, 999, 1742, 4, 5}
)

// RoleOIDs maps role names to their OIDs.
var RoleOIDs = map[string]asn1.ObjectIdentifier{
	"operator":   OIDRoleOperator,
	"ra-officer": OIDRoleRAOfficer,
	"auditor":    OIDRoleAuditor,
	"pharmacy":   OIDRolePharmacy,
	"insurer":    OIDRoleInsurer,
}
