package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// newAuditRetireKeyCmd is `mohr audit retire-key VKEY|FILE`: it records in the audit log that a checkpoint
// key of the log's history signs nothing from now on (audit.EventKeyRetired). `mohr audit verify` then
// refuses any checkpoint that key signs after the event, so a stolen or withdrawn key cannot vouch for later
// history, while the checkpoints it signed before stay valid. The key in use (the last activated) is refused:
// rotate first (point audit.key at the new key and restart the nodes), then retire the old one. A node still
// configured with the retired key stops signing checkpoints and refuses to start (auditKeyRetired).
func newAuditRetireKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "retire-key VKEY|FILE",
		Short: "Record in the audit log that a former checkpoint key signs nothing from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vkey := strings.TrimSpace(args[0])
			if b, err := os.ReadFile(vkey); err == nil {
				vkey = strings.TrimSpace(string(b))
			}
			if _, err := note.NewVerifier(vkey); err != nil {
				return fmt.Errorf("not a verifier key (audit.vkey format): %w", err)
			}
			return withAuditStore(cmd.Context(), func(st AuditStore) error {
				as, ok := st.(appStore)
				if !ok {
					return errors.New("audit retire-key needs the application database")
				}
				cur, err := as.GetBlob(cmd.Context(), auditKeyBlob)
				if err != nil && !errors.Is(err, ca.ErrNotFound) {
					return err
				}
				if strings.TrimSpace(string(cur)) == vkey {
					return errors.New("this is the checkpoint key in use: rotate to a new key first (audit.key), then retire this one")
				}
				data, _ := json.Marshal(audit.KeyEventData{VKey: vkey})
				ev := audit.Event{Time: time.Now().UTC(), Kind: audit.EventKeyRetired, Actor: cliActor(), Subject: strings.SplitN(vkey, "+", 2)[0], Data: data}
				// The event and the per-key marker that stops nodes signing with the key, in one transaction.
				if err := as.PutBlob(cmd.Context(), auditRetiredBlob(vkey), []byte(vkey), ev); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "retired checkpoint key %s\n", vkey)
				return nil
			})
		},
	}
}
