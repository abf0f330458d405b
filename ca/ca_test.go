package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/hixext"
)

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

type testHierarchy struct {
	root    *x509.Certificate
	rootKey crypto.Signer
	issuer  *Issuer
}

func newHierarchy(t testing.TB, curve elliptic.Curve) *testHierarchy {
	t.Helper()
	rk, _ := ecdsa.GenerateKey(curve, rand.Reader)
	root, err := NewRoot(rk, DevRootName, testNow, 20*365*day)
	if err != nil {
		t.Fatal(err)
	}
	ik, _ := ecdsa.GenerateKey(curve, rand.Reader)
	inter, err := SignIntermediate(root, rk, ik.Public(), DevIntermediateName, testNow, 10*365*day)
	if err != nil {
		t.Fatal(err)
	}
	return &testHierarchy{root: root, rootKey: rk, issuer: &Issuer{Cert: inter, Signer: ik, Chain: []*x509.Certificate{inter, root}}}
}

func newTestCA(t testing.TB) (*CA, *memStore, *testHierarchy) {
	t.Helper()
	h := newHierarchy(t, elliptic.P256())
	st := newMemStore()
	c, err := New(h.issuer, st, DefaultConfig(), Options{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return c, st, h
}

func csrFor(t testing.TB, key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored by the CA"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func p256(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// validRequests has one good request per profile.
func validRequests(t testing.TB) map[string]Request {
	return map[string]Request{
		ProfileFacilityAdapter:  {Profile: ProfileFacilityAdapter, CSR: csrFor(t, p256(t)), CommonName: "Imam Hospital HIS", SIAMID: "SIAM-10001", LicenceNumber: "LIC/1402/77", SystemCertID: "SYS-42", ValidUntil: testNow.Add(100 * day)},
		ProfileOrganisationSeal: {Profile: ProfileOrganisationSeal, CSR: csrFor(t, p256(t)), CommonName: "Salamat Insurance", Organization: "Salamat", Role: "insurer"},
		ProfilePhysicianSigning: {Profile: ProfilePhysicianSigning, CSR: csrFor(t, p256(t)), CommonName: "Dr Sara Ahmadi", NationalCode: "0499370899", CouncilNumber: "123456", Profession: "General Practitioner", ValidUntil: testNow.Add(400 * day)},
		ProfilePhysicianAuth:    {Profile: ProfilePhysicianAuth, CSR: csrFor(t, p256(t)), CommonName: "Dr Sara Ahmadi", NationalCode: "0499370899", CouncilNumber: "123456"},
		ProfileOCSPResponder:    {Profile: ProfileOCSPResponder, CSR: csrFor(t, p256(t)), CommonName: "Mohr OCSP Responder"},
		ProfileTSA:              {Profile: ProfileTSA, CSR: csrFor(t, p256(t)), CommonName: "Mohr TSA"},
		ProfileTLSServer:        {Profile: ProfileTLSServer, CSR: csrFor(t, p256(t)), DNSNames: []string{"hix.example.ir"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}},
		ProfileOperator:         {Profile: ProfileOperator, CSR: csrFor(t, p256(t)), CommonName: "Operator One", Role: "operator"},
		ProfileOrganisationAuth: {Profile: ProfileOrganisationAuth, CSR: csrFor(t, p256(t)), CommonName: "Salamat Insurance API", Role: "insurer"},
	}
}

func writePEM(t testing.TB, path string, certs ...*x509.Certificate) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestIssueEveryProfile(t *testing.T) {
	c, st, h := newTestCA(t)
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "root.pem"), h.root)
	writePEM(t, filepath.Join(dir, "intermediate.pem"), h.issuer.Cert)
	for profile, req := range validRequests(t) {
		t.Run(profile, func(t *testing.T) {
			cert, err := c.Issue(context.Background(), req)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			rec, err := st.Certificate(context.Background(), SerialHex(cert.SerialNumber))
			if err != nil || rec.Status != StatusIssued || string(rec.DER) != string(cert.Raw) {
				t.Fatalf("store record = %+v, %v", rec, err)
			}
			if cert.SerialNumber.BitLen() <= 64 || cert.SerialNumber.Sign() <= 0 {
				t.Errorf("serial %x has too little entropy", cert.SerialNumber)
			}
			// Chain check with Go and with OpenSSL.
			roots := x509.NewCertPool()
			roots.AddCert(h.root)
			inters := x509.NewCertPool()
			inters.AddCert(h.issuer.Cert)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Errorf("x509 Verify: %v", err)
			}
			leaf := filepath.Join(dir, profile+".pem")
			writePEM(t, leaf, cert)
			out, err := exec.Command("openssl", "verify", "-attime", fmt.Sprint(testNow.Unix()), "-CAfile", filepath.Join(dir, "root.pem"),
				"-untrusted", filepath.Join(dir, "intermediate.pem"), leaf).CombinedOutput()
			if err != nil {
				t.Errorf("openssl verify: %v\n%s", err, out)
			}
			// Profile-specific content.
			checkProfile(t, c, req, cert)
		})
	}
}

