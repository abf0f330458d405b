package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mohr-hix/mohr/internal/audit"
)

// AuditStore is what the audit commands need of the database. store.SQLite and store.Postgres implement it.
type AuditStore interface {
	audit.Source
	Checkpoint(ctx context.Context, cp *audit.Checkpointer) error
	Close() error
}

// openAuditStore opens the configured database for the audit commands. The composition root sets it (config
// loading lives there); while it is nil the audit commands that need the database fail with a clear error.
var openAuditStore func(ctx context.Context) (AuditStore, error)

// Audit key files in the data directory: the note signer key (secret, mode 0600) and verifier key.
const (
	auditSKeyFile = "audit.skey"
	auditVKeyFile = "audit.vkey"
)

// exitAuditBad is the exit code of `mohr audit verify` when the log is not intact.
const exitAuditBad = 3

func init() { rootCmd.AddCommand(newAuditCmd()) }

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Tamper-evident audit log: verify, checkpoint, prove",
	}
	cmd.AddCommand(newAuditKeygenCmd(), newAuditVerifyCmd(), newAuditCheckpointCmd(), newAuditProveCmd(), newAuditConsistencyCmd(), newAuditRetireKeyCmd())
	return cmd
}

func withAuditStore(ctx context.Context, fn func(AuditStore) error) error {
	if openAuditStore == nil {
		return errors.New("audit: no database configured for the audit commands")
	}
	st, err := openAuditStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

func auditKeyPath(name string) string { return filepath.Join(flagDataDir, name) }

func newAuditKeygenCmd() *cobra.Command {
	var name, hsmURI, vkeyOut string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Generate the Ed25519 key that signs audit checkpoints (<data-dir>/audit.skey, audit.vkey; or in an HSM with --hsm)",
		Long: "keygen makes the deployment's checkpoint key. By default it writes the note signer key <data-dir>/audit.skey\n" +
			"(0600) and its verifier key <data-dir>/audit.vkey. With --hsm pkcs11:URI it generates a non-extractable Ed25519\n" +
			"key on the token instead, writes only the verifier key (--vkey-out, default <data-dir>/audit.vkey) and adds it\n" +
			"to the audit.vkeys file auditors use, if the configuration names one; then set audit.key to the URI printed.",
		Example: "  mohr audit keygen --hsm 'pkcs11:token=MohrAudit;object=audit-2027?pin-source=file:/etc/mohr/hsm.pin' --vkey-out audit-2027.vkey",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hsmURI != "" {
				return auditKeygenHSM(cmd, hsmURI, name, vkeyOut, force)
			}
			if vkeyOut != "" {
				return errors.New("--vkey-out goes with --hsm (a file key is written to <data-dir>/audit.skey and audit.vkey)")
			}
			skey, vkey, err := audit.GenerateKey(name)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(flagDataDir, 0o700); err != nil {
				return err
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			if err := writeAuditKeyFile(auditKeyPath(auditSKeyFile), skey, flags, 0o600); err != nil {
				return err
			}
			if err := writeAuditKeyFile(auditKeyPath(auditVKeyFile), vkey, flags, 0o644); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), vkey)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "mohr", "log name: checkpoints carry the origin line mohr.audit/<name>")
	cmd.Flags().BoolVar(&force, "force", false, "replace existing key files")
	cmd.Flags().StringVar(&hsmURI, "hsm", "", "generate the key on a PKCS#11 token: pkcs11:token=...;object=...?pin-source=file:... (docs/hsm.md)")
	cmd.Flags().StringVar(&vkeyOut, "vkey-out", "", "with --hsm: where to write the verifier key (default <data-dir>/audit.vkey)")
	return cmd
}

