package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/ca/revocation"
	"github.com/mohr-hix/mohr/hsm"
	"github.com/mohr-hix/mohr/tokens"
)

// errTokenServiceNotConfigured is what RA-side token and registry commands return until the composition root
// wires openTokenService to the real store and CA.
var errTokenServiceNotConfigured = errors.New("token service not configured: the RA side (store and CA) is not wired into this build yet")

// openTokenService returns the RA side of adapter tokens (registries, enrolment codes, issuance through the CA,
// revocation). The lead wires it to internal/store (or tokens/sqlstore) and package ca.
var openTokenService = func(ctx context.Context) (*tokens.Service, error) {
	return nil, errTokenServiceNotConfigured
}

func init() { rootCmd.AddCommand(newTokenCmd()) }

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "HIX adapter tokens: enrolment codes, key generation, enrolment, listing, revocation",
		Long: `Enrolment flow (docs/tokens.md):
  RA officer:  mohr token code --siam SIAM-1001            (hand the code to the facility out of band)
  facility:    mohr token keygen --siam SIAM-1001 --pkcs11 'pkcs11:token=HIX;object=adapter?pin-source=file:pin' --csr-out adapter.csr
           or  mohr token keygen --siam SIAM-1001 --key-out adapter.key --password-file pw --csr-out adapter.csr
  facility:    mohr token redeem --server https://HIX:8443 --ca-bundle root.pem --code HIX-... --csr adapter.csr --kind pkcs11 --chain-out chain.pem
           (or, at the RA desk on the CA's own database: mohr token enrol --code HIX-... --csr adapter.csr --kind pkcs11 --chain-out chain.pem)
  facility:    mohr token install --chain chain.pem (--pkcs11 URI | --key adapter.key --password-file pw --out token.pem [--p12 token.p12])`,
	}
	cmd.AddCommand(newTokenCodeCmd(), newTokenKeygenCmd(), newTokenRedeemCmd(), newTokenEnrolCmd(), newTokenInstallCmd(), newTokenListCmd(), newTokenRevokeCmd())
	return cmd
}

func newTokenCodeCmd() *cobra.Command {
	var siam, actor string
	c := &cobra.Command{
		Use:   "code",
		Short: "Create a one-time enrolment code for an eligible facility (RA)",
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := openTokenService(cmd.Context())
			if err != nil {
				return err
			}
			code, exp, err := svc.NewEnrolmentCode(cmd.Context(), siam, actor)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\nexpires %s\n", code, exp.UTC().Format("2006-01-02T15:04:05Z"))
			return nil
		},
	}
	c.Flags().StringVar(&siam, "siam", "", "SIAM ID of the facility")
	c.Flags().StringVar(&actor, "actor", "cli:ra", "who is asking, for the audit log")
	c.MarkFlagRequired("siam")
	return c
}

// readPassword reads a keystore password from a file or an environment variable, never from a flag value.
func readPassword(file, env string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
	if v := os.Getenv(env); v != "" {
		return []byte(v), nil
	}
	return nil, fmt.Errorf("keystore password: use --password-file or set %s", env)
}

const passwordEnv = "MOHR_TOKEN_PASSWORD"

