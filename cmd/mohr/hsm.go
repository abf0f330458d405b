package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/hsm"
	"github.com/mohr-hix/mohr/keys"
)

func init() { rootCmd.AddCommand(newHSMCmd()) }

// hsmModule returns the PKCS#11 module for URIs without module-path: --module, else the environment
// variable MOHR_PKCS11_MODULE, else hsm.module from the configuration file.
func hsmModule(cmd *cobra.Command, flag string) (string, error) {
	if cmd.Flags().Changed("module") {
		return flag, nil
	}
	if m := os.Getenv("MOHR_PKCS11_MODULE"); m != "" {
		return m, nil
	}
	c, err := loadConfig()
	if err != nil {
		return "", err
	}
	return c.HSM.Module, nil
}

// newHSMOpener returns an Opener for one command; the caller closes it.
func newHSMOpener(cmd *cobra.Command, module string) (*hsm.Opener, error) {
	m, err := hsmModule(cmd, module)
	if err != nil {
		return nil, err
	}
	return hsm.NewOpener(m), nil
}

func newHSMCmd() *cobra.Command {
	var module string
	cmd := &cobra.Command{
		Use:   "hsm",
		Short: "Inspect PKCS#11 HSMs, generate keys on them and check a key works",
		Long: `Keys are named by RFC 7512 URIs, for example
  pkcs11:token=MohrCA;object=intermediate?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/mohr/hsm.pin
The PIN comes from pin-source (file:/path or env:NAME); pin-value works but is discouraged.`,
	}
	cmd.PersistentFlags().StringVar(&module, "module", "", "PKCS#11 module for URIs without module-path (default: env MOHR_PKCS11_MODULE, else hsm.module in the configuration)")
	cmd.AddCommand(newHSMListCmd(&module), newHSMKeygenCmd(&module), newHSMTestCmd(&module))
	return cmd
}

func newHSMListCmd(module *string) *cobra.Command {
	var token, pinSource string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List slots and tokens, and the keys and certificates on them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o, err := newHSMOpener(cmd, *module)
			if err != nil {
				return err
			}
			defer o.Close()
			slots, err := o.Slots(ctx, "")
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SLOT\tTOKEN\tMANUFACTURER\tMODEL\tSERIAL\tSTATE")
			for _, s := range slots {
				state := "no token"
				switch {
				case s.TokenPresent && !s.Initialized:
					state = "not initialised"
				case s.UserPINLocked:
					state = "user PIN locked"
				case s.TokenPresent:
					state = "ready"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", s.Slot, s.Label, s.Manufacturer, s.Model, s.Serial, state)
			}
			w.Flush()
			for _, s := range slots {
				if !s.Initialized || s.Label == "" || (token != "" && s.Label != token) {
					continue
				}
				u := hsm.URI{Token: s.Label, PINSource: pinSource}
				objs, err := o.Objects(ctx, u.String())
				if err != nil {
					return fmt.Errorf("token %q: %w", s.Label, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "\ntoken %q:", s.Label)
				if pinSource == "" {
					fmt.Fprint(cmd.OutOrStdout(), " (public objects only; give --pin-source to see private keys)")
				}
				fmt.Fprintln(cmd.OutOrStdout())
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "  TYPE\tKEY\tLABEL\tID\tPROTECTION\tURI")
				for _, ob := range objs {
					prot := ""
					if ob.Class == "private" {
						prot = protection(ob)
					}
					fmt.Fprintf(w, "  %s\t%s\t%s\t%x\t%s\t%s\n", ob.Class, ob.KeyType, ob.Label, ob.ID, prot, ob.URI)
				}
				w.Flush()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&token, "token", "", "list objects of this token only")
	cmd.Flags().StringVar(&pinSource, "pin-source", "", "log in with the PIN from file:/path or env:NAME to list private keys")
	return cmd
}

func protection(ob hsm.ObjectInfo) string {
	var p []string
	if ob.Sensitive {
		p = append(p, "sensitive")
	}
	if ob.NeverExtractable {
		p = append(p, "never-extractable")
	} else if ob.Extractable {
		p = append(p, "EXTRACTABLE")
	}
	return strings.Join(p, ",")
}

func newHSMKeygenCmd(module *string) *cobra.Command {
	var alg string
	cmd := &cobra.Command{
		Use:   "keygen KEY-URI",
		Short: "Generate a non-extractable signing key pair on a token",
		Long: `Generate a key pair on the token the URI names, labelled with its object attribute (and with its id
attribute as CKA_ID, or a random one). The private key is sensitive, never extractable and can only sign.
Refuses if an object with the same label or id exists. Prints the key's URI and its public key (PEM).`,
		Example: `  mohr hsm keygen --alg EC-P256 'pkcs11:token=MohrCA;object=intermediate?pin-source=file:/etc/mohr/hsm.pin'`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !validAlg(alg) {
				return fmt.Errorf("--alg %q: want one of %s", alg, strings.Join(hsm.Algorithms, ", "))
			}
			o, err := newHSMOpener(cmd, *module)
			if err != nil {
				return err
			}
			defer o.Close()
			s, err := o.GenerateKey(cmd.Context(), args[0], alg)
			if err != nil {
				return err
			}
			k := s.(*hsm.Key)
			der, err := x509.MarshalPKIXPublicKey(k.Public())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "generated %s key %s\n", alg, k.URI())
			return pem.Encode(cmd.OutOrStdout(), &pem.Block{Type: "PUBLIC KEY", Bytes: der})
		},
	}
	cmd.Flags().StringVar(&alg, "alg", hsm.AlgECP256, "key algorithm: "+strings.Join(hsm.Algorithms, ", "))
	return cmd
}

