package ca

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/ids"
)

// Request asks for one certificate. The CA never copies names or extensions from the CSR: it builds the subject
// from the validated fields below, as the profile says. Only the public key comes from the CSR.
type Request struct {
	Profile string
	CSR     *x509.CertificateRequest

	// CommonName is the holder's display name (physician, facility, organisation, service).
	CommonName   string
	Organization string
	// Facility binding (facility-adapter).
	SIAMID        string
	LicenceNumber string
	SystemCertID  string
	// Physician binding (physician-signing, physician-auth).
	NationalCode  string
	CouncilNumber string
	Profession    string
	// DNSNames and IPs for tls-server.
	DNSNames []string
	IPs      []net.IP
	// Role for operator and organisation-seal certificates: a key of hixext.RoleOIDs.
	Role string

	// RemoteSigning (physician-signing only) marks a key held in the signing centre's HSM under the
	// physician's sole control: the certificate also asserts the remote-signing policy
	// (hixext.OIDPolicyRemoteSigning), so a verifier can tell it from a card key.
	RemoteSigning bool

	// ValidUntil is the end of the standing the certificate is issued on (licence, system certificate, council
	// registration). The certificate never outlives it. Zero means the profile lifetime alone decides.
	ValidUntil time.Time
	// Actor names who asked, for the audit log.
	Actor string
}

// ocspNoCheck is id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1).
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

var oidExtKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}
var oidEKUTimeStamping = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}

// asn1NULL is the DER of NULL.
var asn1NULL = []byte{0x05, 0x00}

// normalize validates the identifiers of r for its profile and returns a copy in canonical form.
func (c *CA) normalize(r Request) (Request, error) {
	bad := func(format string, a ...any) (Request, error) {
		return Request{}, fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, a...)...)
	}
	if !knownProfile(r.Profile) {
		return bad("unknown profile %q", r.Profile)
	}
	if r.CSR == nil {
		return bad("no CSR")
	}
	for _, s := range []string{r.CommonName, r.Organization, r.Profession} {
		if !utf8.ValidString(s) || len(s) > 64 || strings.ContainsAny(s, "\x00\r\n") {
			return bad("names must be valid UTF-8 of at most 64 bytes on one line")
		}
	}
	if r.RemoteSigning && r.Profile != ProfilePhysicianSigning {
		return bad("only physician-signing certificates can be remote-signing certificates")
	}
	var err error
	switch r.Profile {
	case ProfileFacilityAdapter:
		if r.SIAMID, err = ids.SIAMID(r.SIAMID); err != nil {
			return bad("%v", err)
		}
		if r.LicenceNumber, err = ids.LicenceNumber(r.LicenceNumber); err != nil {
			return bad("%v", err)
		}
		if r.SystemCertID != "" {
			if r.SystemCertID, err = ids.LicenceNumber(r.SystemCertID); err != nil {
				return bad("system certificate ID: %v", err)
			}
		}
		if r.CommonName == "" {
			r.CommonName = r.SIAMID
		}
	case ProfilePhysicianSigning, ProfilePhysicianAuth:
		if r.NationalCode, err = ids.NationalCode(r.NationalCode); err != nil {
			return bad("%v", err)
		}
		if r.CouncilNumber, err = ids.CouncilNumber(r.CouncilNumber); err != nil {
			return bad("%v", err)
		}
		if r.Profession == "" {
			r.Profession = "Physician"
		}
		if r.CommonName == "" {
			return bad("physician certificates need the physician's name (common name)")
		}
	case ProfileTLSServer:
		if len(r.DNSNames) == 0 && len(r.IPs) == 0 {
			return bad("tls-server certificates need at least one DNS name or IP address")
		}
		for _, d := range r.DNSNames {
			if !validDNSName(d) {
				return bad("invalid DNS name %q", d)
			}
		}
		if r.CommonName == "" && len(r.DNSNames) > 0 {
			r.CommonName = r.DNSNames[0]
		}
	case ProfileOperator:
		if _, ok := hixext.RoleOIDs[r.Role]; !ok || r.Role == "pharmacy" || r.Role == "insurer" {
			return bad("operator certificates need a role: operator, ra-officer or auditor")
		}
		if r.CommonName == "" {
			return bad("operator certificates need the operator's name")
		}
	case ProfileOrganisationAuth:
		if r.Role != "pharmacy" && r.Role != "insurer" {
			return bad("organisation-auth certificates need a role: pharmacy or insurer")
		}
		if r.CommonName == "" {
			return bad("organisation-auth certificates need the organisation's name")
		}
	case ProfileOrganisationSeal:
		// A seal names the organisation it seals for (pharmacy or insurer) or none (the exchange's own seal).
		// It never carries a staff role: a seal is a signing key, and roles are for API credentials.
		if r.Role != "" && r.Role != "pharmacy" && r.Role != "insurer" {
			return bad("organisation-seal certificates take no role or pharmacy or insurer")
		}
		if r.CommonName == "" {
			return bad("organisation-seal certificates need the organisation's name")
		}
	default:
		if r.CommonName == "" {
			return bad("%s certificates need a common name", r.Profile)
		}
	}
	if r.Role != "" && r.Profile != ProfileOperator && r.Profile != ProfileOrganisationSeal && r.Profile != ProfileOrganisationAuth {
		return bad("a role goes only in operator, organisation-auth and organisation-seal certificates")
	}
	if r.Profile != ProfileTLSServer && (len(r.DNSNames) > 0 || len(r.IPs) > 0) {
		return bad("DNS names and IP addresses go only in tls-server certificates")
	}
	return r, nil
}

