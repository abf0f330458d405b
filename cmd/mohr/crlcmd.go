package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/ca/revocation"
)

func init() { rootCmd.AddCommand(newCRLCmd()) }

func newCRLCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "crl", Short: "Certificate revocation lists"}
	var out string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Sign every CRL shard now and write them to a directory (N.crl, DER), e.g. for a CDN",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			is, err := loadIssuer(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			return withStore(cmd.Context(), func(st appStore) error {
				// A superseded key still signs the CRLs of what it issued; a retired one nothing (cakeys.go).
				if s, err := caKeyState(cmd.Context(), st, caKeyID(is.Cert)); err != nil {
					return err
				} else if s == caKeyStateRetired {
					return errCAKeyRetired
				}
				p, err := revocation.NewCRLPublisher(revocation.CRLConfig{Issuer: is, Store: st,
					Shards: cfg.CA.Issuance.CRLShards, BaseURL: cfg.CA.Issuance.CRLBaseURL})
				if err != nil {
					return err
				}
				if err := p.PublishAll(cmd.Context()); err != nil {
					return err
				}
				for i := 0; i < p.Shards(); i++ {
					der, _, next, ok := p.CRL(i)
					if !ok {
						return fmt.Errorf("shard %d was not published", i)
					}
					path := filepath.Join(out, fmt.Sprintf("%d.crl", i))
					if err := os.WriteFile(path+".tmp", der, 0o644); err != nil {
						return err
					}
					if err := os.Rename(path+".tmp", path); err != nil {
						return err
					}
					if i == 0 {
						fmt.Fprintf(cmd.OutOrStdout(), "next update %s\n", next.UTC().Format("2006-01-02T15:04:05Z"))
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %d CRL shards to %s\n", p.Shards(), out)
				return nil
			})
		},
	}
	gen.Flags().StringVar(&out, "out", "", "directory to write the shards to")
	_ = gen.MarkFlagRequired("out")
	cmd.AddCommand(gen)
	return cmd
}
