package main

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	var crls, ocsps, signerCAs, policies []string
	cmd := &cobra.Command{
		Use:   "sign --key URI --cert FILE [--chain FILE] --in FILE|DIR --out FILE|DIR [--tsa URL] [--qr-out FILE.png] [--pdf [--ocsp] [--crl FILE] [--ocsp-response FILE]]",
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
			// A directory: every *.json in it, into --out (a directory) as *.p7s, with the key opened once (a card's
			// PIN asked once): 2,000 prescriptions are one process, not 2,000.
			var batch []string
			if fi, err := os.Stat(in); err == nil && fi.IsDir() {
				if pdf || qrOut != "" || qrText != "" {
					return errors.New("sign: a directory --in signs prescriptions (.json) only, without --pdf or --qr-out")
				}
				if batch, err = filepath.Glob(filepath.Join(in, "*.json")); err != nil || len(batch) == 0 {
					return fmt.Errorf("sign: no .json prescription in %s", in)
				}
				if err := os.MkdirAll(out, 0o755); err != nil {
					return fmt.Errorf("sign: %w", err)
				}
			}
			var content []byte
			if batch == nil {
				if content, err = os.ReadFile(in); err != nil {
					return fmt.Errorf("sign: %w", err)
				}
			}
			// Refuse, before the key or card is touched, a certificate the validation policy would not accept
			// as a prescriber's (a TSA, seal, facility or TLS certificate; a revoked one when --ocsp can tell).
			if err := checkPrescriberCert(cmd, chain, signerCAs, policies, ocspOnline, timeout); err != nil {
				return err
			}
			key, err := newKeyResolver().Signer(ctx, keyURI)
			if err != nil {
				return fmt.Errorf("sign: open key: %w", err)
			}
			if pdf {
				return signPDF(cmd, content, key, chain, out, tsa, timeout, ocspOnline, crls, ocsps)
			}
			for _, f := range batch {
				b, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("sign: %w", err)
				}
				der, err := signing.Sign(ctx, b, signing.SignOptions{Signer: key, Chain: chain})
				if err == nil && tsa != "" {
					der, err = signing.AddSignatureTimestamp(ctx, der, &signing.HTTPTimestamper{URL: tsa, Timeout: timeout})
				}
				if err != nil {
					return fmt.Errorf("sign: %s: %w", f, err)
				}
				if err := os.WriteFile(filepath.Join(out, strings.TrimSuffix(filepath.Base(f), ".json")+".p7s"), der, 0o644); err != nil {
					return fmt.Errorf("sign: %w", err)
				}
			}
			if batch != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "signed %d prescriptions into %s\n", len(batch), out)
				return nil
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
	f.BoolVar(&ocspOnline, "ocsp", false, "ask the certificate's OCSP responder and refuse a revoked certificate; with --pdf and --tsa also embed the responses in the DSS (B-LT)")
	f.StringSliceVar(&signerCAs, "signer-cas", nil, "CAs allowed to issue prescribers' certificates (PEM; default: validation.signer_cas, else the data directory's intermediate)")
	f.StringSliceVar(&policies, "prescriber-policy", nil, "physician-signing certificate policy OID (default: validation.prescriber_policies, else the CA profile's)")
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

// checkPrescriberCert applies the trust policy's signer constraints (signing.TrustPolicy.CheckPrescriber) to
// chain[0], and with ocsp its revocation status at the responder it names.
func checkPrescriberCert(cmd *cobra.Command, chain []*x509.Certificate, signerCAs, policies []string, ocsp bool, timeout time.Duration) error {
	conf, err := loadConfig()
	if err != nil {
		return err
	}
	vc := conf.Validation
	if len(signerCAs) > 0 {
		vc.SignerCAs = signerCAs
	}
	if len(policies) > 0 {
		vc.PrescriberPolicies = policies
	}
	d := dataDirTrustDefaults(conf)
	if len(vc.SignerCAs) == 0 && d.intermediate == nil && len(chain) > 1 {
		// Nothing configured on this machine (a physician's workstation): the issuer given with --chain stands
		// in for the signer CA here. This check is the signer's guard against the wrong certificate; whether
		// the issuer may make prescribers is the verifier's decision under its own trust policy.
		d.intermediate = chain[1]
	}
	tp, err := vc.prescriberPolicy(conf, d)
	if err != nil {
		return fmt.Errorf("sign: %w (give --signer-cas)", err)
	}
	if err := tp.CheckPrescriber(chain[0], chain[1:]); err != nil {
		return fmt.Errorf("sign: refusing to sign with %q: %w", chain[0].Subject.CommonName, err)
	}
	if ocsp && len(chain[0].OCSPServer) > 0 {
		var issuer *x509.Certificate
		for _, c := range chain[1:] {
			if chain[0].CheckSignatureFrom(c) == nil {
				issuer = c
			}
		}
		st, err := signing.CertificateStatus(cmd.Context(), &signing.HTTPRevocation{Timeout: timeout}, chain[0], issuer)
		if err != nil {
			return fmt.Errorf("sign: revocation status of the signing certificate: %w", err)
		}
		if st != "good" {
			return fmt.Errorf("sign: refusing to sign: the signing certificate is %s (%w)", st, signing.ErrNotPrescriber)
		}
	}
	return nil
}
