package signing

import (
	"fmt"
	"strings"
	"time"
)

// Indication is the main result of a validation, ETSI EN 319 102-1 §5.1.3 (Table 4).
type Indication string

// The three indications of EN 319 102-1.
const (
	TotalPassed   Indication = "TOTAL_PASSED"
	TotalFailed   Indication = "TOTAL_FAILED"
	Indeterminate Indication = "INDETERMINATE"
)

// SubIndication explains a TOTAL_FAILED or INDETERMINATE result, with the names of EN 319 102-1 Table 5.
type SubIndication string

// Sub-indications used by Mohr (EN 319 102-1 §5.1.3, Table 5).
const (
	FormatFailure                  SubIndication = "FORMAT_FAILURE"
	HashFailure                    SubIndication = "HASH_FAILURE"
	SigCryptoFailure               SubIndication = "SIG_CRYPTO_FAILURE"
	Revoked                        SubIndication = "REVOKED"
	Expired                        SubIndication = "EXPIRED"
	NotYetValid                    SubIndication = "NOT_YET_VALID"
	SigConstraintsFailure          SubIndication = "SIG_CONSTRAINTS_FAILURE"
	ChainConstraintsFailure        SubIndication = "CHAIN_CONSTRAINTS_FAILURE"
	CertificateChainGeneralFailure SubIndication = "CERTIFICATE_CHAIN_GENERAL_FAILURE"
	CryptoConstraintsFailure       SubIndication = "CRYPTO_CONSTRAINTS_FAILURE"
	PolicyProcessingError          SubIndication = "POLICY_PROCESSING_ERROR"
	TimestampOrderFailure          SubIndication = "TIMESTAMP_ORDER_FAILURE"
	NoSigningCertificateFound      SubIndication = "NO_SIGNING_CERTIFICATE_FOUND"
	NoCertificateChainFound        SubIndication = "NO_CERTIFICATE_CHAIN_FOUND"
	RevokedNoPOE                   SubIndication = "REVOKED_NO_POE"
	OutOfBoundsNoPOE               SubIndication = "OUT_OF_BOUNDS_NO_POE"
	OutOfBoundsNotRevoked          SubIndication = "OUT_OF_BOUNDS_NOT_REVOKED"
	RevocationOutOfBoundsNoPOE     SubIndication = "REVOCATION_OUT_OF_BOUNDS_NO_POE"
	NoPOE                          SubIndication = "NO_POE"
	TryLater                       SubIndication = "TRY_LATER"
	SignedDataNotFound             SubIndication = "SIGNED_DATA_NOT_FOUND"
	RevokedCANoPOE                 SubIndication = "REVOKED_CA_NO_POE"
	CryptoConstraintsFailureNoPOE  SubIndication = "CRYPTO_CONSTRAINTS_FAILURE_NO_POE"
	SignaturePolicyNotAvailable    SubIndication = "SIGNATURE_POLICY_NOT_AVAILABLE"
)

// Indication returns the indication a sub-indication belongs to (EN 319 102-1 Table 5): FORMAT_FAILURE,
// HASH_FAILURE, SIG_CRYPTO_FAILURE, REVOKED, EXPIRED and NOT_YET_VALID are TOTAL_FAILED; the rest INDETERMINATE.
func (s SubIndication) Indication() Indication {
	switch s {
	case "":
		return TotalPassed
	case FormatFailure, HashFailure, SigCryptoFailure, Revoked, Expired, NotYetValid:
		return TotalFailed
	}
	return Indeterminate
}

