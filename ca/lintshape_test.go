package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

// assertShapeEqualsFull lints der through l (which caches its shape on first sight) and checks, lint by lint,
// that the registry cached for its shape gives the whole registry's result: the same status and details for
// every lint it runs, and NA in the whole run for every lint it leaves out. It also checks that the shape
// decides CheckApplies: the lints applying to der are exactly the cached ones. It returns whether der's shape
// was already cached.
func assertShapeEqualsFull(t testing.TB, l *linter, der []byte) bool {
	t.Helper()
	zc, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("zcrypto: %v", err)
	}
	key := lintShape(zc)
	l.mu.RLock()
	_, hit := l.shapes[key]
	l.mu.RUnlock()
	full := zlint.LintCertificateEx(zc, l.full)
	wantErr := lintResult(l.full, full)
	gotErr := l.lint(der)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("linter: %v\nwhole registry: %v", gotErr, wantErr)
	}
	l.mu.RLock()
	reg := l.shapes[key]
	l.mu.RUnlock()
	if reg == nil {
		l.mu.Lock()
		full := len(l.shapes) >= maxLintShapes
		if full { // the fuzzer makes shapes by the thousand: start the cache afresh and learn this one
			l.shapes = map[string]lint.Registry{}
		}
		l.mu.Unlock()
		if !full {
			t.Fatal("shape not cached after a full run")
		}
		return assertShapeEqualsFull(t, l, der)
	}
	filtered := zlint.LintCertificateEx(zc, reg)
	for name, fr := range full.Results {
		r := filtered.Results[name]
		if r == nil {
			if fr.Status != lint.NA {
				t.Fatalf("%s left out of the shape's registry but answers %v (%s) in the whole run", name, fr.Status, fr.Details)
			}
			continue
		}
		if r.Status != fr.Status || sameWords(r.Details) != sameWords(fr.Details) {
			t.Fatalf("%s: filtered %v %q, whole %v %q", name, r.Status, r.Details, fr.Status, fr.Details)
		}
	}
	for name := range filtered.Results {
		if full.Results[name] == nil {
			t.Fatalf("%s runs filtered but not in the whole registry", name)
		}
	}
	got := applying(l.full, zc)
	want := reg.Names()
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("lints applying differ within one shape:\n this certificate: %v\n cached: %v", got, want)
	}
	return hit
}

// sameWords is a text's words sorted: some lints list what they found in a Go map's order (e.g.
// e_key_usage_and_extended_key_usage_inconsistent its key usages), which differs from run to run.
func sameWords(s string) string {
	w := strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(s))
	sort.Strings(w)
	return strings.Join(w, " ")
}

func rsaKey(t testing.TB, bits int) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var testSubjectKeys = sync.OnceValue(func() map[string]crypto.Signer {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p256k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	r2, _ := rsa.GenerateKey(rand.Reader, 2048)
	r3, _ := rsa.GenerateKey(rand.Reader, 3072)
	return map[string]crypto.Signer{"p256": p256k, "p384": p384, "rsa2048": r2, "rsa3072": r3, "ed25519": ed}
})

// lintCopyFor builds, through the CA's own TBS path, the lint copy of the certificate req would get at now.
func lintCopyFor(t testing.TB, c *CA, req Request, now time.Time) ([]byte, error) {
	r, err := c.normalize(req)
	if err != nil {
		return nil, err
	}
	if err := CheckKey(r.CSR.PublicKey, nil); err != nil {
		return nil, err
	}
	serial, _ := c.randomSerial()
	tmpl, err := c.template(r, serial, now)
	if err != nil {
		return nil, err
	}
	tbs, err := c.buildTBS(tmpl, r.CSR.PublicKey)
	if err != nil {
		return nil, err
	}
	return c.lintCopy(tbs)
}