func writeAuditKeyFile(path, key string, flags int, mode os.FileMode) error {
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists (use --force to replace it)", path)
		}
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(key + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readAuditVKey returns the verifier key from path (default <data-dir>/audit.vkey).
func readAuditVKey(path string) (string, error) {
	if path == "" {
		path = auditKeyPath(auditVKeyFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("audit verifier key: %w", err)
	}
	vkey := strings.TrimSpace(string(b))
	if _, err := note.NewVerifier(vkey); err != nil {
		return "", fmt.Errorf("audit verifier key %s: %w", path, err)
	}
	return vkey, nil
}

func newAuditVerifyCmd() *cobra.Command {
	var vkeyPath string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Recompute the hash chain and Merkle tree of the whole audit log and check every signed checkpoint",
		Long: "verify reads every audit entry in order, recomputes the hash chain and the RFC 6962 Merkle tree, and\n" +
			"checks each stored checkpoint's signature and root. It exits with status 3 naming the first bad entry.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			vkeys, err := trustedVKeys(cfg, vkeyPath)
			if err != nil {
				return err
			}
			return withAuditStore(cmd.Context(), func(st AuditStore) error {
				res, err := audit.VerifyKeys(cmd.Context(), st, vkeys)
				var bad *audit.BadEntryError
				if errors.As(err, &bad) {
					return &exitError{code: exitAuditBad, err: fmt.Errorf("audit log is NOT intact: first bad entry %d: %s", bad.Seq, bad.Reason)}
				}
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "audit log intact: %d entries, root %v\n", res.Size, res.Root)
				if as, ok := st.(appStore); ok {
					n, bad, err := crossCheckCertificates(cmd.Context(), as)
					if err != nil {
						return err
					}
					if len(bad) > 0 {
						for _, m := range bad {
							fmt.Fprintln(cmd.ErrOrStderr(), m)
						}
						return &exitError{code: exitAuditBad, err: fmt.Errorf("the certificate table does NOT match the audit log: %d discrepancies", len(bad))}
					}
					fmt.Fprintf(out, "certificate table matches the audit log: %d certificates\n", n)
				}
				if res.Checkpoints == 0 {
					fmt.Fprintln(out, "no signed checkpoints (run `mohr audit checkpoint`)")
				} else {
					fmt.Fprintf(out, "%d signed checkpoints verified; the latest covers %d entries\n", res.Checkpoints, res.Latest.N)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&vkeyPath, "vkey", "", "file of verifier keys, one per line: every checkpoint key of the log's history (default audit.vkeys, else <data-dir>/audit.vkey)")
	return cmd
}

func newAuditCheckpointCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Sign and store a checkpoint of the audit log's current Merkle tree, and print it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			id, err := loadAuditIdentity(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			cp := id.cp
			return withAuditStore(cmd.Context(), func(st AuditStore) error {
				if as, ok := st.(appStore); ok {
					if err := recordAuditKey(cmd.Context(), as, id, cliActor()); err != nil {
						return err
					}
				}
				if err := st.Checkpoint(cmd.Context(), cp); err != nil {
					return err
				}
				cps, err := st.AuditCheckpoints(cmd.Context())
				if err != nil {
					return err
				}
				if len(cps) > 0 {
					fmt.Fprint(cmd.OutOrStdout(), string(cps[len(cps)-1]))
				}
				return nil
			})
		},
	}
}

// auditCheckpointCovering returns the smallest stored checkpoint (verified with vkey) of size >= minSize, or of exactly
// size when size > 0.
func auditCheckpointCovering(ctx context.Context, st AuditStore, vkey string, minSize, size int64) (tlog.Tree, []byte, error) {
	cps, err := st.AuditCheckpoints(ctx)
	if err != nil {
		return tlog.Tree{}, nil, err
	}
	for _, msg := range cps {
		tree, err := audit.OpenCheckpoint(msg, vkey)
		if err != nil {
			continue // audit verify reports bad checkpoints
		}
		if (size > 0 && tree.N == size) || (size == 0 && tree.N >= minSize) {
			return tree, msg, nil
		}
	}
	if size > 0 {
		return tlog.Tree{}, nil, fmt.Errorf("no valid checkpoint of size %d", size)
	}
	return tlog.Tree{}, nil, fmt.Errorf("no valid checkpoint covers %d entries yet (run `mohr audit checkpoint`)", minSize)
}

