package revocation

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/keys"
)

// ProfileOCSPResponder is the CertRecord profile of delegated responder certificates.
const ProfileOCSPResponder = "ocsp-responder"

// IssueFunc issues a delegated OCSP responder certificate for pub, valid from notBefore to notAfter. The
// composition root may pass the ca package's issuance pipeline here; without one the Responder uses
// ResponderCertIssuer.Issue.
type IssueFunc func(ctx context.Context, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error)

// ResponderCertIssuer issues delegated responder certificates under Issuer and records them in Store.
type ResponderCertIssuer struct {
	Store  ca.Store
	Issuer *ca.Issuer
	Shards int              // CRL shards, for the record's Shard (ca.ShardFor)
	Now    func() time.Time // clock of the audit events; nil means time.Now
}

// Issue issues a delegated OCSP responder certificate (RFC 6960 §4.2.2.2) for pub under is:
// extendedKeyUsage id-kp-OCSPSigning, digitalSignature, and id-pkix-ocsp-nocheck (§4.2.2.2.1) so that
// clients do not ask about the responder's own status, which is why the certificate must be short-lived.
//
// It follows the CA's issuance sequence so that no certificate exists that the store and the audit log do
// not know: random serial -> TBS built by signing with a throwaway key of the CA key's type -> intent
// (AddPending with the TBS hash, audited) -> sign with the CA key (signature verified) -> check the signed
// TBS equals the intent -> MarkIssued (audited). It does not lint (zlint lives with the ca pipeline).
// Mohr's package ca has no issuance entry point yet; this is the minimum the responder needs.
func (ri *ResponderCertIssuer) Issue(ctx context.Context, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	store, is, shards := ri.Store, ri.Issuer, ri.Shards
	clock := ri.Now
	if clock == nil {
		clock = time.Now
	}
	serialBytes := make([]byte, 16)
	if _, err := rand.Read(serialBytes); err != nil {
		return nil, fmt.Errorf("revocation: responder serial: %w", err)
	}
	serialBytes[0] &= 0x7f
	serialBytes[0] |= 0x40 // 127 bits, positive, never shorter than 16 octets
	serial := new(big.Int).SetBytes(serialBytes)

	cn := "OCSP Responder"
	if is.Cert.Subject.CommonName != "" {
		cn = is.Cert.Subject.CommonName + " OCSP Responder"
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: is.Cert.Subject.Organization, Country: is.Cert.Subject.Country},
		NotBefore:             notBefore.UTC().Truncate(time.Second),
		NotAfter:              notAfter.UTC().Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: oidOCSPNoCheck, Value: []byte{0x05, 0x00}}},
	}

	// The TBS the CA key will sign, obtained by signing with a throwaway key of the same type (so the
	// signatureAlgorithm inside the TBS is the same) under a copy of the issuer carrying its public key.
	throwaway, err := throwawayLike(is.Signer.Public())
	if err != nil {
		return nil, err
	}
	lintParent := *is.Cert
	lintParent.PublicKey = throwaway.Public()
	lintDER, err := x509.CreateCertificate(rand.Reader, tmpl, &lintParent, pub, throwaway)
	if err != nil {
		return nil, fmt.Errorf("revocation: responder certificate TBS: %w", err)
	}
	lintCert, err := x509.ParseCertificate(lintDER)
	if err != nil {
		return nil, fmt.Errorf("revocation: responder certificate TBS: %w", err)
	}
	tbsHash := sha256.Sum256(lintCert.RawTBSCertificate)

	hexSerial := ca.SerialHex(serial)
	now := clock().UTC()
	rec := ca.CertRecord{
		Serial: hexSerial, Profile: ProfileOCSPResponder, Subject: lintCert.Subject.String(), Subject2: cn,
		NotBefore: tmpl.NotBefore, NotAfter: tmpl.NotAfter, TBSHash: tbsHash[:], Status: ca.StatusPending,
		Shard: ca.ShardFor(serial, shards),
	}
	data, _ := json.Marshal(map[string]any{"profile": ProfileOCSPResponder, "tbsSHA256": tbsHash[:], "notAfter": tmpl.NotAfter})
	if err := store.AddPending(ctx, rec, audit.Event{Time: now, Kind: "cert.intent", Actor: "system", Subject: hexSerial, Data: data}); err != nil {
		return nil, fmt.Errorf("revocation: responder certificate intent: %w", err)
	}
	fail := func(err error) (*x509.Certificate, error) {
		ev := audit.Event{Time: clock().UTC(), Kind: "cert.failed", Actor: "system", Subject: hexSerial}
		if ferr := store.MarkFailed(context.WithoutCancel(ctx), hexSerial, ev); ferr != nil {
			err = errors.Join(err, ferr)
		}
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.Cert, pub, keys.Verifying(is.Signer))
	if err != nil {
		return fail(fmt.Errorf("revocation: sign responder certificate: %w", err))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fail(fmt.Errorf("revocation: parse responder certificate: %w", err))
	}
	if got := sha256.Sum256(cert.RawTBSCertificate); got != tbsHash {
		return fail(fmt.Errorf("revocation: signed responder TBS differs from the recorded intent"))
	}
	ev := audit.Event{Time: clock().UTC(), Kind: "cert.issued", Actor: "system", Subject: hexSerial}
	if err := store.MarkIssued(ctx, hexSerial, der, ev); err != nil {
		return nil, fmt.Errorf("revocation: record responder certificate: %w", err)
	}
	return cert, nil
}

func throwawayLike(pub crypto.PublicKey) (crypto.Signer, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.GenerateKey(k.Curve, rand.Reader)
	case *rsa.PublicKey:
		// The signature algorithm (SHA256WithRSA) does not depend on the modulus size.
		return rsa.GenerateKey(rand.Reader, 2048)
	case ed25519.PublicKey:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("%w: CA key type %T", ErrConfig, pub)
}
