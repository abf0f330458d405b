package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/ca/revocation"
	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/internal/ids"
)

// `mohr remote`: the RA desk's and the operators' commands for remote signing credentials
// (docs/remote-signing.md): enrolment in person after the national ID card check, registration codes, and
// the lifecycle, all over the exchange's mTLS API (/v1/remote/credentials...).

func init() { rootCmd.AddCommand(newRemoteCmd()) }

// remoteFlags are the exchange and the staff credential every remote command needs.
type remoteFlags struct {
	server, caBundle, cert, key string
	asJSON                      bool
}

func (f *remoteFlags) register(c *cobra.Command) {
	c.PersistentFlags().StringVar(&f.server, "server", "", "the exchange's API, https://HOST:8443 (env "+serverEnv+")")
	c.PersistentFlags().StringVar(&f.caBundle, "ca-bundle", "", "the exchange's root certificate (PEM)")
	c.PersistentFlags().StringVar(&f.cert, "ra-cert", "", "the RA officer's certificate (PEM); for suspend, resume, block and revoke also an operator's")
	c.PersistentFlags().StringVar(&f.key, "ra-key", "", "its key URI (file:..., pkcs11:...)")
	c.PersistentFlags().BoolVar(&f.asJSON, "json", false, "print the exchange's JSON answer")
}

// call sends one request with the staff credential and decodes a success into out.
func (f *remoteFlags) call(ctx context.Context, method, path string, body any, what string, out any) error {
	endpoint, err := serverURL(f.server, path)
	if err != nil {
		return err
	}
	client, err := raClient(ctx, f.caBundle, f.cert, f.key)
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return transportError(what, endpoint, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		err := exchangeError(what+" refused", resp, rb)
		if resp.StatusCode == http.StatusForbidden && !strings.Contains(err.Error(), "registry") && !strings.Contains(err.Error(), "national ID card") {
			return fmt.Errorf("%v (is --ra-cert a credential of a role that may do this? enrolment, registration codes and re-keying need an RA officer)", err)
		}
		return err
	}
	if err := json.Unmarshal(rb, out); err != nil {
		return fmt.Errorf("%s: the exchange's answer cannot be read; is --server the exchange's API (port 8443)?", what)
	}
	return nil
}

// remoteCredential is the exchange's view of a remote credential (api.remoteCredentialJSON).
type remoteCredential struct {
	ID            string    `json:"id"`
	CouncilNumber string    `json:"councilNumber"`
	NationalCode  string    `json:"nationalCode"`
	Name          string    `json:"name"`
	Status        string    `json:"status"`
	Reason        string    `json:"reason"`
	KeyLabel      string    `json:"keyLabel"`
	KeyDestroyed  bool      `json:"keyDestroyed"`
	Serial        string    `json:"serial"`
	NotAfter      time.Time `json:"notAfter"`
	Policy        string    `json:"policy"`
	Factors       []struct {
		Type         string    `json:"type"`
		ID           string    `json:"id"`
		SerialNumber string    `json:"serialNumber"`
		NationalCode string    `json:"nationalCode"`
		ValidTo      time.Time `json:"validTo"`
	} `json:"factors"`
}

type remoteRegistration struct {
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expiresAt"`
	Page      string    `json:"page"`
}

func (f *remoteFlags) print(w io.Writer, v any, text func()) error {
	if f.asJSON {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(v)
	}
	text()
	return nil
}

func printCredential(w io.Writer, c remoteCredential) {
	fmt.Fprintf(w, "credential:   %s\nphysician:    %s, council number %s, national code %s\nstatus:       %s", c.ID, c.Name, c.CouncilNumber, c.NationalCode, c.Status)
	if c.Reason != "" {
		fmt.Fprintf(w, " (%s)", c.Reason)
	}
	fmt.Fprintf(w, "\nkey:          %s in the HSM", c.KeyLabel)
	if c.KeyDestroyed {
		fmt.Fprint(w, " (destroyed)")
	}
	fmt.Fprintln(w)
	if c.Serial != "" {
		fmt.Fprintf(w, "certificate:  serial %s, valid until %s, remote-signing policy %s\n", c.Serial, c.NotAfter.UTC().Format(time.DateOnly), c.Policy)
	}
	for _, x := range c.Factors {
		if x.Type == "national-id-card" {
			fmt.Fprintf(w, "factor:       national ID card, certificate serial %s, national code %s, valid until %s\n", x.SerialNumber, x.NationalCode, x.ValidTo.UTC().Format(time.DateOnly))
		} else {
			fmt.Fprintf(w, "factor:       %s %s\n", x.Type, x.ID)
		}
	}
}