func newAuditProveCmd() *cobra.Command {
	var vkeyPath string
	var size int64
	cmd := &cobra.Command{
		Use:   "prove SEQ",
		Short: "Print an entry with its inclusion proof in a signed checkpoint, as JSON an auditor checks with tlog.CheckRecord",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || seq < 0 {
				return fmt.Errorf("SEQ must be an entry number, not %q", args[0])
			}
			vkey, err := readAuditVKey(vkeyPath)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			return withAuditStore(ctx, func(st AuditStore) error {
				tree, msg, err := auditCheckpointCovering(ctx, st, vkey, seq+1, size)
				if err != nil {
					return err
				}
				if seq >= tree.N {
					return fmt.Errorf("entry %d is not in the checkpoint of size %d", seq, tree.N)
				}
				entries, err := st.AuditEntries(ctx, seq, 1)
				if err != nil {
					return err
				}
				if len(entries) != 1 || entries[0].Seq != seq {
					return fmt.Errorf("entry %d not found", seq)
				}
				canonical, err := audit.CanonicalJSON(entries[0].Event)
				if err != nil {
					return err
				}
				proof, err := audit.Prove(ctx, st, seq, tree.N)
				if err != nil {
					return err
				}
				leaf := tlog.RecordHash(canonical)
				if err := tlog.CheckRecord(proof, tree.N, tree.Hash, seq, leaf); err != nil {
					return fmt.Errorf("the store's proof does not check against the signed checkpoint (run `mohr audit verify`): %w", err)
				}
				return printAuditJSON(cmd, map[string]any{
					"seq":        seq,
					"event":      string(canonical), // the exact bytes whose tlog.RecordHash is leaf_hash
					"leaf_hash":  leaf,
					"tree_size":  tree.N,
					"root":       tree.Hash,
					"proof":      proof,
					"checkpoint": string(msg),
				})
			})
		},
	}
	cmd.Flags().StringVar(&vkeyPath, "vkey", "", "verifier key file (default <data-dir>/audit.vkey)")
	cmd.Flags().Int64Var(&size, "size", 0, "prove against the checkpoint of this size (default: the smallest that covers SEQ)")
	return cmd
}

func newAuditConsistencyCmd() *cobra.Command {
	var vkeyPath string
	cmd := &cobra.Command{
		Use:   "prove-consistency OLD NEW",
		Short: "Print the consistency proof between the signed checkpoints of sizes OLD and NEW (tlog.CheckTree)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			oldN, err1 := strconv.ParseInt(args[0], 10, 64)
			newN, err2 := strconv.ParseInt(args[1], 10, 64)
			if err1 != nil || err2 != nil || oldN < 1 || oldN > newN {
				return errors.New("OLD and NEW must be checkpoint sizes with 1 <= OLD <= NEW")
			}
			vkey, err := readAuditVKey(vkeyPath)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			return withAuditStore(ctx, func(st AuditStore) error {
				oldTree, oldMsg, err := auditCheckpointCovering(ctx, st, vkey, 0, oldN)
				if err != nil {
					return err
				}
				newTree, newMsg, err := auditCheckpointCovering(ctx, st, vkey, 0, newN)
				if err != nil {
					return err
				}
				proof, err := audit.ProveConsistency(ctx, st, oldN, newN)
				if err != nil {
					return err
				}
				if err := tlog.CheckTree(proof, newN, newTree.Hash, oldN, oldTree.Hash); err != nil {
					return &exitError{code: exitAuditBad, err: fmt.Errorf("checkpoints %d and %d are NOT consistent: %w", oldN, newN, err)}
				}
				return printAuditJSON(cmd, map[string]any{
					"old_size": oldN, "old_root": oldTree.Hash, "old_checkpoint": string(oldMsg),
					"new_size": newN, "new_root": newTree.Hash, "new_checkpoint": string(newMsg),
					"proof": proof,
				})
			})
		},
	}
	cmd.Flags().StringVar(&vkeyPath, "vkey", "", "verifier key file (default <data-dir>/audit.vkey)")
	return cmd
}

func printAuditJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
