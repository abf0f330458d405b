package ca

import (
	"fmt"
	"sort"
	"strings"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

// Waivers lists every zlint lint Mohr knowingly does not satisfy, with the reason. It is the one place where a
// lint is switched off. Error-level findings of every other lint in the registries below refuse issuance.
var Waivers = map[string]string{
	// Mohr's certificates are not TLS server certificates for the Web PKI (except tls-server, which is
	// linted against the Baseline Requirements too): the CA/Browser Forum's subscriber rules do not apply.
	// tls-server certificates are linted against the Baseline Requirements as well, less these three:
	"e_ext_san_contains_reserved_ip":          "exchange hosts sit on private and loopback addresses of the health network; the BR forbid them only for the Web PKI",
	"e_sub_cert_certificate_policies_missing": "the BR reserved policy OIDs (2.23.140.1.2.*) assert Web PKI compliance, which a private health PKI must not claim; Mohr's own policy OIDs are present",
	"e_sub_cert_cert_policy_empty":            "same reason as e_sub_cert_certificate_policies_missing",
	"e_dnsname_not_valid_tld":                 "exchange hosts carry names of the private health network (e.g. hix.moh.internal, localhost), not public TLDs; the CA still checks every name's syntax",
}

// registries returns the zlint registry for a profile: RFC 5280/5480/5891 and ETSI lints for every profile, the
// CA/Browser Forum Baseline Requirements in addition for tls-server.
func lintRegistry(profile string) (lint.Registry, error) {
	sources := lint.SourceList{lint.RFC5280, lint.RFC5480, lint.RFC5891, lint.RFC3279, lint.RFC8813, lint.EtsiEsi}
	if profile == ProfileTLSServer {
		sources = append(sources, lint.CABFBaselineRequirements)
	}
	excl := make([]string, 0, len(Waivers))
	for n := range Waivers {
		excl = append(excl, n)
	}
	return lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: sources, ExcludeNames: excl})
}

// lintDER runs zlint on a certificate with the whole registry. It returns ErrLint naming every error- or
// fatal-level finding. Issuance lints through a linter (lintshape.go), which runs the same lints that can apply.
func lintDER(reg lint.Registry, der []byte) error {
	zc, err := zx509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: zcrypto cannot parse the certificate: %v", ErrLint, err)
	}
	return lintResult(reg, zlint.LintCertificateEx(zc, reg))
}

// lintResult returns ErrLint naming every error- or fatal-level finding of res.
func lintResult(reg lint.Registry, res *zlint.ResultSet) error {
	if !res.ErrorsPresent && !res.FatalsPresent {
		return nil
	}
	var bad []string
	for name, r := range res.Results {
		if r.Status == lint.Error || r.Status == lint.Fatal {
			// The lint's own description says what is wrong; its name alone means nothing to a person.
			if l := reg.ByName(name); l != nil && l.Description != "" {
				name += " (" + strings.TrimSuffix(l.Description, ".") + ")"
			}
			bad = append(bad, name)
		}
	}
	sort.Strings(bad)
	return fmt.Errorf("%w: %s", ErrLint, strings.Join(bad, ", "))
}