// printCode tells the RA officer what to hand the physician.
func (f *remoteFlags) printCode(w io.Writer, r remoteRegistration) {
	page := r.Page
	if base, err := serverURL(f.server, ""); err == nil {
		page = base + r.Page
	}
	fmt.Fprintf(w, "registration code: %s\n  hand it to the physician in person; they open %s and register their passkey\n  (one use, valid until %s UTC)\n",
		r.Code, page, r.ExpiresAt.UTC().Format("2006-01-02 15:04"))
}

func newRemoteCmd() *cobra.Command {
	f := &remoteFlags{}
	c := &cobra.Command{
		Use:   "remote",
		Short: "Remote signing credentials (keys in the signing centre's HSM): enrol, registration codes, lifecycle",
	}
	f.register(c)
	c.AddCommand(newRemoteEnrolCmd(f))
	c.AddCommand(newRemoteAddCardCmd(f))
	c.AddCommand(&cobra.Command{
		Use: "registration-code CREDENTIAL", Short: "RA desk: a new one-use passkey registration code for a pending or blocked credential (lost authenticator: in person)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r remoteRegistration
			if err := f.call(cmd.Context(), "POST", "/v1/remote/credentials/"+url.PathEscape(args[0])+"/registration", nil, "registration code", &r); err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), r, func() { f.printCode(cmd.OutOrStdout(), r) })
		},
	})
	c.AddCommand(&cobra.Command{
		Use: "show CREDENTIAL", Short: "Show a remote signing credential", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r remoteCredential
			if err := f.call(cmd.Context(), "GET", "/v1/remote/credentials/"+url.PathEscape(args[0]), nil, "show", &r); err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), r, func() { printCredential(cmd.OutOrStdout(), r) })
		},
	})
	var council string
	list := &cobra.Command{
		Use: "list --council-no N", Short: "A physician's remote signing credentials", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r struct {
				Credentials []remoteCredential `json:"credentials"`
			}
			if err := f.call(cmd.Context(), "GET", "/v1/remote/credentials?councilNumber="+url.QueryEscape(council), nil, "list", &r); err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), r, func() {
				for _, x := range r.Credentials {
					printCredential(cmd.OutOrStdout(), x)
				}
			})
		},
	}
	list.Flags().StringVar(&council, "council-no", "", "the physician's medical-council number")
	c.AddCommand(list)

	// The lifecycle: each answers the credential as it is afterwards.
	lifecycle := func(use, short, op string, body func(reason string) (any, error), hasReason bool, reasonHelp string) *cobra.Command {
		var reason string
		lc := &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				b, err := body(reason)
				if err != nil {
					return err
				}
				var r remoteCredential
				if err := f.call(cmd.Context(), "POST", "/v1/remote/credentials/"+url.PathEscape(args[0])+"/"+op, b, op, &r); err != nil {
					return err
				}
				return f.print(cmd.OutOrStdout(), r, func() { printCredential(cmd.OutOrStdout(), r) })
			}}
		if hasReason {
			lc.Flags().StringVar(&reason, "reason", "", reasonHelp)
		}
		return lc
	}
	text := func(reason string) (any, error) { return map[string]string{"reason": reason}, nil }
	c.AddCommand(lifecycle("suspend CREDENTIAL", "Suspend a credential until resume (RA officer or operator)", "suspend", text, true, "why (kept in the audit log)"))
	c.AddCommand(lifecycle("resume CREDENTIAL", "Resume a suspended credential (RA officer or operator)", "resume", func(string) (any, error) { return nil, nil }, false, ""))
	c.AddCommand(lifecycle("block CREDENTIAL", "Lost authenticator: block the credential and remove its passkeys; only a new registration code, in person, unblocks it", "block", text, true, "why (kept in the audit log)"))
	c.AddCommand(lifecycle("revoke CREDENTIAL --reason NAME", "Revoke the credential's certificate; the key is destroyed for keyCompromise, affiliationChanged, superseded, cessationOfOperation", "revoke",
		func(name string) (any, error) {
			r, err := revocation.ParseReason(name)
			if err == nil {
				err = revocation.CheckRevocationReason(r)
			}
			if name == "" || err != nil || r == revocation.CertificateHold {
				return nil, fmt.Errorf("--reason %q: give keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn or unspecified (a pause is mohr remote suspend)", name)
			}
			return map[string]int{"reason": int(r)}, nil
		}, true, "RFC 5280 CRLReason by name or code: keyCompromise (1), affiliationChanged (3), superseded (4), cessationOfOperation (5), ..."))
	rekey := &cobra.Command{Use: "rekey CREDENTIAL", Short: "RA desk: new key and certificate under a new credential ID, passkeys carried over; the old key is destroyed",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r remoteCredential
			if err := f.call(cmd.Context(), "POST", "/v1/remote/credentials/"+url.PathEscape(args[0])+"/rekey", nil, "rekey", &r); err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), r, func() { printCredential(cmd.OutOrStdout(), r) })
		}}
	c.AddCommand(rekey)
	return c
}

