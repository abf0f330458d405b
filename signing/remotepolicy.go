package signing

import (
	"crypto/x509"

	"github.com/mohr-hix/mohr/internal/hixext"
)

// remoteSigningPolicy returns the dotted remote-signing certificate policy OID cert asserts, or "". The
// validation report names it (Prescriber.RemoteSigningPolicy) so a verifier, a pharmacy or a court can tell a
// signature made with a key in the signing centre's HSM (docs/remote-signing.md) from one made on a card. It
// is information, not a trust decision: the certificate must still pass the physician-signing constraints.
func remoteSigningPolicy(cert *x509.Certificate) string {
	want, err := x509.OIDFromInts(oidInts(hixext.OIDPolicyRemoteSigning))
	if err != nil {
		return ""
	}
	for _, p := range cert.Policies {
		if p.Equal(want) {
			return p.String()
		}
	}
	for _, p := range cert.PolicyIdentifiers {
		if p.Equal(hixext.OIDPolicyRemoteSigning) {
			return p.String()
		}
	}
	return ""
}

func oidInts(o []int) []uint64 {
	u := make([]uint64, len(o))
	for i, v := range o {
		u[i] = uint64(v)
	}
	return u
}
