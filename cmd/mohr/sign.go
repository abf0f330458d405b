package main

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/pades"
)

func init() { rootCmd.AddCommand(newSignCmd()) }

// newSignCmd is "mohr sign": an HIX-Rx-CAdES B-B signature (B-T with --tsa) over a FHIR prescription.
func newSignCmd() *cobra.Command {
	var keyURI, certFile, chainFile, in, out, tsa, qrOut, qrText string
	var timeout time.Duration
	var pdf, ocspOnline bool
	var crls, ocsps []string
	cmd := &cobra.Command{
		Use:   "sign --key URI --cert FILE [--chain FILE] --in FILE --out FILE [--tsa URL] [--qr-out FILE.png] [--pdf [--ocsp] [--crl FILE] [--ocsp-response FILE]]",
		Short: "Sign a FHIR prescription (HIX-Rx-CAdES B-B, or B-T with --tsa; --qr-out adds the offline QR code), or its PDF printout as PAdES (--pdf)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyURI == "" || certFile == "" || in == "" || out == "" {
				return errors.New("sign: --key, --cert, --in and --out are required")
			}
			ctx := cmd.Context()
			certs, err := readCerts(certFile)
			if err != nil {
				return err
			}
			chain := certs[:1]
			if chainFile != "" {
				more, err := readCerts(chainFile)
				if err != nil {
					return err
				}
				chain = append(chain, more...)
			}
			content, err := os.ReadFile(in)
			if err != nil {
				return fmt.Errorf("sign: %w", err)
			}
			key, err := newKeyResolver().Signer(ctx, keyURI)
			if err != nil {
				return fmt.Errorf("sign: open key: %w", err)
			}
			if pdf {
				return signPDF(cmd, content, key, chain, out, tsa, timeout, ocspOnline, crls, ocsps)
			}
			der, err := signing.Sign(ctx, content, signing.SignOptions{Signer: key, Chain: chain})
			if err != nil {
				return err
			}
			if qrOut != "" || qrText != "" {
				// The offline QR code: the same key signs the payload that names this CAdES signature.
				if err := writeQR(ctx, content, der, key, chain, qrOut, qrText); err != nil {
					return err
				}
			}
			if tsa != "" {
				if der, err = signing.AddSignatureTimestamp(ctx, der, &signing.HTTPTimestamper{URL: tsa, Timeout: timeout}); err != nil {
					return err
				}
			}
			if err := os.WriteFile(out, der, 0o644); err != nil {
				return fmt.Errorf("sign: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyURI, "key", "", "signing key URI (file:, pkcs11:, card:)")
	f.StringVar(&certFile, "cert", "", "signing certificate (PEM)")
	f.StringVar(&chainFile, "chain", "", "intermediate certificates (PEM), not the root")
	f.StringVar(&in, "in", "", "FHIR Bundle to sign (JSON)")
	f.StringVar(&out, "out", "", "output CMS signature (DER)")
	f.StringVar(&tsa, "tsa", "", "RFC 3161 time-stamping URL: add a signature timestamp (B-T)")
	f.StringVar(&qrOut, "qr-out", "", "also write the offline QR code (PNG) of the prescription, signed with the same key")
	f.StringVar(&qrText, "qr-text", "", "also write the offline QR code's text (RX1:...)")
	f.DurationVar(&timeout, "tsa-timeout", 10*time.Second, "time-stamping request timeout")
	f.BoolVar(&pdf, "pdf", false, "sign a PDF (--in) as PAdES baseline: B-B, B-T with --tsa, B-LT with --tsa and --ocsp or --crl")
	f.BoolVar(&ocspOnline, "ocsp", false, "with --pdf and --tsa: fetch OCSP responses from the responders the certificates name into the DSS (B-LT)")
	f.StringArrayVar(&crls, "crl", nil, "with --pdf and --tsa: a DER CRL file to add to the DSS (B-LT; repeatable)")
	f.StringArrayVar(&ocsps, "ocsp-response", nil, "with --pdf and --tsa: a DER OCSP response file to add to the DSS (B-LT; repeatable)")
	return cmd
}

// signPDF signs a PDF as PAdES baseline (signing/pades.Sign) and writes it to out.
func signPDF(cmd *cobra.Command, in []byte, key crypto.Signer, chain []*x509.Certificate, out, tsa string, timeout time.Duration, ocspOnline bool, crlFiles, ocspFiles []string) error {
	o := pades.Options{Signer: key, Chain: chain, Name: chain[0].Subject.CommonName}
	if tsa != "" {
		o.Timestamper = &signing.HTTPTimestamper{URL: tsa, Timeout: timeout}
	}
	if ocspOnline {
		o.Revocation = &signing.HTTPRevocation{Timeout: timeout}
	}
	for _, f := range crlFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("sign: --crl: %w", err)
		}
		if _, err := x509.ParseRevocationList(b); err != nil {
			return fmt.Errorf("sign: --crl %s: %w", f, err)
		}
		o.CRLs = append(o.CRLs, b)
	}
	for _, f := range ocspFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("sign: --ocsp-response: %w", err)
		}
		if _, err := ocsp.ParseResponse(b, nil); err != nil {
			return fmt.Errorf("sign: --ocsp-response %s: %w", f, err)
		}
		o.OCSPs = append(o.OCSPs, b)
	}
	signed, level, err := pades.Sign(cmd.Context(), in, o)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, signed, 0o644); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "signed %s as PAdES %s\n", out, level)
	return nil
}
