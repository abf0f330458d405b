package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/keys"
)

func init() { rootCmd.AddCommand(newCACmd()) }

func newCACmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "Set up and inspect the health intermediate CA"}
	var dev, force bool
	var keyURI, csrOut, subject, alg string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the intermediate key: with --dev a development root and intermediate, otherwise a CSR for the national root",
		Example: "  mohr ca init --dev\n  mohr ca init --key 'pkcs11:token=MohrCA;object=intermediate;pin-source=file:/etc/mohr/pin' \\\n" +
			"      --csr-out intermediate.csr --subject 'CN=Health Intermediate CA,O=Ministry of Health,C=IR'",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			if dev == (csrOut != "") {
				return errors.New("give either --dev or --csr-out")
			}
			if keyURI != "" {
				cfg.CA.Key = keyURI
			}
			if dev {
				return caInitDev(cmd.Context(), cfg, alg, force)
			}
			name, err := parseSubject(subject)
			if err != nil {
				return err
			}
			return caInitCSR(cmd.Context(), cfg, alg, name, csrOut, force)
		},
	}
	initCmd.Flags().BoolVar(&dev, "dev", false, "create a DEVELOPMENT root and intermediate (never for production)")
	initCmd.Flags().StringVar(&keyURI, "key", "", "key URI for the intermediate key (pkcs11:... creates it in the HSM); default a file key in the data directory")
	initCmd.Flags().StringVar(&csrOut, "csr-out", "", "write the intermediate's CSR for the national root to this file")
	initCmd.Flags().StringVar(&subject, "subject", "CN=Health Intermediate CA,O=Ministry of Health and Medical Education,C=IR", "intermediate subject, RFC 4514 style (CN, O, OU, C, L, ST)")
	initCmd.Flags().StringVar(&alg, "alg", "EC-P256", "key algorithm: EC-P256, EC-P384, RSA-2048, RSA-3072")
	initCmd.Flags().BoolVar(&force, "force", false, "replace an existing CA in the data directory")

	var certFile, rootFile string
	importCmd := &cobra.Command{
		Use:   "import",
		Short: "Take back the intermediate certificate signed by the national root",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			return caImport(cmd.Context(), cfg, certFile, rootFile)
		},
	}
	importCmd.Flags().StringVar(&certFile, "cert", "", "the signed intermediate certificate (PEM)")
	importCmd.Flags().StringVar(&rootFile, "root", "", "the national root certificate (PEM)")
	_ = importCmd.MarkFlagRequired("cert")
	_ = importCmd.MarkFlagRequired("root")

	chainCmd := &cobra.Command{
		Use:   "chain",
		Short: "Print the intermediate and root certificates (PEM)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			chain, err := readChain(cfg)
			if err != nil {
				return err
			}
			for _, c := range chain {
				if err := pem.Encode(cmd.OutOrStdout(), &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.AddCommand(initCmd, importCmd, chainCmd)
	cmd.AddCommand(newCARetireKeyCmd()) // cakeys.go
	return cmd
}

// parseSubject reads "CN=...,O=...,C=IR". Escapes are not supported; a value may not contain a comma.
func parseSubject(s string) (pkix.Name, error) {
	var n pkix.Name
	if strings.ContainsAny(s, "\\+\"") {
		return n, errors.New("--subject: escapes, quotes and multi-valued RDNs are not supported")
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		v = strings.TrimSpace(v)
		if !ok || v == "" {
			return n, fmt.Errorf("--subject: %q is not KEY=VALUE", part)
		}
		switch strings.ToUpper(strings.TrimSpace(k)) {
		case "CN":
			n.CommonName = v
		case "O":
			n.Organization = append(n.Organization, v)
		case "OU":
			n.OrganizationalUnit = append(n.OrganizationalUnit, v)
		case "C":
			if len(v) != 2 {
				return n, errors.New("--subject: C must be a two-letter country code")
			}
			n.Country = append(n.Country, v)
		case "L":
			n.Locality = append(n.Locality, v)
		case "ST":
			n.Province = append(n.Province, v)
		default:
			return n, fmt.Errorf("--subject: attribute %q is not supported", k)
		}
	}
	if n.CommonName == "" {
		return n, errors.New("--subject needs a CN")
	}
	return n, nil
}

func caDir(cfg *Config) string { return filepath.Join(cfg.dataDir, "ca") }

// keyURIFile remembers a key URI chosen at init when the config file does not name one.
func keyURIFile(cfg *Config) string { return filepath.Join(caDir(cfg), "key-uri") }

// resolveCAKeyURI is cfg.CA.Key, else the URI remembered at init, else the file key.
func resolveCAKeyURI(cfg *Config) string {
	if cfg.CA.Key != "" {
		return cfg.CA.Key
	}
	if b, err := os.ReadFile(keyURIFile(cfg)); err == nil {
		return strings.TrimSpace(string(b))
	}
	return cfg.caKeyURI()
}

// newCAKey creates the intermediate key where uri says: in the HSM for pkcs11:, as a 0600 file for file:.
func newCAKey(ctx context.Context, uri, alg string) (crypto.Signer, error) {
	scheme, err := keys.Scheme(uri)
	if err != nil {
		return nil, err
	}
	switch scheme {
	case "pkcs11":
		return hsmOpener().GenerateKey(ctx, uri, alg)
	case "file":
		var k crypto.Signer
		switch alg {
		case "EC-P256":
			k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		case "EC-P384":
			k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		default:
			return nil, fmt.Errorf("file keys support EC-P256 and EC-P384, not %q (use an HSM for RSA CA keys)", alg)
		}
		if err != nil {
			return nil, err
		}
		path := strings.TrimPrefix(uri, "file:")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		return k, keys.WritePEMKey(path, k)
	}
	return nil, fmt.Errorf("cannot create a key for scheme %q", scheme)
}

func prepareCADir(cfg *Config, force bool) error {
	if _, err := os.Stat(cfg.CA.Cert); err == nil && !force {
		return fmt.Errorf("a CA already exists in %s (use --force to replace it)", caDir(cfg))
	}
	if force {
		for _, f := range []string{"root.key", "intermediate.key", "key-uri", "intermediate.csr"} {
			os.Remove(filepath.Join(caDir(cfg), f))
		}
	}
	return os.MkdirAll(caDir(cfg), 0o700)
}

// rememberKeyURI records a key URI given on the command line, so later commands find the key without a
// configuration file. The default file key needs no record.
func rememberKeyURI(cfg *Config, uri string) error {
	if uri == "file:"+filepath.Join(caDir(cfg), "intermediate.key") {
		return nil
	}
	return os.WriteFile(keyURIFile(cfg), []byte(uri+"\n"), 0o600)
}

func caInitDev(ctx context.Context, cfg *Config, alg string, force bool) error {
	if err := prepareCADir(cfg, force); err != nil {
		return err
	}
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return err
	}
	if err := keys.WritePEMKey(filepath.Join(caDir(cfg), "root.key"), rootKey); err != nil {
		return err
	}
	root, err := ca.NewRoot(rootKey, ca.DevRootName, now, 20*365*24*time.Hour)
	if err != nil {
		return err
	}
	uri := resolveCAKeyURI(cfg)
	ik, err := newCAKey(ctx, uri, alg)
	if err != nil {
		return fmt.Errorf("intermediate key: %w", err)
	}
	inter, err := ca.SignIntermediate(root, rootKey, ik.Public(), ca.DevIntermediateName, now, 10*365*24*time.Hour)
	if err != nil {
		return err
	}
	if err := writeCertPEM(cfg.CA.Root, root); err != nil {
		return err
	}
	if err := writeCertPEM(cfg.CA.Cert, inter); err != nil {
		return err
	}
	if err := rememberKeyURI(cfg, uri); err != nil {
		return err
	}
	if err := auditCAEvent(ctx, cfg, "ca.init", map[string]any{"dev": true, "intermediate": ca.SerialHex(inter.SerialNumber), "root": ca.SerialHex(root.SerialNumber)}); err != nil {
		return err
	}
	if err := ensureAuditKeyAtInit(ctx, cfg); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "created a DEVELOPMENT root and intermediate in %s\n", caDir(cfg))
	return nil
}