func checkProfile(t *testing.T, c *CA, req Request, cert *x509.Certificate) {
	t.Helper()
	if len(cert.CRLDistributionPoints) != 1 || cert.CRLDistributionPoints[0] != CRLURL(c.cfg.CRLBaseURL, ShardFor(cert.SerialNumber, c.cfg.CRLShards)) {
		t.Errorf("CRL DP = %v", cert.CRLDistributionPoints)
	}
	if cert.NotAfter.After(c.issuer.Cert.NotAfter) {
		t.Error("certificate outlives its issuer")
	}
	if !req.ValidUntil.IsZero() && cert.NotAfter.After(req.ValidUntil) {
		t.Errorf("NotAfter %v beyond standing %v", cert.NotAfter, req.ValidUntil)
	}
	switch req.Profile {
	case ProfileFacilityAdapter:
		f, err := hixext.ParseFacility(cert)
		if err != nil || f.SIAMID != "SIAM-10001" || f.LicenceNumber != "LIC/1402/77" || cert.Subject.SerialNumber != "SIAM-10001" {
			t.Errorf("facility binding: %+v %v %q", f, err, cert.Subject.SerialNumber)
		}
		if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
			t.Errorf("EKU %v", cert.ExtKeyUsage)
		}
	case ProfilePhysicianSigning:
		if cert.KeyUsage != x509.KeyUsageContentCommitment {
			t.Errorf("key usage %b, want contentCommitment only", cert.KeyUsage)
		}
		if cert.Subject.SerialNumber != "IDCIR-0499370899" {
			t.Errorf("serialNumber %q", cert.Subject.SerialNumber)
		}
		a, err := hixext.ParseAdmission(cert)
		if err != nil || a.RegistrationNumber != "123456" || a.Profession != "General Practitioner" {
			t.Errorf("admission %+v %v", a, err)
		}
	case ProfileTSA:
		var found bool
		for _, e := range cert.Extensions {
			if e.Id.Equal(oidExtKeyUsage) {
				found = e.Critical
			}
		}
		if !found {
			t.Error("TSA EKU not critical")
		}
	case ProfileOCSPResponder:
		var found bool
		for _, e := range cert.Extensions {
			found = found || e.Id.Equal(oidOCSPNoCheck)
		}
		if !found {
			t.Error("no ocsp-nocheck")
		}
	}
}

type rocaKey struct{ *rsa.PublicKey }

// rocaModulus builds a 2048-bit modulus with the ROCA fingerprint: N = k*M + (65537^c mod M), so N mod every
// small prime of M lies in the subgroup generated by 65537 (Nemec et al., CCS 2017).
func rocaModulus(t *testing.T) *big.Int {
	m := big.NewInt(1)
	for p, n := int64(2), 0; n < 126; p++ {
		if big.NewInt(p).ProbablyPrime(1) {
			m.Mul(m, big.NewInt(p))
			n++
		}
	}
	g := new(big.Int).Exp(big.NewInt(65537), big.NewInt(12345), m)
	for {
		k, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 2048-uint(m.BitLen())))
		n := new(big.Int).Add(new(big.Int).Mul(k, m), g)
		if n.BitLen() == 2048 && n.Bit(0) == 1 && !hasSmallFactor(n) {
			return n
		}
	}
}

