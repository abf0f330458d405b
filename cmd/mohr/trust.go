package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/signing"
)

// ValidationConfig is the `validation` section of the configuration: the trust policy of every verifier of the
// process (`mohr serve` and `mohr verify`; docs/signing.md "Trust policy"). Empty fields take defaults derived
// from Mohr's own CA and TSA in the data directory.
type ValidationConfig struct {
	// TrustAnchors are PEM files of trust anchors. Default: <data-dir>/trust-anchors.pem if present, else the
	// CA's root; the CA's own intermediate is added as an anchor too (as a trusted list names issuing CAs), so
	// its status is the configuration's and no root CRL is needed.
	TrustAnchors []string `yaml:"trust_anchors"`
	// SignerCAs are PEM files of the CAs allowed to issue prescribers' certificates. Default: the intermediate.
	SignerCAs []string `yaml:"signer_cas"`
	// PrescriberPolicies are the certificate policy OIDs of the physician-signing profile. Default:
	// ca.issuance.profiles.physician-signing.policies.
	PrescriberPolicies []string `yaml:"prescriber_policies"`
	// TSAs is the TSA trust list. Default: the key of Mohr's own TSA (<data-dir>/services/tsa.pem).
	TSAs []TSAConfigEntry `yaml:"tsas"`
	// Algorithms are the acceptable algorithms with sunset dates. Default: signing.DefaultAlgorithms().
	Algorithms []signing.AlgorithmRule `yaml:"algorithms"`
}

// TSAConfigEntry is one trusted TSA: a PEM certificate file, or the hex SHA-256 of its SubjectPublicKeyInfo,
// with the period in which its time stamps count.
type TSAConfigEntry struct {
	Cert       string    `yaml:"cert"`
	SPKISHA256 string    `yaml:"spki_sha256"`
	NotBefore  time.Time `yaml:"not_before"`
	NotAfter   time.Time `yaml:"not_after"`
}

// trustDefaults are what the data directory provides when the configuration is silent.
type trustDefaults struct {
	// anchors, when set, replace the data directory's trust-anchors.pem and root (serve: the anchors set under
	// dual control).
	anchors                 []*x509.Certificate
	root, intermediate, tsa *x509.Certificate
	// tsas, when set, replace tsa: every key the node's TSA has used.
	tsas []*x509.Certificate
}

// dataDirTrustDefaults reads the CA root, the intermediate and the TSA certificate from the data directory,
// whichever exist.
func dataDirTrustDefaults(cfg *Config) trustDefaults {
	var d trustDefaults
	d.root, _ = readOneCert(cfg.CA.Root)
	d.intermediate, _ = readOneCert(cfg.CA.Cert)
	d.tsa, _ = readOneCert(filepath.Join(cfg.dataDir, "services", "tsa.pem"))
	return d
}