// TestLintShapeEqualsFullRun: for every profile, every subject key type the profile allows, issuers with P-256
// and RSA keys, and subjects, names and issuance times varied within a shape and across shapes, linting with
// the registry cached for the certificate's shape gives, lint by lint, the result of the whole registry.
func TestLintShapeEqualsFullRun(t *testing.T) {
	keysBy := testSubjectKeys()
	names := []string{"Salamat Insurance API", "Imam Hospital HIS", "Dr Sara Ahmadi", "x", "Ab 1.0.0.127.in-addr.arpa", "zz.onion", "Über Klinik", strings.Repeat("n", 64)}
	dns := [][]string{{"hix.example.ir"}, {"a.example.ir", "b.example.ir"}, {"*.example.ir"}, {"hix.moh.internal"}, {"1.0.0.127.in-addr.arpa"}, {"HIX.EXAMPLE.IR"}, {"x.onion"}, {"facebookcorewwwi.onion"}, {"under_score.example.ir"}, {"localhost"}}
	times := []time.Time{testNow, testNow.Add(3 * time.Hour), testNow.Add(23*time.Hour + 59*time.Minute), testNow.AddDate(0, 0, 1), testNow.AddDate(2, 0, 0), time.Date(2049, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(2050, 1, 2, 0, 0, 0, 0, time.UTC)}
	issuers := map[string]crypto.Signer{"p256": p256(t), "rsa2048": rsaKey(t, 2048)}
	var hits, checked int
	for iname, ik := range issuers {
		h := newHierarchy(t, elliptic.P256())
		inter, err := SignIntermediate(h.root, h.rootKey, ik.Public(), DevIntermediateName, testNow.AddDate(-1, 0, 0), 40*365*day)
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(&Issuer{Cert: inter, Signer: ik, Chain: []*x509.Certificate{inter, h.root}}, newMemStore(), DefaultConfig(), Options{Now: func() time.Time { return testNow }})
		if err != nil {
			t.Fatal(err)
		}
		for profile, base := range validRequests(t) {
			l, err := c.registry(profile)
			if err != nil {
				t.Fatal(err)
			}
			for kname, k := range keysBy {
				req := base
				req.CSR = csrFor(t, k)
				for i, now := range times {
					for j, n := range names {
						r := req
						if profile != ProfileTLSServer && profile != ProfileFacilityAdapter {
							r.CommonName = n
						}
						if profile == ProfileTLSServer {
							r.DNSNames = dns[(i+j)%len(dns)]
							if j%2 == 1 {
								r.IPs = nil
							}
						}
						if !r.ValidUntil.IsZero() {
							r.ValidUntil = now.Add(time.Duration(100+j) * day)
						}
						der, err := lintCopyFor(t, c, r, now)
						if err != nil {
							if errors.Is(err, ErrBadRequest) || errors.Is(err, ErrWeakKey) || errors.Is(err, ErrNotEligible) {
								continue // not a certificate the CA makes (e.g. a key type the profile refuses)
							}
							t.Fatalf("%s/%s/%s: %v", iname, profile, kname, err)
						}
						if assertShapeEqualsFull(t, l, der) {
							hits++
						}
						checked++
					}
				}
			}
		}
	}
	if hits == 0 || hits == checked {
		t.Fatalf("%d certificates, %d of a cached shape: the test did not exercise both paths", checked, hits)
	}
	t.Logf("%d certificates, %d linted with a cached shape", checked, hits)
}

// TestLintShapeRefusesCachedShape: a profile whose shape is cached still refuses a certificate of that shape
// which a lint finds an error in, and stores nothing. As in TestPipelineLintRefuses, the tls-server registry is
// the one without Mohr's waivers: hix.example.ir passes it (and caches the shape), hix.moh.internal (same shape:
// one DNS name) does not.
func TestLintShapeRefusesCachedShape(t *testing.T) {
	c, st, _ := newTestCA(t)
	strict, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: lint.SourceList{lint.RFC5280, lint.CABFBaselineRequirements}})
	if err != nil {
		t.Fatal(err)
	}
	l := newLinter(strict)
	c.regMu.Lock()
	c.regs[ProfileTLSServer] = l
	c.regMu.Unlock()
	req := validRequests(t)[ProfileTLSServer]
	req.DNSNames, req.IPs = []string{"hix.example.ir"}, nil
	for i := 0; i < 2; i++ {
		if _, err := c.Issue(context.Background(), req); err != nil {
			t.Fatalf("public name: %v", err)
		}
	}
	if l.fullRuns.Load() != 1 || l.filteredRuns.Load() != 1 {
		t.Fatalf("full runs %d, filtered %d: want the second certificate linted by its cached shape", l.fullRuns.Load(), l.filteredRuns.Load())
	}
	before, events := st.snapshot()
	req.DNSNames = []string{"hix.moh.internal"}
	_, err = c.Issue(context.Background(), req)
	if !errors.Is(err, ErrLint) || !strings.Contains(err.Error(), "e_dnsname_not_valid_tld") {
		t.Fatalf("Issue = %v, want ErrLint naming e_dnsname_not_valid_tld", err)
	}
	if l.filteredRuns.Load() != 2 {
		t.Fatalf("the refused certificate was not linted by the cached shape (filtered runs %d)", l.filteredRuns.Load())
	}
	if after, events2 := st.snapshot(); len(after) != len(before) || events2 != events {
		t.Fatal("a refused certificate left an intent or an audit event")
	}
}

// reviewedLints is the SHA-256 of the sorted names of the lints of the tls-server registry (the largest; every
// other profile's is a subset) whose CheckApplies functions lintShape was written from (zlint v3.7.3). A zlint
// upgrade that adds a lint changes it: read the new lints' CheckApplies, extend lintShape if they read
// something it does not hold, and update the hash.
const reviewedLints = "b349bd4c83fadfe9dce55a51dc2f211056654029de32b8c9996b44099d8c99be"

