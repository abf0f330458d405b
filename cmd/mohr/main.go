// Command mohr is the one binary of Mohr: the operators' CLI and the server (mohr serve).
// It is the only composition root: it reads configuration and wires the packages together.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Global flags, shared by every subcommand.
var (
	flagDataDir string
	flagConfig  string
)

// rootCmd is the top of the command tree. Each area adds its commands from its own file
// (hsm.go, card.go, ca.go, ...) in an init function: rootCmd.AddCommand(newXCmd()).
var rootCmd = &cobra.Command{
	Use:           "mohr",
	Short:         "Mohr: PKI, smart-card and digital-signature platform for the health information exchange",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	def := os.Getenv("MOHR_DATA_DIR")
	if def == "" {
		def = "mohr-data"
	}
	rootCmd.PersistentFlags().StringVar(&flagDataDir, "data-dir", def, "data directory (env MOHR_DATA_DIR)")
	rootCmd.PersistentFlags().StringVar(&flagConfig, "config", os.Getenv("MOHR_CONFIG"), "configuration file (env MOHR_CONFIG); default: <data-dir>/mohr.yaml if it exists")
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCmd.ExecuteContext(ctx)
	for _, f := range afterCommand {
		f(ctx)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mohr:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
