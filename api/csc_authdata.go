package api

import (
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/signing/remote"
)

// The authData objects of credentials/authorize (CSC API v2 §11.6 "authData", ids of Mohr's choosing, listed
// in credentials/info auth/objects and docs/remote-signing.md):
//
//	activation_handle   the handle of the 202 answer (webauthn_handle is the same, its first name)
//	webauthn_assertion  the passkey factor: base64url JSON PublicKeyCredential over the challenge
//	card_certificate    the national ID card factor: the card's authentication certificate, base64 DER
//	card_signature      its INTERNAL AUTHENTICATE answer over the challenge: base64 plain ECDSA r||s (64 bytes)
//
// A handle alone asks for the SAD of an approval made on the activation page.
const (
	cscAuthActivationHandle = "activation_handle"
	cscAuthCardCertificate  = "card_certificate"
	cscAuthCardSignature    = "card_signature"
)

// maxCardCertificate bounds card_certificate (a card's certificate EF holds far less).
const maxCardCertificate = 8 << 10

// cscActivation is what an authData array asks for: exactly one of a passkey assertion, a card answer, or
// (handle alone) the parked approval of the activation page.
type cscActivation struct {
	handle    string
	assertion []byte
	card      *remote.CardAnswer
}

var errAuthData = errors.New("api: invalid authData")

// parseAuthData reads authData (untrusted): known ids only, each at most once, a handle always, and either
// a passkey assertion, or both card fields, or neither. Values are base64 (the assertion base64url, as the
// WebAuthn JSON is; the card fields standard or URL alphabet, padded or not).
func parseAuthData(objs []cscAuthObject) (cscActivation, error) {
	var a cscActivation
	seen := map[string]bool{}
	var cert, sig []byte
	for _, o := range objs {
		id := o.ID
		if id == cscAuthHandle {
			id = cscAuthActivationHandle
		}
		if seen[id] {
			return cscActivation{}, errAuthData
		}
		seen[id] = true
		var ok bool
		switch id {
		case cscAuthActivationHandle:
			a.handle, ok = o.Value, o.Value != "" && len(o.Value) <= 128
		case cscAuthAssertion:
			var err error
			a.assertion, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(o.Value, "="))
			ok = err == nil && len(a.assertion) > 0
		case cscAuthCardCertificate:
			cert, ok = decodeB64(o.Value)
			ok = ok && len(cert) > 0 && len(cert) <= maxCardCertificate
		case cscAuthCardSignature:
			sig, ok = decodeB64(o.Value)
			ok = ok && len(sig) == 64
		}
		if !ok {
			return cscActivation{}, errAuthData
		}
	}
	if a.handle == "" || seen[cscAuthCardCertificate] != seen[cscAuthCardSignature] || (a.assertion != nil && cert != nil) {
		return cscActivation{}, errAuthData
	}
	if cert != nil {
		a.card = &remote.CardAnswer{Certificate: cert, Signature: sig}
	}
	return a, nil
}

// decodeB64 decodes standard or URL base64, padded or not.
func decodeB64(s string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}

// factorView is one registered activation factor, as credentials/info ("factors") and the RA routes show it.
type factorView struct {
	Type string `json:"type"`
	// ID is the passkey's WebAuthn credential ID (base64url).
	ID string `json:"id,omitempty"`
	// The card's certificate: SHA-256 (hex), serial (hex), issuer, national code, end of validity.
	CertificateSHA256 string    `json:"certificateSHA256,omitempty"`
	SerialNumber      string    `json:"serialNumber,omitempty"`
	IssuerDN          string    `json:"issuerDN,omitempty"`
	NationalCode      string    `json:"nationalCode,omitempty"`
	ValidTo           time.Time `json:"validTo,omitzero"`
	RegisteredAt      time.Time `json:"registeredAt,omitzero"`
}

func factorsView(passkeys [][]byte, cards []remote.Card) []factorView {
	out := []factorView{}
	for _, p := range passkeys {
		out = append(out, factorView{Type: remote.FactorPasskey, ID: base64.RawURLEncoding.EncodeToString(p)})
	}
	for _, k := range cards {
		out = append(out, cardView(k))
	}
	return out
}

func cardView(k remote.Card) factorView {
	return factorView{Type: remote.FactorCard, CertificateSHA256: k.Fingerprint, SerialNumber: k.Serial, IssuerDN: k.Issuer,
		NationalCode: k.NationalCode, ValidTo: k.NotAfter.UTC(), RegisteredAt: k.CreatedAt.UTC()}
}