func caInitCSR(ctx context.Context, cfg *Config, alg string, name pkix.Name, out string, force bool) error {
	if err := prepareCADir(cfg, force); err != nil {
		return err
	}
	uri := resolveCAKeyURI(cfg)
	k, err := newCAKey(ctx, uri, alg)
	if err != nil {
		return fmt.Errorf("intermediate key: %w", err)
	}
	der, err := ca.CreateCSR(k, name)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644); err != nil {
		return err
	}
	if err := rememberKeyURI(cfg, uri); err != nil {
		return err
	}
	if err := ensureAuditKeyAtInit(ctx, cfg); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s: have the national root sign it, then run mohr ca import --cert FILE --root FILE\n", out)
	return nil
}

func caImport(ctx context.Context, cfg *Config, certFile, rootFile string) error {
	cert, err := readOneCert(certFile)
	if err != nil {
		return err
	}
	root, err := readOneCert(rootFile)
	if err != nil {
		return err
	}
	res := newKeyResolver()
	uri := resolveCAKeyURI(cfg)
	key, err := res.Signer(ctx, uri)
	promote := false
	if err != nil || keys.MatchesCertificate(key, cert) != nil {
		// After a re-key (dual control), the certificate is for the next key.
		if b, nerr := os.ReadFile(nextKeyFile(cfg)); nerr == nil {
			next := strings.TrimSpace(string(b))
			if nk, nerr := res.Signer(ctx, next); nerr == nil && keys.MatchesCertificate(nk, cert) == nil {
				key, uri, promote, err = nk, next, true, nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("intermediate key: %w", err)
	}
	if err := ca.CheckImport(cert, root, key, time.Now()); err != nil {
		return err
	}
	// A new intermediate ends the suspension a revoked one left behind; the revoked one never comes back.
	clearMarker := false
	if b, err := os.ReadFile(revokedMarker(cfg)); err == nil {
		var m struct{ Intermediate string }
		if json.Unmarshal(b, &m) == nil && m.Intermediate != ca.SerialHex(cert.SerialNumber) {
			clearMarker = true
		} else {
			return errors.New("this intermediate was revoked under dual control; import a new one")
		}
	}
	if promote && cfg.CA.Key != "" {
		return fmt.Errorf("the certificate is for the new key %s: set ca.key to it in the configuration, then import again", redactURI(uri))
	}
	if err := os.MkdirAll(caDir(cfg), 0o700); err != nil {
		return err
	}
	if err := writeCertPEM(cfg.CA.Root, root); err != nil {
		return err
	}
	if err := writeCertPEM(cfg.CA.Cert, cert); err != nil {
		return err
	}
	if promote {
		if err := os.WriteFile(keyURIFile(cfg), []byte(uri+"\n"), 0o600); err != nil {
			return err
		}
		os.Remove(nextKeyFile(cfg))
	}
	if clearMarker {
		os.Remove(revokedMarker(cfg))
	}
	return auditCAEvent(ctx, cfg, "ca.import", map[string]any{"intermediate": ca.SerialHex(cert.SerialNumber),
		"root_subject": root.Subject.String(), "new_key": promote})
}

func writeCertPEM(path string, certs ...*x509.Certificate) error {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readCerts reads every CERTIFICATE block of a PEM file.
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return out, nil
}

func readOneCert(path string) (*x509.Certificate, error) {
	cs, err := readCerts(path)
	if err != nil {
		return nil, err
	}
	if len(cs) != 1 {
		return nil, fmt.Errorf("%s: want one certificate, found %d", path, len(cs))
	}
	return cs[0], nil
}

// readChain returns the intermediate and the root.
func readChain(cfg *Config) ([]*x509.Certificate, error) {
	inter, err := readOneCert(cfg.CA.Cert)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if err := requireInitialised(cfg); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("no CA in %s: run mohr ca init (or mohr ca import after ca init --csr)", caDir(cfg))
		}
		return nil, err
	}
	root, err := readOneCert(cfg.CA.Root)
	if err != nil {
		return nil, err
	}
	return []*x509.Certificate{inter, root}, nil
}

