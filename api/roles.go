package api

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/ids"
)

// Role is what a caller may do, as the access matrix names it.
type Role string

// The roles of DOMAIN.md "People who use it".
const (
	RoleOperator  Role = "operator"   // CA operator
	RoleRAOfficer Role = "ra-officer" // registration officer
	RoleAuditor   Role = "auditor"
	RoleFacility  Role = "facility"  // a facility's HIX adapter
	RolePhysician Role = "physician" // a physician's card authentication certificate
	RolePharmacy  Role = "pharmacy"  // a pharmacy's organisation seal
	RoleInsurer   Role = "insurer"   // an insurer's organisation seal
)

// Roles lists every role in the order the access matrix shows them.
var Roles = []Role{RoleOperator, RoleRAOfficer, RoleAuditor, RoleFacility, RolePhysician, RolePharmacy, RoleInsurer}

// Role object identifiers, under hixext.OIDRoleBase (arc.4.N). An operator, RA-officer, auditor, pharmacy or
// insurer certificate asserts its role as a certificate policy (RFC 5280 §4.2.1.4, certificatePolicies) whose
// policy identifier is one of these. Facilities and physicians need none: their role follows from the
// facility extension and from the admission extension plus national code.
//
// A policy rather than a private extension because certificatePolicies is where RFC 5280 says a certificate
// states the purpose it was issued for, it needs no new ASN.1, every tool prints it, and crypto/x509 parses it.
// These OIDs belong in internal/hixext; they live here until its owner adds them (see docs/api.md).
var (
	OIDRoleOperator  = roleOID(1)
	OIDRoleRAOfficer = roleOID(2)
	OIDRoleAuditor   = roleOID(3)
	OIDRolePharmacy  = roleOID(4)
	OIDRoleInsurer   = roleOID(5)
)

func roleOID(n int) asn1.ObjectIdentifier {
	return append(append(asn1.ObjectIdentifier{}, hixext.OIDRoleBase...), n)
}

// RoleOIDs maps each role that a certificate policy asserts to its OID.
var RoleOIDs = map[Role]asn1.ObjectIdentifier{
	RoleOperator:  OIDRoleOperator,
	RoleRAOfficer: OIDRoleRAOfficer,
	RoleAuditor:   OIDRoleAuditor,
	RolePharmacy:  OIDRolePharmacy,
	RoleInsurer:   OIDRoleInsurer,
}

// Identity is an authenticated caller.
type Identity struct {
	Role Role
	// Subject names the caller for audit events and dual control: "cert:<serial hex>" for a certificate,
	// "admin:local" for the local admin credential.
	Subject string
	// Fingerprint is the hex SHA-256 of the client certificate (empty for the admin credential). The rate
	// limiter keys on it.
	Fingerprint string
	// SIAMID is the facility's SIAM ID (role facility), from the hixext facility extension.
	SIAMID string
	// NationalCode and CouncilNumber identify a physician (role physician).
	NationalCode  string
	CouncilNumber string
	// Cert is the verified client certificate, nil for the admin credential.
	Cert *x509.Certificate
}

// Actor returns the identity in the audit event form "api:<role>:<subject>".
func (id Identity) Actor() string { return "api:" + string(id.Role) + ":" + id.Subject }

var errNoRole = errors.New("api: certificate does not map to exactly one role")

// RoleFromCertificate derives the caller's identity from a client certificate that has already been verified
// to chain to the intermediate. Exactly one rule must match, otherwise the certificate maps to no role:
//
//   - a certificate policy under hixext.OIDRoleBase (see the OIDRole* variables) gives that role;
//   - the hixext facility extension gives role facility, bound to its SIAM ID;
//   - the Common PKI admission extension together with a valid national code in the subject serialNumber
//     ("IDCIR-<code>", ETSI EN 319 412-1 §5.1.3) gives role physician.
//
// authenticate also requires an API profile (apiCredential): clientAuth named explicitly in the extended key
// usage, digitalSignature without contentCommitment, not a CA.
func RoleFromCertificate(cert *x509.Certificate) (Identity, error) {
	id := Identity{
		Subject:     fmt.Sprintf("cert:%x", cert.SerialNumber),
		Fingerprint: fingerprint(cert),
		Cert:        cert,
	}
	var matches []Role
	for role, oid := range RoleOIDs {
		if hasPolicy(cert, oid) {
			matches = append(matches, role)
		}
	}
	fac, ferr := hixext.ParseFacility(cert)
	if ferr == nil {
		if _, err := ids.SIAMID(fac.SIAMID); err != nil {
			return Identity{}, errNoRole
		}
		matches = append(matches, RoleFacility)
		id.SIAMID = fac.SIAMID
	} else if !errors.Is(ferr, hixext.ErrNotPresent) {
		return Identity{}, errNoRole
	}
	if adm, err := hixext.ParseAdmission(cert); err == nil {
		nc, err := hixext.NationalCodeFromSubject(cert)
		if err != nil {
			return Identity{}, errNoRole
		}
		code, err := ids.NationalCode(nc)
		if err != nil || code != nc {
			return Identity{}, errNoRole
		}
		matches = append(matches, RolePhysician)
		id.NationalCode, id.CouncilNumber = code, adm.RegistrationNumber
	} else if !errors.Is(err, hixext.ErrNotPresent) {
		return Identity{}, errNoRole
	}
	if len(matches) != 1 {
		return Identity{}, errNoRole
	}
	id.Role = matches[0]
	return id, nil
}

func hasPolicy(cert *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	for _, p := range cert.Policies {
		if p.EqualASN1OID(oid) {
			return true
		}
	}
	return false
}

// fingerprint is the hex SHA-256 of a certificate's DER.
func fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}
