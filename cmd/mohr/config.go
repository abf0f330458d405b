package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mohr-hix/mohr/ca"
)

// Config is the one configuration file of a Mohr process (STYLE.md practice 13): decoded strictly (unknown keys
// are errors) and validated before anything starts. Flags only locate it. Every field has a development default,
// so `mohr serve` runs with no file at all.
type Config struct {
	// Listen is the HTTPS API's address (mTLS). The default binds loopback only.
	Listen string `yaml:"listen"`
	// PublicListen is the plain-HTTP address of the relying parties' routes: CRLs, OCSP, the TSA, the CA
	// certificates and /healthz (RFC 5280 §4.2.1.13 and RFC 6960 expect plain HTTP for CRLs and OCSP).
	PublicListen string `yaml:"public_listen"`
	// PublicURL is how relying parties reach PublicListen (CRL, OCSP and issuer URLs derive from it).
	PublicURL string `yaml:"public_url"`
	Database  struct {
		// Driver is "sqlite" (embedded default, a file in the data directory) or "postgres".
		Driver string `yaml:"driver"`
		// DSN is the PostgreSQL connection string, or the SQLite file path (default <data-dir>/mohr.db).
		// A password belongs in PGPASSFILE or PGPASSWORD, not here.
		DSN string `yaml:"dsn"`
	} `yaml:"database"`
	CA struct {
		// Key is the intermediate's key URI: file:PATH or pkcs11:token=...;object=...;pin-source=file:...
		Key string `yaml:"key"`
		// Cert and Root are PEM files of the intermediate and the root.
		Cert string `yaml:"cert"`
		Root string `yaml:"root"`
		// Issuance configures profiles, URLs and lifetimes (ca.Config).
		Issuance ca.Config `yaml:"issuance"`
	} `yaml:"ca"`
	// Services names the keys of the CA's own services. Empty means a P-256 file key in <data-dir>/services;
	// a pkcs11: URI names a key made beforehand with `mohr hsm keygen`. Their certificates are issued by the
	// CA at start and renewed when a third of their lifetime is left.
	Services struct {
		TSAKey  string `yaml:"tsa_key"`
		OCSPKey string `yaml:"ocsp_key"`
		SealKey string `yaml:"seal_key"`
		TLSKey  string `yaml:"tls_key"`
		// TrustBundleKey is the Ministry's seal of the offline trust bundle (GET /trust-bundle); verifiers pin
		// its public key, written to <data-dir>/services/trust-bundle-seal.pub.
		TrustBundleKey string `yaml:"trust_bundle_key"`
		// TLSNames are the DNS names and IP addresses of the API's server certificate.
		TLSNames []string `yaml:"tls_names"`
		// OCSPSignNonces honours OCSP request nonces with a response signed on request (RFC 8954);
		// OCSPSignUnknown answers serials without a pre-signed response with a signed "unknown". Both off by
		// default: the responder serves only pre-signed responses and the unsigned unauthorized error, so no
		// request can make it sign (docs/revocation.md "Signing on request").
		OCSPSignNonces  bool `yaml:"ocsp_sign_nonces"`
		OCSPSignUnknown bool `yaml:"ocsp_sign_unknown"`
		// OCSPDir, if set, is a directory into which the node writes every pre-signed OCSP response under the
		// path of its RFC 5019 GET request, for a static web server or CDN (docs/cluster.md, "OCSP directory
		// sink"). Nodes may share it.
		OCSPDir string `yaml:"ocsp_dir"`
	} `yaml:"services"`
	// API tunes the HTTP API: requests per client per minute (by client certificate, else IP), and per IP
	// on the public routes (OCSP, CRL, TSA). Zero keeps the defaults (600 and 6000).
	API struct {
		RateLimit       int `yaml:"rate_limit"`
		PublicRateLimit int `yaml:"public_rate_limit"`
		// SignRateLimit and SignGlobalRateLimit bound the signing routes (the TSA; OCSP when it signs on
		// request) per IP and for all callers, per minute (defaults 120 and 3000). AuthFailLimit is how many
		// rejected credentials one address may present per minute (default 10).
		SignRateLimit       int `yaml:"sign_rate_limit"`
		SignGlobalRateLimit int `yaml:"sign_global_rate_limit"`
		AuthFailLimit       int `yaml:"auth_fail_limit"`
		// RateWindow is the window of every limit above (default 1m).
		RateWindow ca.Duration `yaml:"rate_window"`
	} `yaml:"api"`
	// Archive schedules archive-timestamp renewal of stored prescriptions (docs/signing.md "Archive timestamps").
	Archive struct {
		// RenewWindow: a prescription's archive timestamp is renewed this long before the TSA certificate it
		// relies on expires (default 90 days).
		RenewWindow ca.Duration `yaml:"renew_window"`
		// Interval between renewal passes in mohr serve (default 1 hour).
		Interval ca.Duration `yaml:"interval"`
	} `yaml:"archive"`
	HSM struct {
		// Module is the default PKCS#11 module for pkcs11: URIs without module-path.
		Module string `yaml:"module"`
	} `yaml:"hsm"`

	// RemoteSigning configures remote signing for physicians (remotewire.go, docs/remote-signing.md).
	RemoteSigning remoteSigningConfig `yaml:"remote_signing"`
	// Audit names the deployment's one audit identity: the checkpoint key every node signs with, and the
	// verifier keys `mohr audit verify` trusts over the log's history.
	Audit struct {
		// Key is file:PATH of a note signer key (`mohr audit keygen`) or a pkcs11: URI of an Ed25519 key.
		// Empty means <data-dir>/audit.skey, made at the first start (fit for a single node only).
		Key string `yaml:"key"`
		// Name is the log name for a pkcs11: key (checkpoint origin mohr.audit/<name>); default "mohr".
		Name string `yaml:"name"`
		// VKeys is a file of verifier keys, one per line: every checkpoint key valid at some point of the
		// log's history. Default <data-dir>/audit.vkey.
		VKeys string `yaml:"vkeys"`
		// CheckpointInterval: one node at a time (holding a lease in the database) signs a checkpoint this
		// often while the log grows. Default one minute.
		CheckpointInterval ca.Duration `yaml:"checkpoint_interval"`
	} `yaml:"audit"`
	// Validation is the trust policy of the verifiers (cmd/mohr/trust.go).
	Validation ValidationConfig `yaml:"validation"`
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout ca.Duration `yaml:"shutdown_timeout"`

	dataDir string
	// now is the clock of every service a node wires (tests run it fast); time.Now when nil.
	now func() time.Time
}

