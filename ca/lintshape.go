package ca

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
	"github.com/zmap/zlint/v3/util"
)

// Linting only the lints that can apply.
//
// Of a profile's registry (147 lints for organisation-auth, 310 for tls-server) only about a third apply to a
// given certificate; the others answer NA from their CheckApplies, but zlint still builds, configures and asks
// each of them, and records a result, for every certificate. Whether a lint applies depends on the
// certificate, so the set is not written down anywhere: a linter learns it per *shape* of the certificate,
// everything the CheckApplies functions of zlint v3.7.3's RFC 5280/5480/5891/3279/8813, ETSI and CA/B Forum BR
// lints read (lintShape below, written from a reading of every one of them; TestLintShapeReviewed pins the
// reviewed registry). For a shape it has not seen, the linter runs the whole registry, which is what decides
// issuance, and records the names whose CheckApplies returned true (asked directly, not inferred from the
// results: a lint's Execute may itself answer NA for one certificate and Error for the next). Certificates of a
// known shape are then linted by the registry filtered to those names. Every lint left out answers NA by
// CheckApplies for any certificate of that shape, and NA never refuses, so the filtered run refuses exactly what
// the whole one refuses (TestLintShapeEqualsFullRun over every profile and issuer key type, FuzzLintShape).

// maxLintShapes bounds a linter's cache. The shape includes the validity dates' UTC days, so a profile gets a
// new shape each day: far fewer than this. Beyond it, new shapes are linted by the whole registry, uncached.
const maxLintShapes = 512

// linter lints the certificates of one profile with its registry.
type linter struct {
	full lint.Registry

	mu     sync.RWMutex
	shapes map[string]lint.Registry

	// fullRuns and filteredRuns count the certificates linted each way (tests read them).
	fullRuns, filteredRuns atomic.Int64
}

func newLinter(full lint.Registry) *linter {
	return &linter{full: full, shapes: map[string]lint.Registry{}}
}

// lint runs zlint on a certificate and returns ErrLint naming every error- or fatal-level finding.
func (l *linter) lint(der []byte) error {
	zc, err := zx509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: zcrypto cannot parse the certificate: %v", ErrLint, err)
	}
	key := lintShape(zc)
	l.mu.RLock()
	reg, ok := l.shapes[key]
	l.mu.RUnlock()
	if ok {
		l.filteredRuns.Add(1)
		return lintResult(reg, zlint.LintCertificateEx(zc, reg))
	}
	l.fullRuns.Add(1)
	res := zlint.LintCertificateEx(zc, l.full)
	if names := applying(l.full, zc); names != nil {
		if reg, err := l.full.Filter(lint.FilterOptions{IncludeNames: names}); err == nil {
			l.mu.Lock()
			if len(l.shapes) < maxLintShapes {
				l.shapes[key] = reg
			}
			l.mu.Unlock()
		}
	}
	return lintResult(l.full, res)
}

// applying returns the names of the registry's certificate lints whose CheckApplies is true for c (configured
// as zlint configures them before asking). A lint whose CheckApplies panics counts as applying. nil means none
// applies, and then nothing is cached: an empty IncludeNames would filter nothing out.
func applying(reg lint.Registry, c *zx509.Certificate) []string {
	var names []string
	cfg := reg.GetConfiguration()
	for _, l := range reg.CertificateLints().Lints() {
		inst := l.Lint()
		if err := cfg.MaybeConfigure(inst, l.Name); err != nil {
			names = append(names, l.Name) // zlint answers Fatal for it: keep it
			continue
		}
		if checkApplies(inst, c) {
			names = append(names, l.Name)
		}
	}
	return names
}

func checkApplies(inst lint.CertificateLintInterface, c *zx509.Certificate) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = true
		}
	}()
	return inst.CheckApplies(c)
}

// shapeDates are the fixed dates the CheckApplies functions compare a certificate's validity with.
var shapeDates = []time.Time{
	util.CABFBRs_1_6_9_Date, util.NoReservedIP, util.NoRSA1024RootDate, util.NoRSA1024Date,
	time.Date(2026, time.March, 15, 0, 0, 0, 0, time.UTC), // cabf_br IsShortLivedCert
}

