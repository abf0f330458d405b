package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/signing/offline"
)

func init() { rootCmd.AddCommand(newQRCmd(), newTrustBundleCmd()) }

// writeQR makes the offline QR code of a signed prescription (signing/offline): the payload names the CAdES
// signature der and is signed with key, whose certificate is chain[0].
func writeQR(ctx context.Context, content, der []byte, key crypto.Signer, chain []*x509.Certificate, pngPath, textPath string) error {
	p, err := offline.FromPrescription(content, der)
	if err != nil {
		return err
	}
	text, err := offline.Encode(ctx, p, key, chain)
	if err != nil {
		return err
	}
	if textPath != "" {
		if err := os.WriteFile(textPath, []byte(text+"\n"), 0o644); err != nil {
			return fmt.Errorf("sign: %w", err)
		}
	}
	if pngPath != "" {
		img, _, err := offline.QRPNG(text, 4)
		if err != nil {
			return err
		}
		if err := os.WriteFile(pngPath, img, 0o644); err != nil {
			return fmt.Errorf("sign: %w", err)
		}
	}
	return nil
}

// readSealKey reads the pinned public key of the Ministry's trust-bundle seal: a PEM PUBLIC KEY or CERTIFICATE.
func readSealKey(path string) (crypto.PublicKey, error) {
	if path == "" {
		return nil, errors.New("the pinned seal key is required (--seal-key FILE: the Ministry's trust-bundle seal public key, PEM)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("seal key %s: not PEM", path)
	}
	switch blk.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(blk.Bytes)
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}
	return nil, fmt.Errorf("seal key %s: PEM %s is neither PUBLIC KEY nor CERTIFICATE", path, blk.Type)
}

// newQRCmd is "mohr qr": the offline QR code of signed prescriptions.
func newQRCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "qr", Short: "Offline verification of the QR code on printed prescriptions"}
	var bundlePath, sealKey, format, at string
	verify := &cobra.Command{
		Use:   "verify --bundle FILE --seal-key FILE [--at RFC3339] [--format text|json] IMAGE|TEXT|-",
		Short: "Check a prescription's QR code offline against a trust bundle (PNG or JPEG image, RX1: text, or - for stdin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if bundlePath == "" {
				return errors.New("qr verify: --bundle is required (mohr trust-bundle fetch)")
			}
			if format != "text" && format != "json" {
				return fmt.Errorf("qr verify: --format must be text or json, not %q", format)
			}
			pub, err := readSealKey(sealKey)
			if err != nil {
				return fmt.Errorf("qr verify: %w", err)
			}
			signed, err := os.ReadFile(bundlePath)
			if err != nil {
				return fmt.Errorf("qr verify: %w", err)
			}
			now, err := checkTime(at)
			if err != nil {
				return fmt.Errorf("qr verify: %w", err)
			}
			b, err := offline.OpenBundle(signed, pub, now)
			if err != nil {
				return fmt.Errorf("qr verify: %w", err)
			}
			text, err := qrInput(cmd.InOrStdin(), args[0])
			if err != nil {
				return fmt.Errorf("qr verify: %w", err)
			}
			res := offline.Verify(text, b, now)
			out := cmd.OutOrStdout()
			if format == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else {
				printOffline(out, res)
			}
			if !res.Report.Passed() {
				return &exitError{code: 2, err: fmt.Errorf("qr verify: %s", res.Report.Indication)}
			}
			return nil
		},
	}
	f := verify.Flags()
	f.StringVar(&bundlePath, "bundle", "", "trust bundle (from mohr trust-bundle fetch)")
	f.StringVar(&sealKey, "seal-key", "", "the pinned public key of the Ministry's trust-bundle seal (PEM)")
	f.StringVar(&format, "format", "text", "output: text or json")
	f.StringVar(&at, "at", "", "check as of this time (RFC 3339, e.g. 2026-12-03T10:00:00Z) instead of now: the bundle's dates and the certificates' validity")
	cmd.AddCommand(verify)
	return cmd
}

// checkTime is the time an offline check is made at: at (RFC 3339) if given, else the clock. Passing it in
// lets an auditor ask "would this paper have passed on that day" and tests walk across a bundle's next update
// and a certificate's expiry.
func checkTime(at string) (time.Time, error) {
	if at == "" {
		return time.Now(), nil
	}
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return time.Time{}, fmt.Errorf("--at %q is not an RFC 3339 time (e.g. 2026-12-03T10:00:00Z)", at)
	}
	return t, nil
}

// qrInput returns the QR text from arg: "-" reads stdin; an existing file is an image (PNG, JPEG) or holds
// the text; anything else is the text itself.
func qrInput(stdin io.Reader, arg string) (string, error) {
	var b []byte
	switch st, err := os.Stat(arg); {
	case arg == "-":
		if b, err = io.ReadAll(io.LimitReader(stdin, 64<<20)); err != nil {
			return "", err
		}
	case err == nil && !st.IsDir():
		if b, err = os.ReadFile(arg); err != nil {
			return "", err
		}
	default:
		return arg, nil
	}
	if t := strings.TrimSpace(string(b)); strings.HasPrefix(t, offline.Prefix) {
		return t, nil
	}
	return offline.ReadQRFile(b)
}