func newRemoteEnrolCmd(f *remoteFlags) *cobra.Command {
	var idReader, idIssuers, idPINFile, council string
	var cardFactor bool
	c := &cobra.Command{
		Use:   "enrol --council-no N --id-issuers FILE",
		Short: "RA desk: enrol a physician for remote signing, in person, after checking their national ID card",
		Long: `Enrol a physician for remote signing at the RA desk, with the physician present:

  1. the exchange issues a one-use enrolment challenge bound to this RA officer (POST
     /v1/remote/card-challenges); the physician's national ID card signs it (VERIFY with the card's PIN,
     then INTERNAL AUTHENTICATE); this desk checks the answer too (the card certificate must chain to
     --id-issuers and the signature verify), so a card that fails is refused before anything is sent;
  2. the exchange (POST /v1/remote/credentials, RA officer's credential --ra-cert/--ra-key) verifies the
     card's answer itself (chain to its own configured national ID card issuers, validity, the signature over
     its own challenge, the national code), checks that the council registry lists --council-no for that
     national code in good standing, generates the physician's signing key in its HSM, issues the
     certificate under the remote-signing policy, and records the card check in the audit log; with
     --card-factor the card is also registered as the credential's activation factor;
  3. the answer is a one-use registration code: hand it to the physician, who registers their passkey on
     the exchange's registration page (/remote/register) with their own authenticator.`,
		Example: `  mohr remote enrol --server https://hix.example:8443 --ca-bundle root.pem --ra-cert ra.pem --ra-key file:ra.key \
      --id-issuers national-id-issuer.pem --council-no 123456 [--card-factor]`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cn, err := ids.CouncilNumber(council)
			if err != nil || council == "" {
				return fmt.Errorf("--council-no %q: give the physician's medical-council number", council)
			}
			if _, err := serverURL(f.server, ""); err != nil {
				return err
			}
			pool, err := idIssuerPool(idIssuers)
			if err != nil {
				return err
			}
			pc, err := cardreader.Establish(ctx)
			if err != nil {
				return cardOpenError("card", "", err)
			}
			defer pc.Release()
			ans, challenge, cert, h, err := serverCardChallenge(ctx, f, pc, idReader, idCardPINSource(idPINFile), "enrol", "")
			if err != nil {
				return err
			}
			check := &nationalIDCheck{Holder: h, Reader: idReader, Cert: cert}
			if err := checkCardAnswerLocally(cert, pool, challenge, ans); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "national ID card: genuine; holder %s %s, national code %s\n", h.GivenName, h.FamilyName, h.NationalCode)
			name := strings.TrimSpace(h.GivenName + " " + h.FamilyName)
			if h.NationalCode == "" || name == "" {
				return errors.New("the national ID card holds no national code or name: it cannot be used for enrolment")
			}
			var r struct {
				Credential   remoteCredential   `json:"credential"`
				Registration remoteRegistration `json:"registration"`
			}
			body := map[string]any{"nationalCode": h.NationalCode, "councilNumber": cn, "name": name, "identityCheck": check.Evidence(),
				"card": ans, "registerCard": cardFactor}
			if err := f.call(ctx, "POST", "/v1/remote/credentials", body, "enrolment", &r); err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), r, func() {
				printCredential(cmd.OutOrStdout(), r.Credential)
				f.printCode(cmd.OutOrStdout(), r.Registration)
			})
		},
	}
	c.Flags().StringVar(&idIssuers, "id-issuers", "", "CA certificates (PEM) of the national ID card issuer")
	c.Flags().StringVar(&idReader, "id-reader", "", "reader holding the national ID card (default: find it)")
	c.Flags().StringVar(&idPINFile, "id-pin-file", "", "read the national ID card's PIN from this file (else env MOHR_ID_CARD_PIN, else a prompt without echo)")
	c.Flags().StringVar(&council, "council-no", "", "the physician's medical-council number")
	c.Flags().BoolVar(&cardFactor, "card-factor", false, "also register the national ID card as the credential's activation factor (the credential is then active)")
	return c
}