func TestLintShapeReviewed(t *testing.T) {
	reg, err := lintRegistry(ProfileTLSServer)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range reg.CertificateLints().Lints() {
		names = append(names, l.Name)
	}
	sort.Strings(names)
	sum := sha256.Sum256([]byte(strings.Join(names, "\n")))
	if got := hex.EncodeToString(sum[:]); got != reviewedLints {
		t.Fatalf("the zlint registry changed (%d certificate lints, hash %s): review lintShape against the new lints' CheckApplies (lintshape.go)", len(names), got)
	}
	for p := range validRequests(t) {
		r, err := lintRegistry(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range r.CertificateLints().Lints() {
			if reg.CertificateLints().ByName(l.Name) == nil {
				t.Fatalf("profile %s runs %s, which the tls-server registry does not hold", p, l.Name)
			}
		}
	}
}

// fuzzKeys are made once per process: generating keys per input would leave the fuzzer little time.
var fuzzKeys = sync.OnceValue(func() []crypto.Signer {
	k := testSubjectKeys()
	return []crypto.Signer{k["p256"], k["p384"], k["rsa2048"], k["ed25519"]}
})

var fuzzLinters = sync.OnceValue(func() []*linter {
	var ls []*linter
	for _, p := range []string{ProfileTLSServer, ProfileOrganisationAuth} {
		r, err := lintRegistry(p)
		if err != nil {
			panic(err)
		}
		ls = append(ls, newLinter(r))
	}
	return ls
})

// FuzzLintShape builds certificates far outside Mohr's profiles (CA or not, any key usage, EKU, policies,
// subject attributes, names, dates) and checks for each that the registry cached for its shape, learnt from
// whichever earlier certificate had that shape, gives the whole registry's result lint by lint.
func FuzzLintShape(f *testing.F) {
	f.Add(uint8(0), uint16(0), "Salamat", "hix.example.ir", "", int64(0), uint16(365), uint8(1))
	f.Add(uint8(1), uint16(0xffff), "x.onion", "1.0.0.127.in-addr.arpa", "a@b.ir", int64(86400*365*30), uint16(5), uint8(2))
	f.Add(uint8(2), uint16(0x0101), "", "*.example.ir", "PSD-IR-1", int64(-86400*365*12), uint16(30), uint8(3))
	f.Add(uint8(3), uint16(0x8000), "CA", "localhost", "", int64(3600), uint16(9), uint8(0xff))
	f.Add(uint8(0), uint16(0x0200), "facebookcorewwwi.onion", "facebookcorewwwi.onion", "", int64(0), uint16(90), uint8(0x09))
	f.Add(uint8(0), uint16(0x0200), "x.onion", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzab.onion", "", int64(0), uint16(90), uint8(0x09))
	f.Fuzz(func(t *testing.T, keyKind uint8, bits uint16, cn, dns, extra string, shift int64, days uint16, kind uint8) {
		k := fuzzKeys()[int(keyKind)%len(fuzzKeys())]
		now := testNow.Add(time.Duration(shift%(86400*365*40)) * time.Second)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(bits) + 1),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now,
			NotAfter:     now.Add(time.Duration(days%4000+1) * 24 * time.Hour),
			KeyUsage:     x509.KeyUsage(bits & 0x1ff),
		}
		if bits&0x200 != 0 {
			tmpl.BasicConstraintsValid, tmpl.IsCA = true, bits&0x400 != 0
		}
		if dns != "" && bits&0x800 == 0 {
			tmpl.DNSNames = []string{dns}
		}
		if bits&0x1000 != 0 {
			tmpl.IPAddresses = []net.IP{net.ParseIP("10.1.2.3")}
		}
		if bits&0x2000 != 0 && extra != "" {
			tmpl.EmailAddresses = []string{extra}
		}
		if bits&0x4000 != 0 {
			tmpl.Subject.Organization = []string{extra}
			tmpl.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{2, 5, 4, 97}, Value: extra}} // organizationIdentifier
		}
		if bits&0x8000 != 0 {
			tmpl.Subject.Country, tmpl.Subject.Locality = []string{"IR"}, []string{"Tehran"}
		}
		switch kind % 5 {
		case 1:
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		case 2:
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection}
		case 3:
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
		case 4:
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}
		}
		if kind&0x08 != 0 {
			tmpl.PolicyIdentifiers = []asn1.ObjectIdentifier{{2, 23, 140, 1, 2, 2}}
		}
		if kind&0x04 != 0 {
			tmpl.PolicyIdentifiers = append(tmpl.PolicyIdentifiers, asn1.ObjectIdentifier{2, 23, 140, 1, 1}) // EV (onion lints)
		}
		if kind&0x10 != 0 {
			tmpl.OCSPServer, tmpl.IssuingCertificateURL = []string{"http://ocsp.example.ir"}, []string{"http://ca.example.ir/ca.crt"}
		}
		if kind&0x20 != 0 {
			tmpl.CRLDistributionPoints = []string{"http://ca.example.ir/" + cn + ".crl"}
		}
		if kind&0x40 != 0 {
			tmpl.PermittedDNSDomains = []string{"example.ir"}
		}
		issuer := tmpl
		signer := k
		if kind&0x80 == 0 {
			issuer, signer = &x509.Certificate{Subject: pkix.Name{CommonName: "Fuzz Issuing CA"}, SubjectKeyId: []byte{1, 2, 3}}, fuzzKeys()[0]
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, k.Public(), signer)
		if err != nil {
			return // not a certificate crypto/x509 makes
		}
		if _, err := zx509.ParseCertificate(der); err != nil {
			return
		}
		for _, l := range fuzzLinters() {
			assertShapeEqualsFull(t, l, der)
		}
	})
}
