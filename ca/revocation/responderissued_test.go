package revocation

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/ca"
)

// TestLoadEntryResponderNotIssued: a stored response is taken only if the responder certificate it embeds
// carries the CA's signature, now that this is checked once per responder certificate rather than by
// ocsp.ParseResponse for every response. A response signed by a responder whose certificate names the CA as
// issuer but was signed by another key is refused, every time it is presented; one whose responder the CA did
// issue is taken, the first time and from memory after.
func TestLoadEntryResponderNotIssued(t *testing.T) {
	f := newOCSPFixture(t, testEpoch)
	if _, err := f.r.renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := f.r.del.Load()
	now := f.p.clock.Now()
	serial := randSerial(t)
	stored := func(parent *x509.Certificate, signedBy crypto.Signer) ca.OCSPRecord {
		rk := newKey(t)
		cert := mustCert(t, &x509.Certificate{
			SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: "Mohr OCSP Responder"},
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(48 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		}, parent, rk.Public(), signedBy)
		var o ca.OCSPRecord
		o.Serial, o.Status = ca.SerialHex(serial), ca.StatusIssued
		for hi, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
			der, err := ocsp.CreateResponse(f.p.inter, cert, ocsp.Response{Status: ocsp.Good, SerialNumber: serial,
				ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour), IssuerHash: h, Certificate: cert}, rk)
			if err != nil {
				t.Fatal(err)
			}
			o.DER[hi] = der
		}
		return o
	}
	fk := newKey(t) // the forger's key, presented under the intermediate's name and key identifier
	forged := stored(&x509.Certificate{Subject: f.p.inter.Subject, SubjectKeyId: f.p.inter.SubjectKeyId, PublicKey: fk.Public()}, fk)
	for i := 0; i < 2; i++ {
		if _, _, err := f.r.loadEntry(d, forged, 1); err == nil {
			t.Fatalf("attempt %d: a response from a responder the CA did not issue was loaded", i+1)
		}
	}
	genuine := stored(f.p.inter, f.p.issuer.Signer)
	for i := 0; i < 2; i++ {
		if _, _, err := f.r.loadEntry(d, genuine, 1); err != nil {
			t.Fatalf("attempt %d: a response from a responder the CA issued: %v", i+1, err)
		}
	}
	f.r.respMu.Lock()
	n := len(f.r.respOK)
	f.r.respMu.Unlock()
	if n != 1 {
		t.Fatalf("%d responder certificates remembered, want 1 (the genuine one)", n)
	}
}