func newTokenKeygenCmd() *cobra.Command {
	var siam, name, uri, keyOut, pwFile, csrOut string
	c := &cobra.Command{
		Use:   "keygen",
		Short: "Generate the token key (on a PKCS#11 device or in an encrypted PKCS#8 file) and its CSR (facility)",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if (uri == "") == (keyOut == "") {
				return errors.New("give exactly one of --pkcs11 and --key-out")
			}
			var csr *x509.CertificateRequest
			if uri != "" {
				key, err := hsmOpener().GenerateKey(ctx, uri, "EC-P256")
				if errors.Is(err, hsm.ErrExists) {
					// Re-keying after a revocation or for a second token: the old key keeps its label.
					return fmt.Errorf("the token already holds a key or certificate labelled as in --pkcs11 %s (an earlier token's): give the new key its own label (for example object=adapter-2 in the URI, then use that URI for redeem, install and adapter run), or delete the old objects first with pkcs11-tool --delete-object if that token is revoked for good", redactURI(uri))
				}
				if err != nil {
					return err
				}
				if csr, err = tokens.NewCSR(rand.Reader, key, siam, name); err != nil {
					return err
				}
			} else {
				pw, err := readPassword(pwFile, passwordEnv)
				if err != nil {
					return err
				}
				key, err := tokens.NewSoftwareKey(rand.Reader)
				if err != nil {
					return err
				}
				enc, err := tokens.EncodeEncryptedKey(rand.Reader, key, pw)
				if err != nil {
					return err
				}
				if err := writeNew(keyOut, enc); err != nil {
					return err
				}
				if csr, err = tokens.NewCSR(rand.Reader, key, siam, name); err != nil {
					return err
				}
			}
			if err := os.WriteFile(csrOut, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw}), 0o644); err != nil {
				return err
			}
			where := uri
			if where == "" {
				where = keyOut + " (encrypted PKCS#8)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "generated an EC P-256 key: %s\nwrote the certificate request for %s to %s\n", where, siam, csrOut)
			return nil
		},
	}
	c.Flags().StringVar(&siam, "siam", "", "SIAM ID of the facility (the CSR's subject serialNumber)")
	c.Flags().StringVar(&name, "name", "HIX adapter", "common name in the CSR")
	c.Flags().StringVar(&uri, "pkcs11", "", "RFC 7512 URI of the key to generate on the facility's PKCS#11 token")
	c.Flags().StringVar(&keyOut, "key-out", "", "software token: write the encrypted PKCS#8 key here")
	c.Flags().StringVar(&pwFile, "password-file", "", "software token: file holding the keystore password (or env "+passwordEnv+")")
	c.Flags().StringVar(&csrOut, "csr-out", "adapter.csr", "write the PKCS#10 request here (PEM)")
	c.MarkFlagRequired("siam")
	return c
}

// writeNew writes a secret file that must not exist yet.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readCSR(path string) (*x509.CertificateRequest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	return x509.ParseCertificateRequest(b)
}

func encodeChain(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func newTokenEnrolCmd() *cobra.Command {
	var codeArg, codeFile, csrPath, kind, out, actor string
	c := &cobra.Command{
		Use:   "enrol",
		Short: "Redeem an enrolment code: check the facility and issue its adapter certificate from the CSR (RA)",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			code, err := readCode(codeArg, codeFile)
			if err != nil {
				return err
			}
			csr, err := readCSR(csrPath)
			if err != nil {
				return fmt.Errorf("CSR: %w", err)
			}
			svc, err := openTokenService(ctx)
			if err != nil {
				return err
			}
			iss, err := svc.Enrol(ctx, tokens.EnrolRequest{Code: code, CSR: csr, Kind: tokens.TokenKind(kind), Actor: actor})
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, encodeChain(append([]*x509.Certificate{iss.Cert}, iss.Chain...)...), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issued %s to %s, valid until %s\n", iss.Token.Serial, iss.Token.SIAMID, iss.Token.NotAfter.Format("2006-01-02T15:04:05Z"))
			return nil
		},
	}
	c.Flags().StringVar(&codeArg, "code", "", "the enrolment code HIX-... (or --code-file, or env MOHR_ENROLMENT_CODE)")
	c.Flags().StringVar(&codeFile, "code-file", "", "file holding the enrolment code")
	c.Flags().StringVar(&csrPath, "csr", "adapter.csr", "the facility's PKCS#10 request (PEM or DER)")
	c.Flags().StringVar(&kind, "kind", string(tokens.KindPhysical), "token kind: pkcs11 or software")
	c.Flags().StringVar(&out, "chain-out", "chain.pem", "write the certificate and its chain here")
	c.Flags().StringVar(&actor, "actor", "cli:ra", "who is asking, for the audit log")
	return c
}

