package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/ca"
)

func init() { rootCmd.AddCommand(newCertCmd()) }

// cliActor names the operator at the terminal for the audit log.
func cliActor() string {
	u := os.Getenv("SUDO_USER")
	if u == "" {
		u = os.Getenv("USER")
	}
	if u == "" {
		u = fmt.Sprint(os.Getuid())
	}
	return "cli:" + u
}

func newCertCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Issue, list, show and revoke certificates"}

	var req ca.Request
	var csrFile, validUntil, chainOut string
	var skipRegistry bool
	var ips []string
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Issue a certificate from a CSR and print it (PEM)",
		Long: "Issue a certificate from a CSR. Profiles: " + strings.Join(ca.Profiles, ", ") + ".\n" +
			"Only the public key is taken from the CSR; the subject is built from the flags.",
		Example: "  mohr cert issue --profile facility-adapter --csr his.csr --siam-id SIAM-10001 --licence LIC/1402/77 --valid-until 2027-03-20\n" +
			"  mohr cert issue --profile physician-signing --csr dr.csr --name 'Dr Sara Ahmadi' --national-code 0499370899 --council-no 123456",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := os.ReadFile(csrFile)
			if err != nil {
				return err
			}
			if req.CSR, err = ca.ParseCSR(b); err != nil {
				return err
			}
			if validUntil != "" {
				if req.ValidUntil, err = parseDate(validUntil); err != nil {
					return fmt.Errorf("--valid-until: %w", err)
				}
			}
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return fmt.Errorf("--ip %q is not an IP address", s)
				}
				req.IPs = append(req.IPs, ip)
			}
			if req.Profile == ca.ProfileTLSServer && req.CommonName != "" && !slices.Contains(req.DNSNames, req.CommonName) && !slices.Contains(ips, req.CommonName) {
				return fmt.Errorf("--name %q is not one of the certificate's names (--dns %s, --ip %s): a tls-server certificate's common name must repeat one of them (CA/Browser Forum Baseline Requirements 7.1.4.3). Give --name with the host name clients connect to, and list it in --dns (or --ip)",
					req.CommonName, strings.Join(req.DNSNames, ","), strings.Join(ips, ","))
			}
			req.Actor = cliActor()
			if skipRegistry {
				req.Actor += " (registry check skipped)"
			}
			return withCA(cmd.Context(), !skipRegistry, func(c *ca.CA, _ appStore) error {
				cert, err := c.Issue(cmd.Context(), req)
				if err != nil {
					return err
				}
				if chainOut != "" {
					// Leaf, intermediate, root: what a TLS server (the gateway's --tls-cert) or a token install takes.
					if err := os.WriteFile(chainOut, encodeChain(append([]*x509.Certificate{cert}, c.Issuer().Chain...)...), 0o644); err != nil {
						return err
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "issued %s certificate %s; wrote it with its chain (intermediate, root) to %s\n", req.Profile, ca.SerialHex(cert.SerialNumber), chainOut)
				}
				return pem.Encode(cmd.OutOrStdout(), &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
			})
		},
	}
	f := issue.Flags()
	f.StringVar(&req.Profile, "profile", "", "certificate profile")
	f.StringVar(&csrFile, "csr", "", "PKCS#10 request (PEM or DER)")
	f.StringVar(&req.CommonName, "name", "", "holder's name (subject CN)")
	f.StringVar(&req.Organization, "org", "", "organisation (subject O)")
	f.StringVar(&req.SIAMID, "siam-id", "", "facility SIAM ID (facility-adapter)")
	f.StringVar(&req.LicenceNumber, "licence", "", "facility licence number (facility-adapter)")
	f.StringVar(&req.SystemCertID, "system-cert", "", "certified information system ID (facility-adapter)")
	f.StringVar(&req.NationalCode, "national-code", "", "physician's national code (physician-*)")
	f.StringVar(&req.CouncilNumber, "council-no", "", "medical-council number (physician-*)")
	f.StringVar(&req.Profession, "profession", "", "profession or specialty (physician-*)")
	f.StringSliceVar(&req.DNSNames, "dns", nil, "DNS names (tls-server)")
	f.StringSliceVar(&ips, "ip", nil, "IP addresses (tls-server)")
	f.StringVar(&req.Role, "role", "", "role: operator, ra-officer, auditor (operator); pharmacy, insurer (organisation-auth, organisation-seal)")
	f.StringVar(&validUntil, "valid-until", "", "end of the standing the certificate rests on (YYYY-MM-DD or RFC 3339); the certificate never outlives it")
	f.BoolVar(&skipRegistry, "skip-registry", false, "issue facility and physician certificates without the registry check (development and tests only; the audit log records it)")
	f.StringVar(&chainOut, "chain-out", "", "also write the certificate with its chain (intermediate, root) to this PEM file")
	_ = issue.MarkFlagRequired("profile")
	_ = issue.MarkFlagRequired("csr")

	var asJSON, asPEM bool
	var filter ca.CertFilter
	list := &cobra.Command{
		Use:   "list",
		Short: "List certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), func(st appStore) error {
				recs, err := st.Certificates(cmd.Context(), filter)
				if err != nil {
					return err
				}
				if asJSON {
					out := make([]certJSON, 0, len(recs))
					for _, r := range recs {
						out = append(out, toCertJSON(r))
					}
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(out)
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "SERIAL\tPROFILE\tSTATUS\tBOUND TO\tNOT AFTER")
				for _, r := range recs {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Serial, r.Profile, r.Status, r.Subject2, r.NotAfter.UTC().Format(time.DateOnly))
				}
				return w.Flush()
			})
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	list.Flags().StringVar(&filter.Profile, "profile", "", "only this profile")
	list.Flags().StringVar((*string)(&filter.Status), "status", "", "only this status: pending, issued, failed, revoked, hold")
	list.Flags().IntVar(&filter.Limit, "limit", 1000, "at most this many")
	list.Flags().StringVar(&filter.After, "after", "", "list serials after this one (paging)")

	show := &cobra.Command{
		Use:   "show SERIAL",
		Short: "Show one certificate: its record as JSON, or its PEM with --pem",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			serial, err := normSerial(args[0])
			if err != nil {
				return err
			}
			return withStore(cmd.Context(), func(st appStore) error {
				r, err := st.Certificate(cmd.Context(), serial)
				if err != nil {
					return err
				}
				if asPEM {
					if r.DER == nil {
						return fmt.Errorf("certificate %s has no signed certificate (status %s)", serial, r.Status)
					}
					return pem.Encode(cmd.OutOrStdout(), &pem.Block{Type: "CERTIFICATE", Bytes: r.DER})
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(toCertJSON(r))
			})
		},
	}
	show.Flags().BoolVar(&asPEM, "pem", false, "print the certificate as PEM")
	cmd.AddCommand(issue, list, show)
	cmd.AddCommand(newRevokeCmds()...)
	return cmd
}