// lintShape returns the key of c's shape: everything a CheckApplies function of the registries reads, and a
// little more. It is deliberately generous (a new shape costs one full run); what it must never do is give two
// certificates one key when some lint's CheckApplies differs between them.
func lintShape(c *zx509.Certificate) string {
	var b []byte
	sep := func() { b = append(b, '|') }
	bit := func(v bool) {
		if v {
			b = append(b, '1')
		} else {
			b = append(b, '0')
		}
	}
	num := func(n int) { b = strconv.AppendInt(b, int64(n), 10); b = append(b, ',') }
	// Version, algorithms and the key: the RSA/ECDSA/DSA lints, rsa_parsed and the algorithm encodings.
	num(c.Version)
	num(int(c.SignatureAlgorithm))
	b = append(b, c.SignatureAlgorithmOID.String()...)
	sep()
	num(int(c.PublicKeyAlgorithm))
	b = append(b, c.PublicKeyAlgorithmOID.String()...)
	sep()
	b = append(b, fmt.Sprintf("%T", c.PublicKey)...)
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		num(k.N.BitLen())
		num(k.E)
	case *ecdsa.PublicKey:
		b = append(b, k.Curve.Params().Name...)
	}
	sep()
	// CA or subscriber (IsCACert, IsRootCA, IsSubCA, IsSubscriberCert).
	bit(c.IsCA)
	bit(c.BasicConstraintsValid)
	bit(c.SelfSigned)
	num(c.MaxPathLen)
	bit(c.MaxPathLenZero)
	sep()
	// Extensions in order, with criticality and whether the value is empty (IsExtInCert, GetExtFromCert). The
	// values CheckApplies parses are kept whole: QC statements (which statements are present, PSD2, natural
	// person), certificate policies (policy OIDs, explicit texts, BR/EV/S/MIME/code-signing policies), name and
	// policy constraints, the Tor service descriptor. The profile fixes them, so they do not multiply shapes.
	for _, e := range c.Extensions {
		oid := e.Id.String()
		b = append(b, oid...)
		b = append(b, ':')
		bit(e.Critical)
		bit(len(e.Value) > 0)
		if e.Id.Equal(util.QcStateOid) || e.Id.Equal(util.CertPolicyOID) || e.Id.Equal(util.NameConstOID) ||
			e.Id.Equal(util.PolicyConstOID) || e.Id.Equal(util.BRTorServiceDescriptor) {
			b = append(b, ':')
			b = append(b, e.Value...)
		}
		b = append(b, ';')
	}
	sep()
	for _, p := range c.PolicyIdentifiers {
		b = append(b, p.String()...)
		b = append(b, ';')
	}
	for _, t := range c.ExplicitTexts {
		bit(t != nil)
	}
	sep()
	num(int(c.KeyUsage))
	bit(c.ExtKeyUsage != nil)
	for _, u := range c.ExtKeyUsage {
		num(int(u))
	}
	for _, u := range c.UnknownExtKeyUsage {
		b = append(b, u.String()...)
		b = append(b, ';')
	}
	sep()
	bit(c.IssuingCertificateURL != nil)
	bit(len(c.IssuingCertificateURL) > 0)
	bit(len(c.OCSPServer) > 0)
	bit(c.CRLDistributionPoints != nil)
	bit(len(c.CRLDistributionPoints) > 0)
	bit(len(c.SignedCertificateTimestampList) > 0) // excessively_backdated
	sep()
	// Subject: its attribute types in order (TypeInName, the len(c.Subject.X) > 0 tests), and the values
	// CheckApplies looks at: whether the common name is empty, the PSD2 organisation identifier's prefix.
	for _, n := range c.Subject.Names {
		b = append(b, n.Type.String()...)
		b = append(b, ';')
	}
	for _, n := range c.Subject.ExtraNames {
		b = append(b, n.Type.String()...)
		b = append(b, ';')
	}
	s := &c.Subject
	for _, n := range []int{len(s.Country), len(s.Organization), len(s.OrganizationalUnit), len(s.Locality),
		len(s.Province), len(s.StreetAddress), len(s.PostalCode), len(s.GivenName), len(s.Surname),
		len(s.EmailAddress), len(s.OrganizationIDs), len(s.CommonNames), len(s.SerialNumber), len(c.RawSubject)} {
		bit(n > 0)
	}
	bit(s.Country != nil)
	bit(s.CommonName != "")
	bit(len(s.OrganizationIDs) > 0 && strings.HasPrefix(s.OrganizationIDs[0], "PSD"))
	sep()
	// Issuer: one per CA, kept whole (Issuer.Country).
	b = append(b, c.RawIssuer...)
	sep()
	// Names: whether there are DNS names and e-mail addresses (DNSNamesExist, IsEmailProtectionCert), and the
	// suffixes the reverse-DNS and onion lints look for, in the common name or a DNS name.
	bit(len(c.DNSNames) > 0)
	bit(len(c.EmailAddresses) > 0)
	var arpa, onion, onionFold bool
	for _, n := range append([]string{s.CommonName}, c.DNSNames...) {
		low := strings.ToLower(n)
		arpa = arpa || strings.HasSuffix(low, ".in-addr.arpa") || strings.HasSuffix(low, ".ip6.arpa")
		onion = onion || strings.HasSuffix(n, ".onion")
		onionFold = onionFold || strings.HasSuffix(low, ".onion")
	}
	bit(arpa)
	bit(onion)
	bit(onionFold)
	bit(util.IsOnionV2Cert(c)) // tor_service_descriptor_hash_invalid: a 16-character base32 label, suffix "onion"
	sep()
	// Dates: the ASN.1 time types (UTCTime or GeneralizedTime), the validity's UTC days, its length against 7,
	// 10 and 30 days, and both ends against every fixed date a CheckApplies compares with.
	first, second := util.GetTimes(c)
	num(first.Tag)
	num(second.Tag)
	b = c.NotBefore.UTC().AppendFormat(b, "20060102")
	b = c.NotAfter.UTC().AppendFormat(b, "20060102")
	bit(c.ValidityPeriod <= 604800)
	bit(c.ValidityPeriod <= 864000)
	bit(util.BeforeOrOn(c.NotBefore.AddDate(0, 0, 30), c.NotAfter))
	for _, d := range shapeDates {
		bit(c.NotBefore.Before(d))
		bit(c.NotAfter.Before(d))
		bit(c.NotAfter.After(d))
	}
	return string(b)
}