func newTokenInstallCmd() *cobra.Command {
	var chainPath, uri, keyPath, pwFile, out, p12 string
	c := &cobra.Command{
		Use:   "install",
		Short: "Put the issued certificate with the key: onto the PKCS#11 token, or into the software keystore (facility)",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			chain, err := readCerts(chainPath)
			if err != nil {
				return err
			}
			if uri != "" {
				if err := hsmOpener().StoreCertificate(ctx, uri, chain[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "stored certificate %x (%s) beside the key %s\n", chain[0].SerialNumber, chain[0].Subject.SerialNumber, uri)
				return nil
			}
			pw, err := readPassword(pwFile, passwordEnv)
			if err != nil {
				return err
			}
			enc, err := os.ReadFile(keyPath)
			if err != nil {
				return err
			}
			key, err := tokens.DecodeEncryptedKey(enc, pw)
			if err != nil {
				return err
			}
			ks, err := tokens.EncodeKeystore(rand.Reader, key, chain[0], chain[1:], pw)
			if err != nil {
				return err
			}
			if p12 != "" {
				pfx, err := tokens.EncodePKCS12(rand.Reader, key, chain[0], chain[1:], string(pw))
				if err != nil {
					return err
				}
				if err := writeNew(p12, pfx); err != nil {
					return err
				}
			}
			if err := writeNew(out, ks); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote the software token %s (key and certificate %x of %s)\n", out, chain[0].SerialNumber, chain[0].Subject.SerialNumber)
			return nil
		},
	}
	c.Flags().StringVar(&chainPath, "chain", "chain.pem", "certificate chain from enrolment")
	c.Flags().StringVar(&uri, "pkcs11", "", "RFC 7512 URI of the token key to store the certificate beside")
	c.Flags().StringVar(&keyPath, "key", "", "software token: the encrypted key from keygen")
	c.Flags().StringVar(&pwFile, "password-file", "", "software token: keystore password file (or env "+passwordEnv+")")
	c.Flags().StringVar(&out, "out", "token.pem", "software token: write the keystore (encrypted PKCS#8 + chain) here")
	c.Flags().StringVar(&p12, "p12", "", "software token: also write a PKCS#12 file here")
	return c
}

func newTokenListCmd() *cobra.Command {
	var siam string
	c := &cobra.Command{
		Use:   "list",
		Short: "List adapter tokens (RA)",
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := openTokenService(cmd.Context())
			if err != nil {
				return err
			}
			ts, err := svc.Tokens(cmd.Context(), siam)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SERIAL\tSIAM ID\tKIND\tSTATUS\tNOT AFTER")
			for _, t := range ts {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Serial, t.SIAMID, t.Kind, t.Status, t.NotAfter.Format("2006-01-02T15:04:05Z"))
			}
			return w.Flush()
		},
	}
	c.Flags().StringVar(&siam, "siam", "", "only this facility")
	return c
}

func newTokenRevokeCmd() *cobra.Command {
	var reasonName, actor, certFile string
	c := &cobra.Command{
		Use:   "revoke [SERIAL]",
		Short: "Revoke a token's certificate with an RFC 5280 reason (RA); keyCompromise for a lost or stolen token",
		Example: "  mohr token revoke 1c6907007af448945fc4d662b7c5bed1 --reason keyCompromise\n" +
			"  mohr token revoke --cert chain.pem --reason cessationOfOperation     # the token whose certificate is in the file",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var serial string
			switch {
			case len(args) == 1 && certFile == "":
				serial = strings.ToLower(strings.TrimPrefix(strings.ToLower(args[0]), "0x"))
			case len(args) == 0 && certFile != "":
				certs, err := readCerts(certFile)
				if err != nil {
					return fmt.Errorf("--cert %s: %s; give the token's certificate or chain file (PEM), leaf first", certFile, plainError(err))
				}
				serial = ca.SerialHex(certs[0].SerialNumber)
			default:
				return errors.New("give the token's serial (mohr token list shows it) or --cert with its certificate file, not both")
			}
			r, err := revocation.ParseReason(reasonName)
			if err == nil {
				err = revocation.CheckRevocationReason(r)
			}
			if err != nil || r == revocation.CertificateHold {
				return fmt.Errorf("--reason %q: give keyCompromise (lost or stolen), affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn or unspecified; a hold goes through mohr facility sync", reasonName)
			}
			svc, err := openTokenService(cmd.Context())
			if err != nil {
				return err
			}
			if err := svc.Revoke(cmd.Context(), serial, int(r), actor); err != nil {
				if errors.Is(err, tokens.ErrNotFound) {
					return fmt.Errorf("no token with serial %s: mohr token list --siam SIAM-ID shows a facility's tokens", serial)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked token %s (%s): OCSP and the CRL say so now, gateways that follow the exchange refuse it within seconds\n", serial, r)
			return nil
		},
	}
	c.Flags().StringVar(&reasonName, "reason", "unspecified", "RFC 5280 CRLReason, by name or code: keyCompromise (1) for a lost or stolen token, affiliationChanged (3), superseded (4), cessationOfOperation (5)")
	c.Flags().StringVar(&certFile, "cert", "", "revoke the token whose certificate (or chain, leaf first) is in this PEM file")
	c.Flags().StringVar(&actor, "actor", "cli:ra", "who is asking, for the audit log")
	return c
}