func newRemoteAddCardCmd(f *remoteFlags) *cobra.Command {
	var idReader, idPINFile string
	c := &cobra.Command{
		Use:   "add-card CREDENTIAL",
		Short: "RA desk: register the physician's national ID card as an activation factor of a remote credential, in person",
		Long: `Register the physician's national ID card as an activation factor (the alternative to a passkey), with the
physician present: the exchange issues a one-use challenge bound to this RA officer (POST
/v1/remote/card-challenges), the card signs it after the physician types the card's PIN (the PIN goes only to
the card), and the exchange checks the answer itself (the card certificate chains to its configured national
ID card issuers and is valid, the signature is over its own challenge, the national code is the credential's)
before it registers the card (POST /v1/remote/credentials/{id}/cards). A pending or blocked credential becomes
active.`,
		Example: `  mohr remote add-card 3f9c... --server https://hix.example:8443 --ca-bundle root.pem --ra-cert ra.pem --ra-key file:ra.key`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if _, err := serverURL(f.server, ""); err != nil {
				return err
			}
			pc, err := cardreader.Establish(ctx)
			if err != nil {
				return cardOpenError("card", "", err)
			}
			defer pc.Release()
			ans, _, _, holder, err := serverCardChallenge(ctx, f, pc, idReader, idCardPINSource(idPINFile), "register", args[0])
			if err != nil {
				return err
			}
			var r struct {
				SerialNumber string    `json:"serialNumber"`
				NationalCode string    `json:"nationalCode"`
				ValidTo      time.Time `json:"validTo"`
			}
			if err := f.call(ctx, "POST", "/v1/remote/credentials/"+url.PathEscape(args[0])+"/cards", ans, "card registration", &r); err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), r, func() {
				fmt.Fprintf(cmd.OutOrStdout(), "national ID card registered: %s %s, national code %s, certificate serial %s, valid until %s\n",
					holder.GivenName, holder.FamilyName, r.NationalCode, r.SerialNumber, r.ValidTo.UTC().Format(time.DateOnly))
			})
		},
	}
	c.Flags().StringVar(&idReader, "id-reader", "", "reader holding the national ID card (default: find it)")
	c.Flags().StringVar(&idPINFile, "id-pin-file", "", "read the national ID card's PIN from this file (else env MOHR_ID_CARD_PIN, else a prompt without echo)")
	return c
}