func printOffline(w io.Writer, res *offline.Result) {
	r := res.Report
	fmt.Fprintln(w, r.Summary())
	if p := res.Payload; p != nil {
		fmt.Fprintf(w, "  prescription %s issued %s, patient %s, %d medicine(s)\n", p.IDString(), p.IssuedAt().Format(time.RFC3339), p.Patient, len(p.Medicines))
		for _, m := range p.Medicines {
			fmt.Fprintf(w, "    %s  %s", m.Code, m.Dosage)
			if m.Quantity > 0 {
				fmt.Fprintf(w, "  (%d %s)", m.Quantity, m.Unit)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "  full prescription SHA-256 %x\n", p.ContentSHA256)
	}
	if b := res.Bundle; b != nil {
		fmt.Fprintf(w, "  trust bundle issued %s (%s old), next update %s, %d revoked certificate(s)\n",
			b.Issued.Format(time.RFC3339), b.Age, b.NextUpdate.Format(time.RFC3339), b.Revoked)
	}
	fmt.Fprintf(w, "  note: %s\n", res.Note)
}

// newTrustBundleCmd is "mohr trust-bundle": fetch and inspect the signed trust bundle offline verifiers use.
func newTrustBundleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "trust-bundle", Short: "Fetch and inspect the signed trust bundle for offline verification"}
	var url, sealKey, out string
	var timeout time.Duration
	fetch := &cobra.Command{
		Use:   "fetch --url URL --seal-key FILE --out FILE",
		Short: "Download the trust bundle, check it against the pinned seal key and its dates, and save it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" || out == "" {
				return errors.New("trust-bundle fetch: --url and --out are required")
			}
			pub, err := readSealKey(sealKey)
			if err != nil {
				return fmt.Errorf("trust-bundle fetch: %w", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return fmt.Errorf("trust-bundle fetch: %w", err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("trust-bundle fetch: %w", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("trust-bundle fetch: %s answered %s", url, resp.Status)
			}
			signed, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
			if err != nil {
				return fmt.Errorf("trust-bundle fetch: %w", err)
			}
			b, err := offline.OpenBundle(signed, pub, time.Now())
			if err != nil {
				return fmt.Errorf("trust-bundle fetch: %w", err)
			}
			if err := os.WriteFile(out, signed, 0o644); err != nil {
				return fmt.Errorf("trust-bundle fetch: %w", err)
			}
			printBundle(cmd.OutOrStdout(), b, time.Now())
			return nil
		},
	}
	ff := fetch.Flags()
	ff.StringVar(&url, "url", "", "the exchange's trust bundle, e.g. http://HOST:8080/trust-bundle")
	ff.StringVar(&sealKey, "seal-key", "", "the pinned public key of the Ministry's trust-bundle seal (PEM)")
	ff.StringVar(&out, "out", "", "where to save the bundle")
	ff.DurationVar(&timeout, "timeout", 30*time.Second, "download timeout")
	var showKey, showAt string
	show := &cobra.Command{
		Use:   "show --seal-key FILE [--at RFC3339] FILE",
		Short: "Check a saved trust bundle's signature and say what it holds and how old it is",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := readSealKey(showKey)
			if err != nil {
				return fmt.Errorf("trust-bundle show: %w", err)
			}
			signed, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("trust-bundle show: %w", err)
			}
			b, err := offline.InspectBundle(signed, pub)
			if err != nil {
				return fmt.Errorf("trust-bundle show: %w", err)
			}
			now, err := checkTime(showAt)
			if err != nil {
				return fmt.Errorf("trust-bundle show: %w", err)
			}
			printBundle(cmd.OutOrStdout(), b, now)
			if _, err := offline.OpenBundle(signed, pub, now); err != nil {
				return fmt.Errorf("trust-bundle show: %w", err)
			}
			return nil
		},
	}
	show.Flags().StringVar(&showKey, "seal-key", "", "the pinned public key of the Ministry's trust-bundle seal (PEM)")
	show.Flags().StringVar(&showAt, "at", "", "say the bundle's age and validity as of this time (RFC 3339) instead of now")
	cmd.AddCommand(fetch, show)
	return cmd
}

func printBundle(w io.Writer, b *offline.Bundle, now time.Time) {
	var names bytes.Buffer
	for _, c := range b.Intermediates {
		fmt.Fprintf(&names, "\n  intermediate %s (until %s)", c.Subject.CommonName, c.NotAfter.Format("2006-01-02"))
	}
	for _, c := range b.Roots {
		fmt.Fprintf(&names, "\n  root %s (until %s)", c.Subject.CommonName, c.NotAfter.Format("2006-01-02"))
	}
	fmt.Fprintf(w, "trust bundle %x\n  issued %s, %s old; next update %s%s\n  %d TSA and %d OCSP responder certificate(s); %d revoked physician certificate(s)\n",
		b.SHA256[:8], b.Issued.Format(time.RFC3339), now.Sub(b.Issued).Round(time.Minute), b.NextUpdate.Format(time.RFC3339),
		names.String(), len(b.TSAs), len(b.OCSPResponders), b.RevokedCount)
}
