package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/ca/revocation"
	"github.com/mohr-hix/mohr/tokens"
)

func init() { rootCmd.AddCommand(newFacilityCmd(), newPhysicianCmd()) }

// importFormat picks csv or json from the flag or the file extension.
func importFormat(flag, path string) (string, error) {
	f := strings.ToLower(flag)
	if f == "" {
		f = strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	}
	if f != "csv" && f != "json" {
		return "", fmt.Errorf("format must be csv or json (got %q)", f)
	}
	return f, nil
}

func openInput(path string) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	return os.Open(path)
}

func newFacilityCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "facility", Short: "Facility registry: import, sync"}
	imp := newImportCmd("facilities", tokens.ParseFacilitiesCSV, tokens.ParseFacilitiesJSON, (*tokens.Service).ImportFacilities)

	var url string
	var every, timeout time.Duration
	sync := &cobra.Command{
		Use:   "sync",
		Short: "Re-check every facility's standing against the registry and hold/revoke/release its tokens",
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := openTokenService(cmd.Context())
			if err != nil {
				return err
			}
			var src tokens.FacilityRegistry
			if url != "" {
				src = &tokens.HTTPRegistry{BaseURL: url, Client: httpClient(timeout)}
			}
			report := func(rep tokens.SyncReport, err error) {
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "sync:", err)
					return
				}
				w := cmd.OutOrStdout()
				refreshed := "from the imported registry"
				if url != "" {
					refreshed = fmt.Sprintf("%d records refreshed from %s", rep.Updated, url)
				}
				fmt.Fprintf(w, "%s checked %d facilities (%s); %d token changes\n", time.Now().UTC().Format(time.RFC3339), rep.Checked, refreshed, len(rep.Actions))
				for _, a := range rep.Actions {
					fmt.Fprintf(w, "  %s\n", describeSyncAction(a))
				}
			}
			if every <= 0 {
				rep, err := svc.Sync(cmd.Context(), src, "system:sync")
				report(rep, err)
				return err
			}
			return svc.RunSync(cmd.Context(), src, every, "system:sync", report)
		},
	}
	sync.Flags().StringVar(&url, "registry-url", "", "base URL of the HTTP/JSON facility registry (default: the imported registry only)")
	sync.Flags().DurationVar(&every, "every", 0, "run on this schedule until interrupted (default: once)")
	sync.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "timeout of each registry request")
	cmd.AddCommand(imp, sync)
	return cmd
}

func newPhysicianCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "physician", Short: "Medical-council registry: import"}
	imp := newImportCmd("council registrations", tokens.ParsePhysiciansCSV, tokens.ParsePhysiciansJSON, (*tokens.Service).ImportPhysicians)
	cmd.AddCommand(imp)
	return cmd
}

// newImportCmd is `import FILE` for one registry: parse CSV or JSON (all or nothing, errors name the line),
// then store through the token service.
func newImportCmd[T any](what string, parseCSV, parseJSON func(io.Reader) ([]T, error),
	put func(*tokens.Service, context.Context, []T, string) error) *cobra.Command {
	var format, actor string
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Import " + what + " from CSV or JSON, all or nothing (errors name the line)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := importFormat(format, args[0])
			if err != nil {
				return err
			}
			in, err := openInput(args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			parse := parseJSON
			if f == "csv" {
				parse = parseCSV
			}
			recs, err := parse(in)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			svc, err := openTokenService(cmd.Context())
			if err != nil {
				return err
			}
			if err := put(svc, cmd.Context(), recs, actor); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d %s\n", len(recs), what)
			return nil
		},
	}
	imp.Flags().StringVar(&format, "format", "", "csv or json (default: from the file extension)")
	imp.Flags().StringVar(&actor, "actor", "cli:ra", "who is importing, for the audit log")
	return imp
}

// describeSyncAction says in a line what the sync did to one token and why.
func describeSyncAction(a tokens.Action) string {
	if a.Err != nil {
		return fmt.Sprintf("could not %s token %s of %s (%s): %v; the next sync tries again", a.Did, a.Serial, a.SIAMID, a.Reason, a.Err)
	}
	var what string
	switch a.Did {
	case "hold":
		what = fmt.Sprintf("put token %s of %s on hold (certificateHold): %s; released when the registry shows it in good standing again", a.Serial, a.SIAMID, a.Reason)
	case "revoke":
		what = fmt.Sprintf("revoked token %s of %s (%s): %s; the facility enrols again once the registry is right", a.Serial, a.SIAMID, revocation.Reason(a.Code), a.Reason)
	case "release":
		what = fmt.Sprintf("released token %s of %s from hold: the facility is in good standing again", a.Serial, a.SIAMID)
	default:
		what = fmt.Sprintf("%s token %s of %s", a.Did, a.Serial, a.SIAMID)
	}
	return what
}