func TestCheckKey(t *testing.T) {
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	smallFactor := &rsa.PublicKey{N: new(big.Int).Mul(big.NewInt(997), new(big.Int).Lsh(big.NewInt(1), 2040)), E: 65537}
	badExp := &rsa.PublicKey{N: rsa2048.N, E: 3}
	roca := &rsa.PublicKey{N: rocaModulus(t), E: 65537}
	spki, _ := x509.MarshalPKIXPublicKey(p384.Public())
	blocked := map[[32]byte]bool{sha256Array(spki): true}
	tests := []struct {
		name    string
		pub     any
		blocked map[[32]byte]bool
		err     error
	}{
		{"rsa-2048", rsa2048.Public(), nil, nil},
		{"p-384", p384.Public(), nil, nil},
		{"rsa-1024", rsa1024.Public(), nil, ErrWeakKey},
		{"p-224", p224.Public(), nil, ErrWeakKey},
		{"ed25519", edPub, nil, ErrWeakKey},
		{"small factor", smallFactor, nil, ErrWeakKey},
		{"exponent 3", badExp, nil, ErrWeakKey},
		{"roca", roca, nil, ErrWeakKey},
		{"blocked", p384.Public(), blocked, ErrWeakKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckKey(tt.pub, tt.blocked); !errors.Is(err, tt.err) {
				t.Fatalf("CheckKey = %v, want %v", err, tt.err)
			}
		})
	}
}

func sha256Array(b []byte) [32]byte { var a [32]byte; copy(a[:], sha256sum(b)); return a }

// TestBadRequestsChangeNothing checks that every refused request leaves the store and the audit log as they were.
func TestBadRequestsChangeNothing(t *testing.T) {
	c, st, _ := newTestCA(t)
	good := validRequests(t)
	mod := func(p string, f func(*Request)) Request { r := good[p]; f(&r); return r }
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	tests := []struct {
		name string
		req  Request
		err  error
	}{
		{"unknown profile", mod(ProfileTSA, func(r *Request) { r.Profile = "root" }), ErrBadRequest},
		{"no csr", mod(ProfileTSA, func(r *Request) { r.CSR = nil }), ErrBadRequest},
		{"bad national code", mod(ProfilePhysicianSigning, func(r *Request) { r.NationalCode = "0499370898" }), ErrBadRequest},
		{"repeated national code", mod(ProfilePhysicianSigning, func(r *Request) { r.NationalCode = "2222222222" }), ErrBadRequest},
		{"bad council number", mod(ProfilePhysicianSigning, func(r *Request) { r.CouncilNumber = "12-34" }), ErrBadRequest},
		{"no physician name", mod(ProfilePhysicianAuth, func(r *Request) { r.CommonName = "" }), ErrBadRequest},
		{"bad SIAM", mod(ProfileFacilityAdapter, func(r *Request) { r.SIAMID = "x" }), ErrBadRequest},
		{"no licence", mod(ProfileFacilityAdapter, func(r *Request) { r.LicenceNumber = "" }), ErrBadRequest},
		{"standing over", mod(ProfileFacilityAdapter, func(r *Request) { r.ValidUntil = testNow.Add(-day) }), ErrNotEligible},
		{"tls without names", mod(ProfileTLSServer, func(r *Request) { r.DNSNames, r.IPs = nil, nil }), ErrBadRequest},
		{"tls bad name", mod(ProfileTLSServer, func(r *Request) { r.DNSNames = []string{"bad_name.example"} }), ErrBadRequest},
		{"dns in physician", mod(ProfilePhysicianAuth, func(r *Request) { r.DNSNames = []string{"a.example"} }), ErrBadRequest},
		{"operator without role", mod(ProfileOperator, func(r *Request) { r.Role = "" }), ErrBadRequest},
		{"operator as insurer", mod(ProfileOperator, func(r *Request) { r.Role = "insurer" }), ErrBadRequest},
		{"role on adapter", mod(ProfileFacilityAdapter, func(r *Request) { r.Role = "operator" }), ErrBadRequest},
		{"newline in name", mod(ProfileTSA, func(r *Request) { r.CommonName = "a\nb" }), ErrBadRequest},
		{"remote signing on an auth certificate", mod(ProfilePhysicianAuth, func(r *Request) { r.RemoteSigning = true }), ErrBadRequest},
		{"remote signing on a seal", mod(ProfileOrganisationSeal, func(r *Request) { r.RemoteSigning = true }), ErrBadRequest},
		{"weak key", mod(ProfileTSA, func(r *Request) { r.CSR = csrFor(t, rsa1024) }), ErrWeakKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, nev := st.snapshot()
			_, err := c.Issue(context.Background(), tt.req)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Issue = %v, want %v", err, tt.err)
			}
			after, nev2 := st.snapshot()
			if len(after) != len(before) || nev2 != nev {
				t.Fatalf("store changed: %d -> %d records, %d -> %d events", len(before), len(after), nev, nev2)
			}
		})
	}
}