// loadIssuer opens the intermediate's key and refuses it unless it matches the configured certificate.
func loadIssuer(ctx context.Context, cfg *Config) (*ca.Issuer, error) {
	chain, err := readChain(cfg)
	if err != nil {
		return nil, err
	}
	key, err := newKeyResolver().Signer(ctx, resolveCAKeyURI(cfg))
	if err != nil {
		return nil, fmt.Errorf("intermediate key: %w", err)
	}
	if err := keys.MatchesCertificate(key, chain[0]); err != nil {
		return nil, fmt.Errorf("the intermediate key does not match %s: %w", cfg.CA.Cert, err)
	}
	return &ca.Issuer{Cert: chain[0], Signer: key, Chain: chain}, nil
}

// ensureAuditKeyAtInit creates the audit checkpoint key (<data-dir>/audit.skey, audit.vkey) at the CA's setup
// when the configuration names none, so `mohr audit verify` works right after `mohr ca init`, before any
// `mohr serve`: the key ceremony makes every key the CA needs. A configured key (audit.key) is left to its
// owner (`mohr audit keygen`, an HSM).
func ensureAuditKeyAtInit(ctx context.Context, cfg *Config) error {
	if cfg.Audit.Key != "" {
		return nil
	}
	if _, err := loadAuditIdentity(ctx, cfg); err != nil {
		return fmt.Errorf("audit key: %w", err)
	}
	return nil
}
