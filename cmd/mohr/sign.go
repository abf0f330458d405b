package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/signing"
)

func init() { rootCmd.AddCommand(newSignCmd()) }

// newSignCmd is "mohr sign": an HIX-Rx-CAdES B-B signature (B-T with --tsa) over a FHIR prescription.
func newSignCmd() *cobra.Command {
	var keyURI, certFile, chainFile, in, out, tsa, qrOut, qrText string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "sign --key URI --cert FILE [--chain FILE] --in FILE --out FILE [--tsa URL] [--qr-out FILE.png]",
		Short: "Sign a FHIR prescription (HIX-Rx-CAdES B-B, or B-T with --tsa)",
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
	return cmd
}
