package ca

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/mohr-hix/mohr/internal/hixext"
)

// Profile names, as ARCHITECTURE.md "Certificate profiles" lists them.
const (
	ProfileFacilityAdapter  = "facility-adapter"
	ProfileOrganisationSeal = "organisation-seal"
	ProfilePhysicianSigning = "physician-signing"
	ProfilePhysicianAuth    = "physician-auth"
	ProfileOCSPResponder    = "ocsp-responder"
	ProfileTSA              = "tsa"
	ProfileTLSServer        = "tls-server"
	ProfileOperator         = "operator"
	// ProfileOrganisationAuth is a pharmacy's or insurer's API credential (clientAuth, role policy).
	ProfileOrganisationAuth = "organisation-auth"
)

// Profiles lists every profile name the CA knows.
var Profiles = []string{ProfileFacilityAdapter, ProfileOrganisationSeal, ProfilePhysicianSigning,
	ProfilePhysicianAuth, ProfileOCSPResponder, ProfileTSA, ProfileTLSServer, ProfileOperator, ProfileOrganisationAuth}

// Config is what an operator sets about issuance. The zero value is not valid; start from DefaultConfig.
type Config struct {
	// CRLBaseURL is the URL prefix of the sharded CRLs: shard N is at CRLBaseURL/N.crl.
	CRLBaseURL string `yaml:"crl_base_url"`
	// CRLShards is the number of CRL shards (1 to 4096).
	CRLShards int `yaml:"crl_shards"`
	// OCSPURL goes into the authority information access of every leaf.
	OCSPURL string `yaml:"ocsp_url"`
	// IssuerURL (caIssuers) points to the intermediate certificate; empty leaves it out.
	IssuerURL string `yaml:"issuer_url"`
	// CouncilAuthority names the medical council in the admission extension.
	CouncilAuthority string `yaml:"council_authority"`
	// Country is the subject C of leaves (ISO 3166 alpha-2).
	Country string `yaml:"country"`
	// Profiles holds per-profile settings, keyed by profile name.
	Profiles map[string]ProfileConfig `yaml:"profiles"`
}

// ProfileConfig is the configurable part of one certificate profile.
type ProfileConfig struct {
	// Lifetime is the longest validity of a certificate of this profile; standing can shorten it.
	Lifetime Duration `yaml:"lifetime"`
	// Policies are the certificate policy OIDs, dotted.
	Policies []string `yaml:"policies"`
}

// Duration is a time.Duration that YAML and JSON write as a Go duration string ("8760h") or with a day suffix ("365d").
type Duration time.Duration

// UnmarshalText accepts "90d" and Go durations.
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	if n := len(s); n > 1 && s[n-1] == 'd' {
		var days int
		if _, err := fmt.Sscanf(s[:n-1], "%d", &days); err != nil || days <= 0 {
			return fmt.Errorf("ca: bad duration %q", s)
		}
		*d = Duration(time.Duration(days) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("ca: bad duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration in Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

const day = 24 * time.Hour

// DefaultConfig returns development defaults: local URLs, 16 CRL shards and the placeholder policy OIDs under
// hixext.OIDPolicyBase (one per profile).
func DefaultConfig() Config {
	c := Config{
		CRLBaseURL:       "http://127.0.0.1:8443/crl",
		CRLShards:        16,
		OCSPURL:          "http://127.0.0.1:8443/ocsp",
		CouncilAuthority: "Medical Council of the I.R. of Iran",
		Country:          "IR",
		Profiles:         map[string]ProfileConfig{},
	}
	life := map[string]time.Duration{
		ProfileFacilityAdapter:  365 * day,
		ProfileOrganisationSeal: 2 * 365 * day,
		ProfilePhysicianSigning: 2 * 365 * day,
		ProfilePhysicianAuth:    2 * 365 * day,
		ProfileOCSPResponder:    4 * day,
		ProfileTSA:              3 * 365 * day,
		ProfileTLSServer:        90 * day,
		ProfileOperator:         365 * day,
		ProfileOrganisationAuth: 365 * day,
	}
	for i, p := range Profiles {
		oid := append(append(asn1.ObjectIdentifier{}, hixext.OIDPolicyBase...), i+1)
		c.Profiles[p] = ProfileConfig{Lifetime: Duration(life[p]), Policies: []string{oid.String()}}
	}
	return c
}

// Validate checks c and returns the first problem found.
func (c *Config) Validate() error {
	for _, u := range []struct{ name, v string }{{"crl_base_url", c.CRLBaseURL}, {"ocsp_url", c.OCSPURL}} {
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("ca: config %s must be an http(s) URL", u.name)
		}
	}
	if c.IssuerURL != "" {
		if p, err := url.Parse(c.IssuerURL); err != nil || p.Host == "" {
			return errors.New("ca: config issuer_url must be an http(s) URL")
		}
	}
	if c.CRLShards < 1 || c.CRLShards > 4096 {
		return errors.New("ca: config crl_shards must be between 1 and 4096")
	}
	if len(c.Country) != 2 {
		return errors.New("ca: config country must be a two-letter ISO 3166 code")
	}
	for _, p := range Profiles {
		pc, ok := c.Profiles[p]
		if !ok {
			return fmt.Errorf("ca: config has no settings for profile %q", p)
		}
		if pc.Lifetime <= 0 {
			return fmt.Errorf("ca: profile %q needs a positive lifetime", p)
		}
		for _, s := range pc.Policies {
			if _, err := parseOID(s); err != nil {
				return fmt.Errorf("ca: profile %q: %w", p, err)
			}
		}
	}
	for p := range c.Profiles {
		if !knownProfile(p) {
			return fmt.Errorf("ca: config names unknown profile %q", p)
		}
	}
	return nil
}

func knownProfile(p string) bool {
	for _, q := range Profiles {
		if p == q {
			return true
		}
	}
	return false
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	var oid asn1.ObjectIdentifier
	n, v := 0, 0
	digits := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if digits == 0 {
				return nil, fmt.Errorf("bad OID %q", s)
			}
			oid = append(oid, v)
			n++
			v, digits = 0, 0
			continue
		}
		if s[i] < '0' || s[i] > '9' || v > 1<<30 {
			return nil, fmt.Errorf("bad OID %q", s)
		}
		v = v*10 + int(s[i]-'0')
		digits++
	}
	if n < 2 {
		return nil, fmt.Errorf("bad OID %q", s)
	}
	return oid, nil
}