// clock returns the configured clock, time.Now by default.
func (c *Config) clock() func() time.Time {
	if c.now != nil {
		return c.now
	}
	return time.Now
}

const (
	defaultListen       = "127.0.0.1:8443"
	defaultPublicListen = "127.0.0.1:8080"
)

// defaultConfig returns the embedded default for dataDir.
func defaultConfig(dataDir string) *Config {
	c := &Config{Listen: defaultListen, PublicListen: defaultPublicListen, dataDir: dataDir}
	c.Database.Driver = "sqlite"
	c.CA.Issuance = ca.DefaultConfig()
	c.HSM.Module = "/usr/lib/softhsm/libsofthsm2.so"
	c.ShutdownTimeout = ca.Duration(10 * time.Second)
	c.Audit.Name = "mohr"
	c.Audit.CheckpointInterval = ca.Duration(time.Minute)
	c.Archive.RenewWindow = ca.Duration(90 * 24 * time.Hour)
	c.Archive.Interval = ca.Duration(time.Hour)
	return c
}

// loadConfig reads the configuration file (flag --config, or <data-dir>/mohr.yaml if present) over the defaults.
func loadConfig() (*Config, error) {
	dir, err := filepath.Abs(flagDataDir)
	if err != nil {
		return nil, err
	}
	c := defaultConfig(dir)
	path := flagConfig
	if path == "" {
		p := filepath.Join(dir, "mohr.yaml")
		if _, err := os.Stat(p); err == nil {
			path = p
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := decodeConfig(b, c); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	c.fillDerived()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// decodeConfig decodes YAML strictly into c: unknown keys and trailing documents are errors.
func decodeConfig(b []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}

func (c *Config) fillDerived() {
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.PublicListen
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	def := ca.DefaultConfig()
	if c.CA.Issuance.CRLBaseURL == "" || c.CA.Issuance.CRLBaseURL == def.CRLBaseURL {
		c.CA.Issuance.CRLBaseURL = c.PublicURL + "/crl"
	}
	if c.CA.Issuance.OCSPURL == "" || c.CA.Issuance.OCSPURL == def.OCSPURL {
		c.CA.Issuance.OCSPURL = c.PublicURL + "/ocsp"
	}
	if c.CA.Issuance.IssuerURL == "" {
		c.CA.Issuance.IssuerURL = c.PublicURL + "/ca/intermediate.crt"
	}
	if c.CA.Cert == "" {
		c.CA.Cert = filepath.Join(c.dataDir, "ca", "intermediate.pem")
	}
	if c.CA.Root == "" {
		c.CA.Root = filepath.Join(c.dataDir, "ca", "root.pem")
	}
	if c.Database.Driver == "sqlite" && c.Database.DSN == "" {
		c.Database.DSN = filepath.Join(c.dataDir, "mohr.db")
	}
}

func (c *Config) validate() error {
	switch c.Database.Driver {
	case "sqlite", "postgres":
	default:
		return fmt.Errorf("database.driver must be sqlite or postgres, not %q", c.Database.Driver)
	}
	if c.Database.Driver == "postgres" && c.Database.DSN == "" {
		return errors.New("database.dsn is required for postgres")
	}
	if c.ShutdownTimeout <= 0 {
		return errors.New("shutdown_timeout must be positive")
	}
	if c.Audit.CheckpointInterval < ca.Duration(time.Second) {
		return errors.New("audit.checkpoint_interval must be at least 1s")
	}
	if c.Archive.RenewWindow <= 0 || c.Archive.Interval < ca.Duration(time.Second) {
		return errors.New("archive.renew_window must be positive and archive.interval at least 1s")
	}
	return c.CA.Issuance.Validate()
}

// caKeyURI returns the configured key URI of the intermediate, or the file key in the data directory.
func (c *Config) caKeyURI() string {
	if c.CA.Key != "" {
		return c.CA.Key
	}
	return "file:" + filepath.Join(c.dataDir, "ca", "intermediate.key")
}
