package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/mohr-hix/mohr/hsm"
	"github.com/mohr-hix/mohr/internal/audit"
)

// auditKeygenHSM is `mohr audit keygen --hsm URI`: the checkpoint key is generated on a PKCS#11 token (Ed25519,
// sensitive, never extractable, sign only; docs/hsm.md) and only its verifier key leaves the token. The verifier
// key is written to vkeyOut (default <data-dir>/audit.vkey) and added to the configured audit.vkeys file, the
// list of every checkpoint key of the log's history that `mohr audit verify` trusts.
//
// The key is not activated here: the first node started with audit.key set to the printed URI (or
// `mohr audit checkpoint`) records audit.key.activated in the log, in the transaction that names it the key in
// use, as for file keys.
func auditKeygenHSM(cmd *cobra.Command, uri, name, vkeyOut string, force bool) error {
	if !strings.HasPrefix(uri, "pkcs11:") {
		return errors.New("--hsm takes a pkcs11: URI naming the token and the new key's label")
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if !cmd.Flags().Changed("name") && cfg.Audit.Name != "" {
		name = cfg.Audit.Name
	}
	if _, _, err := audit.GenerateKey(name); err != nil { // checks the log name before touching the token
		return err
	}
	if vkeyOut == "" {
		vkeyOut = auditKeyPath(auditVKeyFile)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	if _, err := os.Stat(vkeyOut); err == nil && !force {
		return fmt.Errorf("%s exists (the verifier key of another checkpoint key?): give --vkey-out, or --force to replace it", vkeyOut)
	}
	k, err := hsmOpener().GenerateKey(cmd.Context(), uri, hsm.AlgEd25519)
	if err != nil {
		return fmt.Errorf("audit key: %w", err)
	}
	key := k.(*hsm.Key)
	vkey, err := note.NewEd25519VerifierKey(audit.Origin(name), key.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(vkeyOut), 0o700); err != nil {
		return err
	}
	if err := writeAuditKeyFile(vkeyOut, vkey, flags, 0o644); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "generated Ed25519 checkpoint key %s\nverifier key (for auditors), written to %s:\n%s\n", key.URI(), vkeyOut, vkey)
	if cfg.Audit.VKeys != "" && filepath.Clean(cfg.Audit.VKeys) != filepath.Clean(vkeyOut) {
		added, err := addVKey(cfg.Audit.VKeys, vkey)
		if err != nil {
			return fmt.Errorf("audit.vkeys: %w", err)
		}
		if added {
			fmt.Fprintf(out, "added to %s (audit.vkeys)\n", cfg.Audit.VKeys)
		}
	}
	fmt.Fprintf(out, "to sign checkpoints with it, set on every node:\n  audit:\n    key: '%s'\n", key.URI())
	if name != "mohr" {
		fmt.Fprintf(out, "    name: %s\n", name)
	}
	return nil
}

// addVKey appends vkey to the verifier-key list at path unless it is there already.
func addVKey(path, vkey string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == vkey {
			return false, nil
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return false, err
	}
	sep := ""
	if len(b) > 0 && !strings.HasSuffix(string(b), "\n") {
		sep = "\n"
	}
	if _, err := f.WriteString(sep + vkey + "\n"); err != nil {
		f.Close()
		return false, err
	}
	return true, f.Close()
}
