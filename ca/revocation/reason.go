package revocation

import (
	"fmt"
	"strconv"
	"strings"
)

// Reason is an RFC 5280 §5.3.1 CRLReason code, also used in OCSP RevokedInfo (RFC 6960 §4.2.1).
type Reason int

// The CRLReason codes of RFC 5280 §5.3.1. Value 7 is not used.
const (
	Unspecified          Reason = 0
	KeyCompromise        Reason = 1
	CACompromise         Reason = 2
	AffiliationChanged   Reason = 3
	Superseded           Reason = 4
	CessationOfOperation Reason = 5
	CertificateHold      Reason = 6
	RemoveFromCRL        Reason = 8
	PrivilegeWithdrawn   Reason = 9
	AACompromise         Reason = 10
)

var reasonNames = map[Reason]string{
	Unspecified:          "unspecified",
	KeyCompromise:        "keyCompromise",
	CACompromise:         "cACompromise",
	AffiliationChanged:   "affiliationChanged",
	Superseded:           "superseded",
	CessationOfOperation: "cessationOfOperation",
	CertificateHold:      "certificateHold",
	RemoveFromCRL:        "removeFromCRL",
	PrivilegeWithdrawn:   "privilegeWithdrawn",
	AACompromise:         "aACompromise",
}

// String returns the RFC 5280 name of r, or "reason(N)" for a code RFC 5280 does not define.
func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// ParseReason accepts the RFC 5280 name of a reason (case-insensitive, e.g. "keyCompromise") or its
// decimal code. It does not judge whether the reason is allowed for an operation; see CheckRevocationReason.
func ParseReason(s string) (Reason, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		r := Reason(n)
		if _, ok := reasonNames[r]; !ok {
			return 0, fmt.Errorf("%w: unknown code %d", ErrBadReason, n)
		}
		return r, nil
	}
	for r, name := range reasonNames {
		if strings.EqualFold(name, s) {
			return r, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown reason %q", ErrBadReason, s)
}

// CheckRevocationReason reports ErrBadReason unless r may be given to Revoke. RFC 5280 §5.3.1 reserves
// removeFromCRL(8) for delta CRLs, which Mohr does not issue (a release simply drops the entry from the
// next full CRL), and code 7 is unused. certificateHold(6) goes through Hold, because it can be undone.
func CheckRevocationReason(r Reason) error {
	switch r {
	case Unspecified, KeyCompromise, CACompromise, AffiliationChanged, Superseded,
		CessationOfOperation, PrivilegeWithdrawn, AACompromise:
		return nil
	case CertificateHold:
		return fmt.Errorf("%w: certificateHold(6) is set with Hold, not Revoke", ErrBadReason)
	case RemoveFromCRL:
		return fmt.Errorf("%w: removeFromCRL(8) is only for delta CRLs (RFC 5280 §5.3.1)", ErrBadReason)
	}
	return fmt.Errorf("%w: %v", ErrBadReason, r)
}
