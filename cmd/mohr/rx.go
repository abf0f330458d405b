package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/internal/ids"
	"github.com/mohr-hix/mohr/signing/pades"
	"github.com/mohr-hix/mohr/signing/rxgen"
)

func init() { rootCmd.AddCommand(newRxCmd()) }

// newRxCmd is "mohr rx": prescription tooling.
func newRxCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rx", Short: "Prescription tooling"}
	var count int
	var out, code, council string
	var seed uint64
	gen := &cobra.Command{
		Use:   "generate --count N --out DIR",
		Short: "Write N synthetic FHIR R4 prescription Bundles (for tests, demos and benchmarks)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count <= 0 || out == "" {
				return errors.New("rx generate: --count (> 0) and --out are required")
			}
			g := rxgen.New(seed)
			doc := g.Physician()
			if code != "" {
				c, err := ids.NationalCode(code)
				if err != nil {
					return fmt.Errorf("rx generate: --national-code: %w", err)
				}
				doc.NationalCode = c
			}
			if council != "" {
				c, err := ids.CouncilNumber(council)
				if err != nil {
					return fmt.Errorf("rx generate: --council: %w", err)
				}
				doc.CouncilNumber = c
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("rx generate: %w", err)
			}
			for i := 1; i <= count; i++ {
				b, err := g.Prescription(doc)
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(out, fmt.Sprintf("rx-%06d.json", i)), b, 0o644); err != nil {
					return fmt.Errorf("rx generate: %w", err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d prescriptions by council no. %s to %s\n", count, doc.CouncilNumber, out)
			return nil
		},
	}
	f := gen.Flags()
	f.IntVar(&count, "count", 0, "number of prescriptions")
	f.StringVar(&out, "out", "", "output directory")
	f.Uint64Var(&seed, "seed", 1, "random seed (runs are reproducible)")
	f.StringVar(&code, "national-code", "", "prescriber's national code (default: random)")
	f.StringVar(&council, "council", "", "prescriber's council number (default: random)")
	cmd.AddCommand(gen, newRxRenderCmd())
	return cmd
}

// newRxRenderCmd is "mohr rx render": the Persian PDF printout of a prescription (signing/pades.Render).
func newRxRenderCmd() *cobra.Command {
	var in, out, signer string
	cmd := &cobra.Command{
		Use:   "render --in rx.json --out rx.pdf [--signer cert.pem]",
		Short: "Render a FHIR prescription as a one-page Persian PDF (sign it with mohr sign --pdf)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" || out == "" {
				return errors.New("rx render: --in and --out are required")
			}
			b, err := os.ReadFile(in)
			if err != nil {
				return fmt.Errorf("rx render: %w", err)
			}
			var cert *x509.Certificate
			if signer != "" {
				certs, err := readCerts(signer)
				if err != nil {
					return fmt.Errorf("rx render: --signer: %w", err)
				}
				cert = certs[0]
			}
			pdf, err := pades.Render(b, cert)
			if err != nil {
				return fmt.Errorf("rx render: %w", err)
			}
			if err := os.WriteFile(out, pdf, 0o644); err != nil {
				return fmt.Errorf("rx render: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&in, "in", "", "FHIR Bundle (JSON)")
	f.StringVar(&out, "out", "", "output PDF")
	f.StringVar(&signer, "signer", "", "the certificate that will sign the PDF (PEM): the prescriber is printed from it")
	return cmd
}
