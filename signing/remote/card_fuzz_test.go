package remote

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

// FuzzCardAnswer drives the exchange's check of a national ID card's answer (checkCardAnswer: the card
// certificate, untrusted DER, and the plain r||s signature, untrusted bytes) over a challenge. A valid answer
// from a card of the configured issuer is the seed. Properties: no panic; an accepted answer carries exactly
// the issuer's card certificate (no other encoding or certificate passes), a 64-byte signature that verifies
// over SHA-256(challenge), and names the card's national code; an expired clock refuses everything.
// Seeds: testdata/fuzz/FuzzCardAnswer/ and the valid answer made here.
func FuzzCardAnswer(f *testing.F) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	issKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Card Issuer"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	issDER, _ := x509.CreateCertificate(rand.Reader, issTmpl, issTmpl, issKey.Public(), issKey)
	iss, _ := x509.ParseCertificate(issDER)
	cardKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Holder", SerialNumber: "IDCIR-0499370899"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(2, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature}
	leaf, _ := x509.CreateCertificate(rand.Reader, leafTmpl, iss, cardKey.Public(), issKey)
	challenge := sha256.Sum256([]byte("challenge"))
	h := sha256.Sum256(challenge[:])
	r, s, _ := ecdsa.Sign(rand.Reader, cardKey, h[:])
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	f.Add(leaf, sig, challenge[:])
	f.Add(leaf, sig[:63], challenge[:])
	f.Add(issDER, sig, challenge[:])
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00}, make([]byte, 64), []byte{})
	clock := now
	svc := &Service{cfg: Config{CardIssuers: []*x509.Certificate{iss}, Now: func() time.Time { return clock }}}
	late := &Service{cfg: Config{CardIssuers: []*x509.Certificate{iss}, Now: func() time.Time { return now.AddDate(3, 0, 0) }}}
	f.Fuzz(func(t *testing.T, cert, sg, ch []byte) {
		k, err := svc.checkCardAnswer(context.Background(), CardAnswer{Certificate: cert, Signature: sg}, ch)
		if _, lerr := late.checkCardAnswer(context.Background(), CardAnswer{Certificate: cert, Signature: sg}, ch); lerr == nil {
			t.Fatal("accepted with the card certificate expired")
		}
		if err != nil {
			return
		}
		hh := sha256.Sum256(ch)
		if !bytes.Equal(cert, leaf) || len(sg) != 64 || k.NationalCode != "0499370899" ||
			!ecdsa.Verify(&cardKey.PublicKey, hh[:], new(big.Int).SetBytes(sg[:32]), new(big.Int).SetBytes(sg[32:])) {
			t.Fatalf("accepted %x / %x over %x", cert, sg, ch)
		}
	})
}

// TestCardKeyUsage: a card certificate of a configured issuer whose key usage does not include
// digitalSignature is refused even with a verifying answer; the same key with digitalSignature passes.
func TestCardKeyUsage(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	issKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Card Issuer"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	issDER, _ := x509.CreateCertificate(rand.Reader, issTmpl, issTmpl, issKey.Public(), issKey)
	iss, _ := x509.ParseCertificate(issDER)
	cardKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	challenge := []byte("a challenge of some length")
	h := sha256.Sum256(challenge)
	r, s, _ := ecdsa.Sign(rand.Reader, cardKey, h[:])
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	svc := &Service{cfg: Config{CardIssuers: []*x509.Certificate{iss}, Now: func() time.Time { return now }}}
	for _, tc := range []struct {
		ku   x509.KeyUsage
		want bool
	}{{x509.KeyUsageKeyEncipherment, false}, {x509.KeyUsageDigitalSignature, true}} {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{SerialNumber: "IDCIR-0499370899"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), KeyUsage: tc.ku}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, iss, cardKey.Public(), issKey)
		_, err := svc.checkCardAnswer(context.Background(), CardAnswer{Certificate: der, Signature: sig}, challenge)
		if (err == nil) != tc.want || (err != nil && !errors.Is(err, ErrCardRefused)) {
			t.Errorf("key usage %v: %v", tc.ku, err)
		}
	}
}
