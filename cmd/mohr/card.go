package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/keys"
)

func init() {
	rootCmd.AddCommand(newCardCmd())
	// card: key URIs for every command that resolves keys (keys.go): the PIN comes from MOHR_CARD_PIN
	// or a prompt on the terminal, once per signature.
	registerCardOpener = func(r *keys.Resolver) {
		r.Register("card", &cardreader.Opener{PIN: cardPINSource(os.Getenv("MOHR_CARD_PIN_FILE"))})
	}
}

// cardFlags are the flags the card subcommands share.
type cardFlags struct {
	reader  string
	profile string
	pinFile string
}

func (f *cardFlags) register(c *cobra.Command, pin bool) {
	c.Flags().StringVar(&f.reader, "reader", "", "PC/SC reader name (default: the first reader holding a card)")
	c.Flags().StringVar(&f.profile, "profile", "", "card profile: national-id, medical-council or piv (default: detect)")
	if pin {
		c.Flags().StringVar(&f.pinFile, "pin-file", "", "read the PIN from this file (else env MOHR_CARD_PIN, else a prompt without echo)")
	}
}

func newCardCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "card",
		Short: "Smart cards: list readers, read holder data, verify the PIN, sign, simulate a card",
	}
	c.AddCommand(newCardListCmd(), newCardReadCmd(), newCardVerifyPINCmd(), newCardSignCmd(), newCardSimulateCmd(),
		newCardEnrolCmd(), newCardShowCmd())
	return c
}

func newCardListCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List PC/SC readers and whether they hold a card",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pc, err := cardreader.Establish(ctx)
			if err != nil {
				return err
			}
			defer pc.Release()
			st, err := pc.Status(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				type readerJSON struct {
					Reader  string `json:"reader"`
					Present bool   `json:"present"`
					ATR     string `json:"atr,omitempty"`
				}
				rj := []readerJSON{}
				for _, s := range st {
					rj = append(rj, readerJSON{s.Reader, s.Present, hex.EncodeToString(s.ATR)})
				}
				return json.NewEncoder(out).Encode(rj)
			}
			if len(st) == 0 {
				fmt.Fprintln(out, "no readers")
			}
			for _, s := range st {
				card := "empty"
				if s.Present {
					card = "card, ATR " + hex.EncodeToString(s.ATR)
				}
				fmt.Fprintf(out, "%s\t%s\n", s.Reader, card)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// openCardFlags connects to the card and returns its profile name (detected if not given).
func openCardFlags(ctx context.Context, f *cardFlags) (*cardreader.Context, *cardreader.Card, string, error) {
	pc, err := cardreader.Establish(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	reader := f.reader
	if reader == "" {
		st, err := pc.Status(ctx)
		if err != nil {
			pc.Release()
			return nil, nil, "", err
		}
		for _, s := range st {
			if s.Present {
				reader = s.Reader
				break
			}
		}
		if reader == "" {
			pc.Release()
			return nil, nil, "", cardreader.ErrNoCard
		}
	}
	card, err := pc.Connect(ctx, reader)
	if err != nil {
		pc.Release()
		return nil, nil, "", err
	}
	profile := f.profile
	switch profile {
	case "":
		if profile, err = cardreader.Detect(ctx, card); err != nil {
			card.Close()
			pc.Release()
			return nil, nil, "", err
		}
	case cardreader.ProfileNationalID, cardreader.ProfileCouncil, cardreader.ProfilePIV:
	default:
		card.Close()
		pc.Release()
		return nil, nil, "", fmt.Errorf("unknown --profile %q: use national-id, medical-council or piv", profile)
	}
	return pc, card, profile, nil
}

type cardCertJSON struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"notAfter"`
	SHA256   string    `json:"sha256"`
}

func newCardReadCmd() *cobra.Command {
	var f cardFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "read",
		Short: "Print the card holder's data and the card's certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pc, card, profile, err := openCardFlags(ctx, &f)
			if err != nil {
				return err
			}
			defer pc.Release()
			defer card.Close()
			var h *cardreader.Holder
			var certs []*x509.Certificate
			switch profile {
			case cardreader.ProfileNationalID:
				n, err := cardreader.NationalID(ctx, card, cardreader.DefaultNationalIDProfile())
				if err != nil {
					return err
				}
				if h, err = n.ReadHolder(ctx); err != nil {
					return err
				}
				certs, err = n.Certificates(ctx)
				if err != nil {
					return err
				}
			case cardreader.ProfileCouncil:
				cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
				if err != nil {
					return err
				}
				if h, err = cc.ReadHolder(ctx); err != nil {
					return err
				}
				if certs, err = cc.Certificates(ctx); err != nil {
					return err
				}
			case cardreader.ProfilePIV:
				p, err := cardreader.PIV(ctx, card)
				if err != nil {
					return err
				}
				if h, err = p.ReadHolder(ctx); err != nil {
					return err
				}
				if certs, err = p.Certificates(ctx); err != nil {
					return err
				}
			}
			cj := make([]cardCertJSON, len(certs))
			for i, c := range certs {
				sum := sha256.Sum256(c.Raw)
				cj[i] = cardCertJSON{c.Subject.String(), c.Issuer.String(), c.SerialNumber.Text(16), c.NotAfter.UTC(), hex.EncodeToString(sum[:])}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				e := json.NewEncoder(out)
				e.SetIndent("", "  ")
				return e.Encode(struct {
					Reader       string             `json:"reader"`
					Holder       *cardreader.Holder `json:"holder"`
					Certificates []cardCertJSON     `json:"certificates"`
				}{card.Reader(), h, cj})
			}
			fmt.Fprintf(out, "reader:          %s\nprofile:         %s\n", card.Reader(), h.Profile)
			for _, kv := range [][2]string{
				{"national code", h.NationalCode}, {"given name", h.GivenName}, {"family name", h.FamilyName},
				{"birth date", h.BirthDate}, {"card number", h.CardNumber}, {"expiry", h.Expiry},
				{"council number", h.CouncilNumber}, {"specialty", h.Specialty},
			} {
				if kv[1] != "" {
					fmt.Fprintf(out, "%-16s %s\n", kv[0]+":", kv[1])
				}
			}
			for _, c := range cj {
				fmt.Fprintf(out, "certificate:     %s\n  issuer:        %s\n  not after:     %s\n  sha256:        %s\n", c.Subject, c.Issuer, c.NotAfter.Format(time.RFC3339), c.SHA256)
			}
			return nil
		},
	}
	f.register(c, false)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// cardPINSource returns the CLI's PIN callback: --pin-file, then MOHR_CARD_PIN, then a prompt on the terminal
// without echo. The PIN is never printed.
func cardPINSource(pinFile string) keys.PINFunc {
	return func(_ context.Context, prompt string) ([]byte, error) {
		if pinFile != "" {
			b, err := os.ReadFile(pinFile)
			if err != nil {
				return nil, fmt.Errorf("read --pin-file: %w", err)
			}
			pin := append([]byte(nil), bytes.TrimRight(b, "\r\n")...)
			clear(b)
			return pin, nil
		}
		if v := os.Getenv("MOHR_CARD_PIN"); v != "" {
			return []byte(v), nil
		}
		fd := int(os.Stdin.Fd())
		if !term.IsTerminal(fd) {
			return nil, errors.New("no PIN: stdin is not a terminal; use --pin-file or MOHR_CARD_PIN")
		}
		fmt.Fprintf(os.Stderr, "%s: ", prompt)
		pin, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		return pin, err
	}
}

func newCardVerifyPINCmd() *cobra.Command {
	var f cardFlags
	c := &cobra.Command{
		Use:   "verify-pin",
		Short: "Check the card PIN once (a wrong PIN spends a try; the tries left are printed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pc, card, profile, err := openCardFlags(ctx, &f)
			if err != nil {
				return err
			}
			defer pc.Release()
			defer card.Close()
			var verify func(context.Context, []byte) error
			switch profile {
			case cardreader.ProfileCouncil:
				cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
				if err != nil {
					return err
				}
				verify = cc.VerifyPIN
			case cardreader.ProfilePIV:
				p, err := cardreader.PIV(ctx, card)
				if err != nil {
					return err
				}
				verify = p.VerifyPIN
			default:
				return fmt.Errorf("verify-pin supports medical-council and piv cards, not %s", profile)
			}
			pin, err := cardPINSource(f.pinFile)(ctx, "PIN of the card in "+card.Reader())
			if err != nil {
				return err
			}
			defer clear(pin)
			if err := verify(ctx, pin); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "PIN correct")
			return nil
		},
	}
	f.register(c, true)
	return c
}

func newCardSignCmd() *cobra.Command {
	var f cardFlags
	var in, out, key string
	c := &cobra.Command{
		Use:   "sign --in FILE",
		Short: "Sign the SHA-256 of a file with the card's signing key (ECDSA, ASN.1 signature)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" {
				return errors.New("--in FILE is required")
			}
			ctx := cmd.Context()
			fh, err := os.Open(in)
			if err != nil {
				return err
			}
			hh := sha256.New()
			_, err = io.Copy(hh, fh)
			fh.Close()
			if err != nil {
				return err
			}
			digest := hh.Sum(nil)
			pc, card, profile, err := openCardFlags(ctx, &f)
			if err != nil {
				return err
			}
			defer pc.Release()
			defer card.Close()
			pin := cardPINSource(f.pinFile)
			var signer crypto.Signer
			switch profile {
			case cardreader.ProfileCouncil:
				cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
				if err != nil {
					return err
				}
				if signer, err = cc.Key(ctx, cardreader.KeySlot(key), pin); err != nil {
					switch {
					case errors.Is(err, cardreader.ErrNotFound):
						return fmt.Errorf("the card's %s key has no certificate (a key was generated and never certified): enrol the card at the RA desk (mohr card enrol)", key)
					case errors.Is(err, keys.ErrKeyMismatch):
						return fmt.Errorf("the certificate in the card's %s slot does not hold the card's key: enrol the card at the RA desk (mohr card enrol)", key)
					}
					return err
				}
			case cardreader.ProfilePIV:
				p, err := cardreader.PIV(ctx, card)
				if err != nil {
					return err
				}
				slot := cardreader.PIVKeySign
				if key == string(cardreader.SlotAuth) {
					slot = cardreader.PIVKeyAuth
				}
				if signer, err = p.Key(ctx, slot, pin); err != nil {
					return err
				}
			default:
				return fmt.Errorf("sign supports medical-council and piv cards, not %s", profile)
			}
			sig, err := signer.Sign(nil, digest, crypto.SHA256)
			if err != nil {
				if pe := cardPINError(err, "nothing was signed"); pe != nil {
					return pe
				}
				return err
			}
			if out != "" {
				return os.WriteFile(out, sig, 0o644)
			}
			fmt.Fprintln(cmd.OutOrStdout(), base64.StdEncoding.EncodeToString(sig))
			return nil
		},
	}
	f.register(c, true)
	c.Flags().StringVar(&in, "in", "", "file to sign")
	c.Flags().StringVar(&out, "out", "", "write the DER signature here instead of printing base64")
	c.Flags().StringVar(&key, "key", "sign", "key: sign or auth")
	return c
}

func newCardSimulateCmd() *cobra.Command {
	var profile, addr, state, issuerDir, pinFile string
	var tries, comfort int
	var extended bool
	c := &cobra.Command{
		Use:   "simulate --profile national-id|medical-council|piv",
		Short: "Run a virtual card in a vpcd reader of the local pcscd until interrupted",
		Long: `Run a virtual card (cardreader/virtualcard) and insert it into pcscd's vpcd reader
(127.0.0.1:35963 is "Virtual PCD 00 00", :35964 is "Virtual PCD 00 01"). The card creates its own card
issuer CA and writes its certificate to --issuer-dir so that verifiers can trust it. With --state the
keys, PIN counter and written certificates survive restarts. The default PIN is 123456. --comfort N gives
the medical-council signing key a comfort-signature counter: one VERIFY then covers N signatures while
the card stays in the reader (what mohr agent needs; 0 is "PIN before every signature").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch profile {
			case virtualcard.ProfileNationalID, virtualcard.ProfileCouncil, virtualcard.ProfilePIV:
			default:
				return fmt.Errorf("--profile must be national-id, medical-council or piv")
			}
			cfg := virtualcard.Config{Profile: profile, StatePath: state, MaxTries: tries, Extended: extended, ComfortSignatures: comfort}
			if pinFile != "" {
				pin, err := cardPINSource(pinFile)(cmd.Context(), "")
				if err != nil {
					return err
				}
				cfg.PIN = pin
			}
			vc, err := virtualcard.New(cfg)
			clear(cfg.PIN)
			if err != nil {
				return err
			}
			if issuerDir == "" {
				issuerDir = filepath.Join(flagDataDir, "card-issuer")
			}
			p, err := vc.Issuer().WriteDir(issuerDir)
			if err != nil {
				return err
			}
			errw := cmd.ErrOrStderr()
			fmt.Fprintf(errw, "virtual %s card; issuer CA certificate: %s\n", profile, p)
			ctx := cmd.Context()
			for {
				fmt.Fprintf(errw, "inserting into vpcd at %s\n", addr)
				err := vc.ConnectVPCD(ctx, addr)
				if ctx.Err() != nil {
					fmt.Fprintln(errw, "card removed")
					return nil
				}
				fmt.Fprintf(errw, "vpcd connection ended: %v; retrying in 1s\n", err)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
	c.Flags().StringVar(&profile, "profile", "", "national-id, medical-council or piv")
	c.Flags().StringVar(&addr, "addr", "127.0.0.1:35963", "vpcd address of pcscd")
	c.Flags().StringVar(&state, "state", "", "state file (keys, PIN counter, certificates) kept across restarts")
	c.Flags().StringVar(&issuerDir, "issuer-dir", "", "directory for the card issuer CA certificate (default <data-dir>/card-issuer)")
	c.Flags().StringVar(&pinFile, "pin-file", "", "file with the card's initial PIN (default 123456)")
	c.Flags().IntVar(&tries, "tries", 3, "wrong PINs before the PIN blocks")
	c.Flags().BoolVar(&extended, "extended", false, "announce and accept extended-length APDUs")
	c.Flags().IntVar(&comfort, "comfort", 0, "medical-council: signatures one VERIFY allows (comfort signature, 0 to 255; 0: PIN always)")
	return c
}