func validDNSName(d string) bool {
	if len(d) == 0 || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-') {
				return false
			}
		}
	}
	return true
}

// template builds the certificate for r (already normalized) with serial, valid from now.
func (c *CA) template(r Request, serial *big.Int, now time.Time) (*x509.Certificate, error) {
	pc := c.cfg.Profiles[r.Profile]
	notBefore := now.Add(-time.Minute).UTC().Truncate(time.Second)
	notAfter := notBefore.Add(time.Duration(pc.Lifetime))
	if !r.ValidUntil.IsZero() && r.ValidUntil.Before(notAfter) {
		notAfter = r.ValidUntil.UTC().Truncate(time.Second)
	}
	if ia := c.issuer.Cert.NotAfter; ia.Before(notAfter) {
		notAfter = ia
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("%w: the standing it would be issued on ends at %s", ErrNotEligible, notAfter.Format(time.RFC3339))
	}
	spki, err := x509.MarshalPKIXPublicKey(r.CSR.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWeakKey, err)
	}
	// RFC 7093 §2 method 1: the leftmost 160 bits of the SHA-256 of the subjectPublicKey BIT STRING value;
	// the SPKI hash is as unique and simpler to compute.
	skid := sha256.Sum256(spki)

	t := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		SubjectKeyId:          skid[:20],
		BasicConstraintsValid: true,
		OCSPServer:            []string{c.cfg.OCSPURL},
		CRLDistributionPoints: []string{CRLURL(c.cfg.CRLBaseURL, ShardFor(serial, c.cfg.CRLShards))},
	}
	if c.cfg.IssuerURL != "" {
		t.IssuingCertificateURL = []string{c.cfg.IssuerURL}
	}
	for _, s := range pc.Policies {
		oid, _ := parseOID(s) // validated by Config.Validate
		if err := addPolicy(t, oid); err != nil {
			return nil, err
		}
	}
	subj := pkix.Name{Country: []string{c.cfg.Country}, CommonName: r.CommonName}
	if r.Organization != "" {
		subj.Organization = []string{r.Organization}
	}
	switch r.Profile {
	case ProfileFacilityAdapter:
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		subj.SerialNumber = r.SIAMID
		ext, err := hixext.Facility{SIAMID: r.SIAMID, LicenceNumber: r.LicenceNumber, SystemCertID: r.SystemCertID}.Extension()
		if err != nil {
			return nil, err
		}
		t.ExtraExtensions = append(t.ExtraExtensions, ext)
	case ProfilePhysicianSigning, ProfilePhysicianAuth:
		subj.SerialNumber = hixext.NationalCodePrefix + r.NationalCode
		ext, err := hixext.Admission{Authority: c.cfg.CouncilAuthority, Profession: r.Profession, RegistrationNumber: r.CouncilNumber}.Extension()
		if err != nil {
			return nil, err
		}
		t.ExtraExtensions = append(t.ExtraExtensions, ext)
		if r.Profile == ProfilePhysicianSigning && r.RemoteSigning {
			if err := addPolicy(t, hixext.OIDPolicyRemoteSigning); err != nil {
				return nil, err
			}
		}
		if r.Profile == ProfilePhysicianSigning {
			// Non-repudiation only (ETSI EN 319 412-2 §4.3.2: a key for qualified signatures).
			t.KeyUsage = x509.KeyUsageContentCommitment
		} else {
			t.KeyUsage = x509.KeyUsageDigitalSignature
			t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
	case ProfileOrganisationSeal:
		t.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	case ProfileOperator, ProfileOrganisationAuth:
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case ProfileOCSPResponder:
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
		t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidOCSPNoCheck, Value: asn1NULL})
		t.OCSPServer = nil // RFC 6960 §4.2.2.2.1: the responder's own certificate is not checked
	case ProfileTSA:
		t.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
		// RFC 3161 §2.3: the extended key usage must be timeStamping only and critical; x509's ExtKeyUsage
		// field writes it non-critical, so it goes in as a raw extension.
		eku, _ := asn1.Marshal([]asn1.ObjectIdentifier{oidEKUTimeStamping})
		t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidExtKeyUsage, Critical: true, Value: eku})
	case ProfileTLSServer:
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		t.DNSNames = r.DNSNames
		t.IPAddresses = r.IPs
	}
	if r.Role != "" {
		if err := addPolicy(t, hixext.RoleOIDs[r.Role]); err != nil {
			return nil, err
		}
	}
	t.Subject = subj
	return t, nil
}

// bindingOf returns the identifier the certificate is bound to, for the store's listing.
func bindingOf(r Request) string {
	switch r.Profile {
	case ProfileFacilityAdapter:
		return r.SIAMID
	case ProfilePhysicianSigning, ProfilePhysicianAuth:
		return r.NationalCode
	case ProfileTLSServer:
		if len(r.DNSNames) > 0 {
			return r.DNSNames[0]
		}
	}
	return r.CommonName
}

// addPolicy adds a certificate policy (RFC 5280 §4.2.1.4). Since Go 1.24 CreateCertificate writes the Policies
// field and ignores PolicyIdentifiers, so the OID goes into Policies.
func addPolicy(t *x509.Certificate, oid asn1.ObjectIdentifier) error {
	o, err := x509.OIDFromInts(toUint64s(oid))
	if err != nil {
		return fmt.Errorf("ca: policy OID %s: %w", oid, err)
	}
	t.Policies = append(t.Policies, o)
	return nil
}

func toUint64s(oid asn1.ObjectIdentifier) []uint64 {
	u := make([]uint64, len(oid))
	for i, v := range oid {
		u[i] = uint64(v)
	}
	return u
}