func TestParseCSRRejects(t *testing.T) {
	good, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, p256(t))
	tampered := append([]byte{}, good...)
	tampered[len(tampered)-5] ^= 0xff
	tests := []struct {
		name string
		in   []byte
		err  error
	}{
		{"empty", nil, ErrBadCSR},
		{"garbage", []byte("hello"), ErrBadCSR},
		{"cert PEM", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good}), ErrBadCSR},
		{"oversized", make([]byte, MaxCSRSize+1), ErrBadCSR},
		{"bad signature", tampered, ErrCSRSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseCSR(tt.in); !errors.Is(err, tt.err) {
				t.Fatalf("ParseCSR = %v, want %v", err, tt.err)
			}
		})
	}
	if _, err := ParseCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: good})); err != nil {
		t.Fatalf("good PEM CSR: %v", err)
	}
}

// brokenSigner signs with a different key than its public half says, as a faulty HSM might.
type brokenSigner struct {
	crypto.Signer
	other crypto.Signer
}

func (b brokenSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return b.other.Sign(r, d, o)
}

func TestSigningFailureClosesIntent(t *testing.T) {
	c, st, _ := newTestCA(t)
	c.issuer = &Issuer{Cert: c.issuer.Cert, Signer: brokenSigner{c.issuer.Signer, p256(t)}, Chain: c.issuer.Chain}
	_, err := c.Issue(context.Background(), validRequests(t)[ProfileTSA])
	if err == nil {
		t.Fatal("a bad signature was accepted")
	}
	recs, _ := st.Certificates(context.Background(), CertFilter{})
	if len(recs) != 1 || recs[0].Status != StatusFailed || recs[0].DER != nil {
		t.Fatalf("want one failed record without DER, got %+v", recs)
	}
}

func TestStoreFailureReturnsNoCertificate(t *testing.T) {
	c, st, _ := newTestCA(t)
	st.failOn = "MarkIssued"
	cert, err := c.Issue(context.Background(), validRequests(t)[ProfileTSA])
	if err == nil || cert != nil {
		t.Fatal("certificate handed out although it was not recorded")
	}
	recs, _ := st.Certificates(context.Background(), CertFilter{})
	if len(recs) != 1 || recs[0].Status != StatusPending {
		t.Fatalf("the intent must stay pending for recovery, got %+v", recs)
	}
}

type fakeRA struct {
	until time.Time
	err   error
}

func (f fakeRA) FacilityStanding(context.Context, string, string, time.Time) (time.Time, error) {
	return f.until, f.err
}
func (f fakeRA) PhysicianStanding(context.Context, string, string, time.Time) (time.Time, error) {
	return f.until, f.err
}