type certJSON struct {
	Serial    string    `json:"serial"`
	Profile   string    `json:"profile"`
	Status    ca.Status `json:"status"`
	Subject   string    `json:"subject"`
	BoundTo   string    `json:"bound_to"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Shard     int       `json:"crl_shard"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	Reason    int       `json:"revocation_reason,omitempty"`
	PEM       string    `json:"pem,omitempty"`
}

func toCertJSON(r ca.CertRecord) certJSON {
	j := certJSON{Serial: r.Serial, Profile: r.Profile, Status: r.Status, Subject: r.Subject, BoundTo: r.Subject2,
		NotBefore: r.NotBefore.UTC(), NotAfter: r.NotAfter.UTC(), Shard: r.Shard}
	if r.Status == ca.StatusRevoked || r.Status == ca.StatusHeld {
		j.RevokedAt, j.Reason = r.RevokedAt.UTC(), r.RevocationReason
	}
	if r.DER != nil {
		j.PEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.DER}))
	}
	return j
}

// normSerial accepts hex with or without colons and a 0x prefix, and returns the store's form.
func normSerial(s string) (string, error) {
	s = strings.ToLower(strings.TrimPrefix(strings.ReplaceAll(strings.TrimSpace(s), ":", ""), "0x"))
	s = strings.TrimLeft(s, "0")
	if s == "" || len(s) > 40 {
		return "", errors.New("serial must be 1 to 40 hex digits")
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return "", fmt.Errorf("serial %q is not hex", s)
		}
	}
	return s, nil
}

func parseDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, errors.New("want YYYY-MM-DD or RFC 3339")
	}
	// A date means the end of that day, UTC.
	return t.Add(24*time.Hour - time.Second).UTC(), nil
}

// withCA opens the store and the CA for one CLI command. With checkRegistry, facility and physician
// certificates are issued only on a valid registry standing, which also caps their lifetime.
func withCA(ctx context.Context, checkRegistry bool, fn func(*ca.CA, appStore) error) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	is, err := loadIssuer(ctx, cfg)
	if err != nil {
		return err
	}
	return withStore(ctx, func(st appStore) error {
		var opt ca.Options
		if checkRegistry {
			ts, db, err := openTokenStore(ctx, cfg, st)
			if err != nil {
				return err
			}
			defer db.Close()
			opt.RA = registryRA{ts}
		}
		c, err := openCA(ctx, st, is, cfg.CA.Issuance, opt, cliActor()) // cakeys.go
		if err != nil {
			return err
		}
		return fn(c, st)
	})
}