// trustPolicy builds the signing.TrustPolicy of vc over the defaults d.
func (vc ValidationConfig) trustPolicy(cfg *Config, d trustDefaults) (*signing.TrustPolicy, error) {
	tp := &signing.TrustPolicy{Algorithms: vc.Algorithms}
	read := func(files []string) ([]*x509.Certificate, error) {
		var out []*x509.Certificate
		for _, f := range files {
			cs, err := readCerts(f)
			if err != nil {
				return nil, fmt.Errorf("validation: %w", err)
			}
			out = append(out, cs...)
		}
		return out, nil
	}
	var err error
	if tp.Anchors, err = read(vc.TrustAnchors); err != nil {
		return nil, err
	}
	if len(vc.TrustAnchors) == 0 {
		if len(d.anchors) > 0 {
			tp.Anchors = append([]*x509.Certificate(nil), d.anchors...)
		} else if as, err := readCerts(trustAnchorsFile(cfg)); err == nil {
			tp.Anchors = as
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("validation: trust anchors: %w", err)
		} else if d.root != nil {
			tp.Anchors = []*x509.Certificate{d.root}
		}
		if d.intermediate != nil {
			tp.Anchors = append(tp.Anchors, d.intermediate)
		}
	}
	if tp.SignerCAs, err = read(vc.SignerCAs); err != nil {
		return nil, err
	}
	if len(vc.SignerCAs) == 0 && d.intermediate != nil {
		tp.SignerCAs = []*x509.Certificate{d.intermediate}
	}
	pols := vc.PrescriberPolicies
	if len(pols) == 0 {
		pols = cfg.CA.Issuance.Profiles[ca.ProfilePhysicianSigning].Policies
	}
	for _, s := range pols {
		oid, err := parseDottedOID(s)
		if err != nil {
			return nil, fmt.Errorf("validation: prescriber policy %q: %w", s, err)
		}
		tp.PrescriberPolicies = append(tp.PrescriberPolicies, oid)
	}
	for i, e := range vc.TSAs {
		t := signing.TrustedTSA{NotBefore: e.NotBefore, NotAfter: e.NotAfter}
		switch {
		case e.Cert != "" && e.SPKISHA256 == "":
			cs, err := readCerts(e.Cert) // every certificate of the file, with the entry's period
			if err != nil || len(cs) == 0 {
				return nil, fmt.Errorf("validation: tsas[%d]: %s: no certificate (%v)", i, e.Cert, err)
			}
			for _, c := range cs[1:] {
				tp.TSAs = append(tp.TSAs, signing.TrustedTSA{Cert: c, NotBefore: e.NotBefore, NotAfter: e.NotAfter})
			}
			t.Cert = cs[0]
		case e.Cert == "" && e.SPKISHA256 != "":
			if t.SPKISHA256, err = hex.DecodeString(e.SPKISHA256); err != nil || len(t.SPKISHA256) != sha256.Size {
				return nil, fmt.Errorf("validation: tsas[%d]: spki_sha256 must be 64 hex digits", i)
			}
		default:
			return nil, fmt.Errorf("validation: tsas[%d]: give cert or spki_sha256", i)
		}
		tp.TSAs = append(tp.TSAs, t)
	}
	if len(vc.TSAs) == 0 {
		tsas := d.tsas
		if len(tsas) == 0 && d.tsa != nil {
			tsas = []*x509.Certificate{d.tsa}
		}
		for _, c := range tsas {
			h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
			tp.TSAs = append(tp.TSAs, signing.TrustedTSA{SPKISHA256: h[:]})
		}
	}
	if err := tp.Validate(); err != nil {
		return nil, fmt.Errorf("validation: %w (see the validation section of the configuration)", err)
	}
	return tp, nil
}

// prescriberPolicy builds only the signer constraints of vc (signer CAs and prescriber policies), which is
// all `mohr sign` needs to refuse a wrong certificate.
func (vc ValidationConfig) prescriberPolicy(cfg *Config, d trustDefaults) (*signing.TrustPolicy, error) {
	tp := &signing.TrustPolicy{}
	for _, f := range vc.SignerCAs {
		cs, err := readCerts(f)
		if err != nil {
			return nil, fmt.Errorf("validation: %w", err)
		}
		tp.SignerCAs = append(tp.SignerCAs, cs...)
	}
	if len(vc.SignerCAs) == 0 && d.intermediate != nil {
		tp.SignerCAs = []*x509.Certificate{d.intermediate}
	}
	pols := vc.PrescriberPolicies
	if len(pols) == 0 {
		pols = cfg.CA.Issuance.Profiles[ca.ProfilePhysicianSigning].Policies
	}
	for _, s := range pols {
		oid, err := parseDottedOID(s)
		if err != nil {
			return nil, fmt.Errorf("validation: prescriber policy %q: %w", s, err)
		}
		tp.PrescriberPolicies = append(tp.PrescriberPolicies, oid)
	}
	if len(tp.SignerCAs) == 0 {
		return nil, fmt.Errorf("%w: no signer CAs", signing.ErrTrustPolicy)
	}
	return tp, nil
}

func parseDottedOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, errors.New("not a dotted OID")
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, errors.New("not a dotted OID")
		}
		oid[i] = n
	}
	return oid, nil
}

// parsePEMCerts parses every CERTIFICATE block of b.
func parsePEMCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out, nil
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}