func TestRAStandingCapsLifetime(t *testing.T) {
	h := newHierarchy(t, elliptic.P256())
	until := testNow.Add(30 * day)
	c, err := New(h.issuer, newMemStore(), DefaultConfig(), Options{Now: func() time.Time { return testNow }, RA: fakeRA{until: until}})
	if err != nil {
		t.Fatal(err)
	}
	req := validRequests(t)[ProfilePhysicianSigning]
	req.ValidUntil = time.Time{}
	cert, err := c.Issue(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(until) {
		t.Fatalf("NotAfter %v, want the council registration's end %v", cert.NotAfter, until)
	}
	c.opt.RA = fakeRA{err: errors.New("registration suspended")}
	if _, err := c.Issue(context.Background(), req); !errors.Is(err, ErrNotEligible) {
		t.Fatalf("suspended physician: %v, want ErrNotEligible", err)
	}
}

func TestP384AndRSAIssuers(t *testing.T) {
	h := newHierarchy(t, elliptic.P384())
	c, err := New(h.issuer, newMemStore(), DefaultConfig(), Options{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	req := validRequests(t)[ProfileOrganisationSeal]
	req.CSR = csrFor(t, rsaKey)
	if _, err := c.Issue(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

func TestCheckImport(t *testing.T) {
	h := newHierarchy(t, elliptic.P256())
	if err := CheckImport(h.issuer.Cert, h.root, h.issuer.Signer, testNow); err != nil {
		t.Fatal(err)
	}
	if err := CheckImport(h.issuer.Cert, h.root, p256(t), testNow); !errors.Is(err, ErrImport) {
		t.Fatalf("wrong key: %v", err)
	}
	other := newHierarchy(t, elliptic.P256())
	if err := CheckImport(h.issuer.Cert, other.root, h.issuer.Signer, testNow); !errors.Is(err, ErrImport) {
		t.Fatalf("wrong root: %v", err)
	}
}

func FuzzParseCSR(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, k)
	f.Add(good)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: good}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := ParseCSR(b)
		if err != nil {
			return
		}
		// Property: anything accepted has a verifying self-signature over its own TBS, and re-parses the same.
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted CSR whose signature does not verify: %v", err)
		}
		again, err := x509.ParseCertificateRequest(csr.Raw)
		if err != nil || string(again.RawTBSCertificateRequest) != string(csr.RawTBSCertificateRequest) {
			t.Fatalf("re-parse differs: %v", err)
		}
	})
}

func BenchmarkIssueBareCreateCertificate(b *testing.B) {
	c, _, _ := newTestCA(b)
	req := validRequests(b)[ProfileFacilityAdapter]
	r, _ := c.normalize(req)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		serial, _ := c.randomSerial()
		tmpl, _ := c.template(r, serial, testNow)
		if _, err := x509.CreateCertificate(rand.Reader, tmpl, c.issuer.Cert, r.CSR.PublicKey, c.issuer.Signer); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssuePipelineMemStore is the pipeline without a database: organisation-auth certificates, each for
// another subject (as scripts/bench-issue.sh asks; one subject issued b.N times would measure the key-purpose
// scan of its earlier certificates, which grows with b.N).
func BenchmarkIssuePipelineMemStore(b *testing.B) {
	c, _, _ := newTestCA(b)
	req := validRequests(b)[ProfileOrganisationAuth]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req.CommonName = fmt.Sprintf("Bench Pharmacy %d", i)
		if _, err := c.Issue(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLintRefuses checks that zlint really runs: a certificate with an empty subject and no SAN is an
// RFC 5280 §4.1.2.6 error.
func TestLintRefuses(t *testing.T) {
	k := p256(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1 << 62), NotBefore: testNow, NotAfter: testNow.Add(day), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := lintRegistry(ProfileTSA)
	if err != nil {
		t.Fatal(err)
	}
	if err := lintDER(reg, der); !errors.Is(err, ErrLint) {
		t.Fatalf("lintDER = %v, want ErrLint", err)
	}
}

func TestSuspend(t *testing.T) {
	c, st, _ := newTestCA(t)
	c.Suspend("intermediate revoked")
	_, n := st.snapshot()
	if _, err := c.Issue(context.Background(), validRequests(t)[ProfileTSA]); !errors.Is(err, ErrSuspended) {
		t.Fatalf("Issue after Suspend = %v", err)
	}
	if _, n2 := st.snapshot(); n2 != n {
		t.Fatal("a suspended CA wrote to the store")
	}
}

// TestPoliciesPresent guards against CreateCertificate silently dropping policies (Go 1.24+ writes Policies,
// not PolicyIdentifiers): every profile carries its configured policy, and role certificates their role.
func TestPoliciesPresent(t *testing.T) {
	c, _, _ := newTestCA(t)
	for profile, req := range validRequests(t) {
		cert, err := c.Issue(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		want := c.cfg.Profiles[profile].Policies[0]
		found, role := false, req.Role == ""
		for _, p := range cert.Policies {
			found = found || p.String() == want
			role = role || p.String() == hixext.RoleOIDs[req.Role].String()
		}
		if !found || !role {
			t.Errorf("%s: policies %v, want %s and role %q", profile, cert.Policies, want, req.Role)
		}
	}
}
