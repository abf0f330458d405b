package api

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/hixext"
)

// testNow is the fixed time of every test: certificates are valid around it and the server's clock says it.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testCA is a CA minted in the test with crypto/x509 (no dependency on internal/testpki).
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	next int64
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Mohr test"}},
		NotBefore:             testNow.Add(-24 * time.Hour),
		NotAfter:              testNow.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, key: key, next: 0x1000}
}

// leafOpts describes a client certificate.
type leafOpts struct {
	cn        string
	policy    []int // appended to hixext.OIDRoleBase
	facility  *hixext.Facility
	admission *hixext.Admission
	serialNum string // subject serialNumber
	notBefore time.Time
	notAfter  time.Time
	eku       []x509.ExtKeyUsage
	keyUsage  x509.KeyUsage // digitalSignature when zero
}

type testLeaf struct {
	cert *x509.Certificate
	tls  tls.Certificate
}

func (ca *testCA) issue(t testing.TB, o leafOpts) testLeaf {
	t.Helper()
	key := newKey(t)
	ca.next++
	if o.notBefore.IsZero() {
		o.notBefore = testNow.Add(-time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = testNow.Add(90 * 24 * time.Hour)
	}
	if o.eku == nil {
		o.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.next),
		Subject:      pkix.Name{CommonName: o.cn, SerialNumber: o.serialNum},
		NotBefore:    o.notBefore,
		NotAfter:     o.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  o.eku,
	}
	if o.keyUsage != 0 {
		tmpl.KeyUsage = o.keyUsage
	}
	if o.policy != nil {
		oid, err := x509.OIDFromInts(oidInts(append(append([]int{}, hixext.OIDRoleBase...), o.policy...)))
		if err != nil {
			t.Fatal(err)
		}
		tmpl.Policies = []x509.OID{oid}
	}
	if o.facility != nil {
		ext, err := o.facility.Extension()
		if err != nil {
			t.Fatal(err)
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
	}
	if o.admission != nil {
		ext, err := o.admission.Extension()
		if err != nil {
			t.Fatal(err)
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testLeaf{cert: c, tls: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}}
}

func oidInts(o []int) []uint64 {
	out := make([]uint64, len(o))
	for i, v := range o {
		out[i] = uint64(v)
	}
	return out
}

// testCSR returns a DER PKCS#10 request.
func testCSR(t testing.TB) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "csr"}}, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