// CertInfo describes a certificate in a report.
type CertInfo struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	SHA256    string    `json:"sha256"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
}

// RevocationInfo is the revocation evidence used for one certificate (RFC 6960).
type RevocationInfo struct {
	Serial         string     `json:"serial"`
	Subject        string     `json:"subject,omitempty"`
	Type           string     `json:"type,omitempty"` // "ocsp" or "crl"
	Source         string     `json:"source"`         // "embedded" or "fetched"
	Status         string     `json:"status"`         // "good", "revoked", "on hold"
	ProducedAt     time.Time  `json:"producedAt"`
	ThisUpdate     time.Time  `json:"thisUpdate"`
	RevokedAt      *time.Time `json:"revokedAt,omitempty"`
	Responder      string     `json:"responder,omitempty"`
	ResponseSHA256 string     `json:"responseSha256"`
}

// TimestampInfo describes an RFC 3161 timestamp found on the signature.
type TimestampInfo struct {
	Type    string    `json:"type"` // "signature" or "archive"
	GenTime time.Time `json:"genTime"`
	Serial  string    `json:"serial,omitempty"`
	Policy  string    `json:"policy,omitempty"`
	TSA     string    `json:"tsa,omitempty"`
	Valid   bool      `json:"valid"`
	Detail  string    `json:"detail,omitempty"`
}

// Prescriber is what the report says about the health-domain checks of the signer.
type Prescriber struct {
	Name          string `json:"name,omitempty"`
	NationalCode  string `json:"nationalCode,omitempty"`
	CouncilNumber string `json:"councilNumber,omitempty"`
	Registration  string `json:"registration,omitempty"` // at the best signature time, e.g. "active", "not checked"
	// RegistrationNow is today's status when it differs from the one at the best signature time (a physician
	// suspended after signing: "active" then, "suspended" now).
	RegistrationNow string `json:"registrationNow,omitempty"`
	PatientCode     string `json:"patientNationalCode,omitempty"`
	// RemoteSigningPolicy is the remote-signing certificate policy OID the signing certificate asserts
	// (hixext.OIDPolicyRemoteSigning): the key is held in the signing centre's HSM and was activated by the
	// physician under EN 419 241-1 SCAL2 (docs/remote-signing.md), not on a council card. Empty otherwise.
	RemoteSigningPolicy string `json:"remoteSigningPolicy,omitempty"`
	// PrescriptionID is the prescription's Bundle.id (what a claim names).
	PrescriptionID string `json:"prescriptionId,omitempty"`
}

// Report is the validation report of one signature, after ETSI EN 319 102-1 §5 (the indication and
// sub-indication of §5.1.3, the best signature time of §5.6, and the evidence used).
type Report struct {
	Name               string           `json:"name,omitempty"`
	Indication         Indication       `json:"indication"`
	SubIndication      SubIndication    `json:"subIndication,omitempty"`
	Reason             string           `json:"reason,omitempty"`
	Level              string           `json:"level,omitempty"`
	Policy             string           `json:"signaturePolicy,omitempty"`
	ContentSHA256      string           `json:"contentSha256,omitempty"`
	ClaimedSigningTime *time.Time       `json:"claimedSigningTime,omitempty"`
	BestSignatureTime  time.Time        `json:"bestSignatureTime"`
	ValidationTime     time.Time        `json:"validationTime"`
	Signer             *CertInfo        `json:"signer,omitempty"`
	Chain              []CertInfo       `json:"chain,omitempty"`
	Revocation         []RevocationInfo `json:"revocation,omitempty"`
	Timestamps         []TimestampInfo  `json:"timestamps,omitempty"`
	Prescriber         *Prescriber      `json:"prescriber,omitempty"`
	// Used is the validation data the validation fetched and relied on (OCSP responses, CRLs; what was
	// embedded is in the signature already), so that an upgrade to B-LT embeds exactly that (EN 319 122-1
	// §5.5.1). Not part of the JSON report.
	Used *ValidationData `json:"-"`
}

// used returns r.Used, allocating it on first use.
func (r *Report) used() *ValidationData {
	if r.Used == nil {
		r.Used = &ValidationData{}
	}
	return r.Used
}

// Passed reports whether the indication is TOTAL_PASSED.
func (r *Report) Passed() bool { return r.Indication == TotalPassed }

// fail sets the result from a sub-indication and a reason.
func (r *Report) fail(s SubIndication, format string, args ...any) *Report {
	r.Indication, r.SubIndication = s.Indication(), s
	r.Reason = fmt.Sprintf(format, args...)
	return r
}

// Summary returns a short human summary, one to three lines.
func (r *Report) Summary() string {
	var b strings.Builder
	if r.Name != "" {
		fmt.Fprintf(&b, "%s: ", r.Name)
	}
	b.WriteString(string(r.Indication))
	if r.SubIndication != "" {
		fmt.Fprintf(&b, "/%s", r.SubIndication)
	}
	if r.Level != "" {
		fmt.Fprintf(&b, " (%s)", r.Level)
	}
	if r.Reason != "" {
		fmt.Fprintf(&b, ": %s", r.Reason)
	}
	if r.Signer != nil {
		fmt.Fprintf(&b, "\n  signer %s", r.Signer.Subject)
		if r.Prescriber != nil && r.Prescriber.CouncilNumber != "" {
			fmt.Fprintf(&b, ", council no. %s (%s)", r.Prescriber.CouncilNumber, r.Prescriber.Registration)
		}
	}
	if !r.BestSignatureTime.IsZero() {
		fmt.Fprintf(&b, "\n  best signature time %s", r.BestSignatureTime.UTC().Format(time.RFC3339))
		if len(r.Timestamps) > 0 {
			b.WriteString(" (timestamp)")
		}
	}
	return b.String()
}
