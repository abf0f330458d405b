package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"time"

	"github.com/mohr-hix/mohr/api"
)

// stub is an in-process API server with stub services, a throwaway CA and a pharmacy client certificate.
type stub struct {
	url    string
	roots  *x509.CertPool
	client tls.Certificate
	srv    *http.Server
}

type stubVerifier struct{}

func (stubVerifier) Verify(context.Context, []byte) ([]byte, error) {
	return []byte(`{"indication":"TOTAL_PASSED"}`), nil
}

type stubOCSP struct{}

func (stubOCSP) Respond(context.Context, []byte) ([]byte, error)    { return make([]byte, 300), nil }
func (stubOCSP) RespondGET(context.Context, string) ([]byte, error) { return make([]byte, 300), nil }

type stubRevocation struct{}

func (stubRevocation) Revoked(context.Context, *x509.Certificate) (bool, error) { return false, nil }

func startStub() (*stub, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mohr-bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, tmpl *x509.Certificate) (tls.Certificate, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, err
		}
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, k.Public(), caKey)
		if err != nil {
			return tls.Certificate{}, err
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, nil
	}
	serverCert, err := issue(2, &x509.Certificate{Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return nil, err
	}
	pharmacyOID, err := x509.OIDFromInts(oidUint(api.OIDRolePharmacy))
	if err != nil {
		return nil, err
	}
	clientCert, err := issue(3, &x509.Certificate{Subject: pkix.Name{CommonName: "bench pharmacy"},
		Policies: []x509.OID{pharmacyOID}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	s, err := api.New(api.Config{ClientCAs: pool, RateLimit: 1 << 30, PublicRateLimit: 1 << 30},
		api.Services{Verifier: stubVerifier{}, OCSP: stubOCSP{}, Revocation: stubRevocation{}})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := s.HTTPServer(ln.Addr().String())
	hs.TLSConfig.Certificates = []tls.Certificate{serverCert}
	go func() {
		if err := hs.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic(err)
		}
	}()
	return &stub{url: "https://" + ln.Addr().String(), roots: pool, client: clientCert, srv: hs}, nil
}

func (s *stub) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

func oidUint(o []int) []uint64 {
	out := make([]uint64, len(o))
	for i, v := range o {
		out[i] = uint64(v)
	}
	return out
}
