// Package softauthn is a software WebAuthn authenticator for tests: it answers registration (attestation
// "none") and assertion ceremonies the way a platform authenticator with user verification does (W3C
// WebAuthn Level 3 §6.1 authenticator data, §6.5 attestation objects, COSE ES256 keys of RFC 9053), so the
// remote-signing tests exercise go-webauthn's real verification. It is not for production: its key is in
// memory. The end-to-end test uses Chromium's virtual authenticator instead.
package softauthn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"

	"github.com/fxamacker/cbor/v2"
)

// Authenticator holds one credential (created by Register).
type Authenticator struct {
	Origin string
	// UserVerified sets the UV flag; UserPresent the UP flag (both true by New).
	UserVerified bool
	UserPresent  bool
	// FreezeCounter keeps the signature counter from advancing (a cloned authenticator).
	FreezeCounter bool

	key    *ecdsa.PrivateKey
	credID []byte
	rpID   string
	user   []byte
	count  uint32
}

// New returns an authenticator for pages of origin.
func New(origin string) *Authenticator {
	return &Authenticator{Origin: origin, UserVerified: true, UserPresent: true}
}

// CredentialID returns the credential's ID (after Register).
func (a *Authenticator) CredentialID() []byte { return a.credID }

var b64 = base64.RawURLEncoding

type creationOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
	} `json:"publicKey"`
}

type requestOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RPID      string `json:"rpId"`
	} `json:"publicKey"`
}

func (a *Authenticator) flags(attested bool) byte {
	var f byte
	if a.UserPresent {
		f |= 0x01
	}
	if a.UserVerified {
		f |= 0x04
	}
	if attested {
		f |= 0x40
	}
	return f
}

func clientData(typ, challenge, origin string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": origin, "crossOrigin": false})
	return b
}

// Register answers the creation options (the JSON of protocol.CredentialCreation) with a new credential,
// returning the PublicKeyCredential JSON a browser would post.
func (a *Authenticator) Register(optionsJSON []byte) ([]byte, error) {
	var o creationOptions
	if err := json.Unmarshal(optionsJSON, &o); err != nil {
		return nil, err
	}
	if o.PublicKey.Challenge == "" || o.PublicKey.RP.ID == "" {
		return nil, errors.New("softauthn: options without challenge or RP ID")
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	a.key, a.rpID = k, o.PublicKey.RP.ID
	a.user, _ = b64.DecodeString(o.PublicKey.User.ID)
	a.credID = make([]byte, 16)
	rand.Read(a.credID)
	ecdh, _ := k.PublicKey.ECDH()
	raw := ecdh.Bytes() // 04 || X || Y
	cose, err := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: raw[1:33], -3: raw[33:65]})
	if err != nil {
		return nil, err
	}
	rpHash := sha256.Sum256([]byte(a.rpID))
	ad := append([]byte{}, rpHash[:]...)
	ad = append(ad, a.flags(true))
	ad = binary.BigEndian.AppendUint32(ad, a.count)
	ad = append(ad, make([]byte, 16)...) // AAGUID
	ad = binary.BigEndian.AppendUint16(ad, uint16(len(a.credID)))
	ad = append(ad, a.credID...)
	ad = append(ad, cose...)
	att, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": ad})
	if err != nil {
		return nil, err
	}
	cd := clientData("webauthn.create", o.PublicKey.Challenge, a.Origin)
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.credID), "rawId": b64.EncodeToString(a.credID), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64.EncodeToString(cd), "attestationObject": b64.EncodeToString(att)},
	})
}

// Assert answers request options (the JSON of protocol.CredentialAssertion) with an assertion.
func (a *Authenticator) Assert(optionsJSON []byte) ([]byte, error) {
	var o requestOptions
	if err := json.Unmarshal(optionsJSON, &o); err != nil {
		return nil, err
	}
	return a.AssertChallenge(o.PublicKey.Challenge)
}

// AssertChallenge signs an assertion over challenge (base64url), whatever the server asked.
func (a *Authenticator) AssertChallenge(challenge string) ([]byte, error) {
	if a.key == nil {
		return nil, errors.New("softauthn: no credential")
	}
	if !a.FreezeCounter {
		a.count++
	}
	rpHash := sha256.Sum256([]byte(a.rpID))
	ad := append([]byte{}, rpHash[:]...)
	ad = append(ad, a.flags(false))
	ad = binary.BigEndian.AppendUint32(ad, a.count)
	cd := clientData("webauthn.get", challenge, a.Origin)
	cdh := sha256.Sum256(cd)
	msg := sha256.Sum256(append(append([]byte{}, ad...), cdh[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, msg[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.credID), "rawId": b64.EncodeToString(a.credID), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON": b64.EncodeToString(cd), "authenticatorData": b64.EncodeToString(ad),
			"signature": b64.EncodeToString(sig), "userHandle": b64.EncodeToString(a.user),
		},
	})
}
