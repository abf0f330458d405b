package main

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/ca/revocation"
)

// newRevokeCmds returns `mohr cert revoke|hold|release`. They write to the store directly; a running server
// notices the change through the audit log within seconds and re-signs the OCSP responses and the CRL shard.
func newRevokeCmds() []*cobra.Command {
	var reason string
	revoke := &cobra.Command{
		Use:   "revoke SERIAL",
		Short: "Revoke a certificate for good (RFC 5280 reasons: keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, ...)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := revocation.ParseReason(reason)
			if err != nil {
				return err
			}
			return withStore(cmd.Context(), func(st appStore) error {
				svc := &revocation.Service{Store: st}
				res, err := svc.Revoke(cmd.Context(), args[0], r, cliActor())
				if err != nil {
					return err
				}
				return printResult(cmd, res)
			})
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "unspecified", "RFC 5280 CRLReason, by name or code")
	hold := &cobra.Command{
		Use:   "hold SERIAL",
		Short: "Suspend a certificate (certificateHold), e.g. for a physician's lost card",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd.Context(), func(st appStore) error {
				res, err := (&revocation.Service{Store: st}).Hold(cmd.Context(), args[0], cliActor())
				if err != nil {
					return err
				}
				return printResult(cmd, res)
			})
		},
	}
	release := &cobra.Command{
		Use:   "release SERIAL",
		Short: "Take a certificate off hold",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd.Context(), func(st appStore) error {
				res, err := (&revocation.Service{Store: st}).Release(cmd.Context(), args[0], cliActor())
				if err != nil {
					return err
				}
				return printResult(cmd, res)
			})
		},
	}
	return []*cobra.Command{revoke, hold, release}
}

func printResult(cmd *cobra.Command, r revocation.Result) error {
	out := map[string]any{"serial": r.Serial, "changed": r.Changed, "status": r.Status}
	if !r.RevokedAt.IsZero() {
		out["reason"] = r.Reason.String()
		out["revoked_at"] = r.RevokedAt
	}
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