func validAlg(a string) bool {
	for _, x := range hsm.Algorithms {
		if a == x {
			return true
		}
	}
	return false
}

func newHSMTestCmd(module *string) *cobra.Command {
	var count int
	cmd := &cobra.Command{
		Use:   "test KEY-URI",
		Short: "Sign with a key and verify the signature, to check an HSM set-up",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 1 {
				return errors.New("--count must be at least 1")
			}
			ctx := cmd.Context()
			o, err := newHSMOpener(cmd, *module)
			if err != nil {
				return err
			}
			defer o.Close()
			k, err := o.OpenKey(ctx, args[0])
			if err != nil {
				return err
			}
			opts := []crypto.SignerOpts{crypto.SHA256}
			names := []string{"ECDSA with SHA-256"}
			msg := make([]byte, 32)
			rand.Read(msg)
			d := sha256.Sum256(msg)
			switch k.Public().(type) {
			case *rsa.PublicKey:
				opts = append(opts, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash})
				names = []string{"RSA PKCS#1 v1.5 with SHA-256", "RSA-PSS with SHA-256"}
			case ed25519.PublicKey:
				opts, names = []crypto.SignerOpts{crypto.Hash(0)}, []string{"Ed25519"} // signs the message itself
			}
			for i, op := range opts {
				start := time.Now()
				for n := 0; n < count; n++ {
					sig, err := k.SignContext(ctx, d[:], op)
					if err != nil {
						return err
					}
					// SignContext verified it already; check again here, independently of package hsm.
					if err := keys.VerifyDigest(k.Public(), d[:], sig, op); err != nil {
						return err
					}
				}
				el := time.Since(start)
				fmt.Fprintf(cmd.OutOrStdout(), "ok: %s: %d signature(s) made and verified in %v (%.0f/s)\n",
					names[i], count, el.Round(time.Microsecond), float64(count)/el.Seconds())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key %s works\n", k.URI())
			return nil
		},
	}
	cmd.Flags().IntVar(&count, "count", 1, "number of signatures per scheme")
	return cmd
}
