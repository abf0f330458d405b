package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// FuzzCSCAuthData drives parseAuthData (the untrusted authData array of credentials/authorize: the passkey
// assertion, the national ID card's certificate and answer, the handle). Properties: an accepted array has a
// handle and exactly one mode (assertion, card, or neither for the activation page); a card answer has a
// certificate of 1..maxCardCertificate bytes and a 64-byte signature; re-encoding what was parsed (standard
// base64, the other handle name) parses to the same values. Seeds: testdata/fuzz/FuzzCSCAuthData/.
func FuzzCSCAuthData(f *testing.F) {
	sig := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 64))
	for _, s := range []string{
		`[{"id":"activation_handle","value":"aa"},{"id":"card_certificate","value":"MIIB"},{"id":"card_signature","value":"` + sig + `"}]`,
		`[{"id":"webauthn_handle","value":"aa"},{"id":"webauthn_assertion","value":"e30"}]`,
		`[{"id":"webauthn_handle","value":"aa"}]`,
		`[{"id":"activation_handle","value":"aa"},{"id":"webauthn_handle","value":"aa"}]`,
		`[{"id":"activation_handle","value":"aa"},{"id":"card_signature","value":"` + sig + `"}]`,
		`[{"id":"card_certificate","value":"MIIB"},{"id":"card_signature","value":"` + sig[:80] + `"}]`,
		`[]`, `null`, `[{"id":"x","value":""}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var objs []cscAuthObject
		if json.Unmarshal(data, &objs) != nil {
			return
		}
		a, err := parseAuthData(objs)
		if err != nil {
			return
		}
		if a.handle == "" || (a.card != nil && a.assertion != nil) {
			t.Fatalf("accepted %s as %+v", data, a)
		}
		again := []cscAuthObject{{ID: cscAuthHandle, Value: a.handle}}
		if a.card != nil {
			if n := len(a.card.Certificate); n == 0 || n > maxCardCertificate || len(a.card.Signature) != 64 {
				t.Fatalf("card answer of %d/%d bytes accepted", n, len(a.card.Signature))
			}
			again = append(again, cscAuthObject{ID: cscAuthCardSignature, Value: base64.StdEncoding.EncodeToString(a.card.Signature)},
				cscAuthObject{ID: cscAuthCardCertificate, Value: base64.StdEncoding.EncodeToString(a.card.Certificate)})
		}
		if a.assertion != nil {
			again = append(again, cscAuthObject{ID: cscAuthAssertion, Value: base64.RawURLEncoding.EncodeToString(a.assertion)})
		}
		b, err := parseAuthData(again)
		if err != nil || b.handle != a.handle || !bytes.Equal(b.assertion, a.assertion) || (a.card == nil) != (b.card == nil) ||
			(a.card != nil && (!bytes.Equal(a.card.Certificate, b.card.Certificate) || !bytes.Equal(a.card.Signature, b.card.Signature))) {
			t.Fatalf("round trip of %s: %+v, %v", data, b, err)
		}
	})
}
