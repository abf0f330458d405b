package store_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/store"
)

// BenchmarkPipeline compares issuance through the whole pipeline (validation, serial, zlint with a throwaway key,
// intent + audit, signing, TBS check, record + audit) on each store with the bare x509.CreateCertificate it
// wraps, same CA key (software P-256) and same request, in the same run.
func BenchmarkPipeline(b *testing.B) {
	now := time.Now()
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root, err := ca.NewRoot(rk, ca.DevRootName, now, 10*365*24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	ik, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	inter, err := ca.SignIntermediate(root, rk, ik.Public(), ca.DevIntermediateName, now, 5*365*24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	is := &ca.Issuer{Cert: inter, Signer: ik, Chain: []*x509.Certificate{inter, root}}
	lk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, lk)
	csr, _ := x509.ParseCertificateRequest(csrDER)
	req := ca.Request{Profile: ca.ProfileFacilityAdapter, CSR: csr, CommonName: "Imam Hospital", SIAMID: "SIAM-10001",
		LicenceNumber: "LIC-1", ValidUntil: now.Add(300 * 24 * time.Hour), Actor: "bench"}

	b.Run("bare-CreateCertificate", func(b *testing.B) {
		tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "Imam Hospital", SerialNumber: "SIAM-10001"},
			NotBefore: now, NotAfter: now.Add(300 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var sb [16]byte
			rand.Read(sb[:])
			sb[0] &= 0x7f
			tmpl.SerialNumber = new(big.Int).SetBytes(sb[:])
			if _, err := x509.CreateCertificate(rand.Reader, tmpl, inter, lk.Public(), ik); err != nil {
				b.Fatal(err)
			}
		}
	})
	run := func(b *testing.B, st ca.Store) {
		c, err := ca.New(is, st, ca.DefaultConfig(), ca.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := c.Issue(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("pipeline-sqlite", func(b *testing.B) { run(b, store.OpenTestSQLite(b)) })
	b.Run("pipeline-postgres", func(b *testing.B) { run(b, store.OpenTestPostgres(b)) })
}
