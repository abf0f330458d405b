package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/keys"
)

// `mohr card enrol` and `mohr card show`: the RA desk's path from a new medical-council card to a card that
// holds this CA's certificates (issue 19 item 11), and a view of a card's certificates labelled by use.

// cardSlotProfiles maps a council card's key slot to the certificate profile the RA issues for it.
var cardSlotProfiles = map[cardreader.KeySlot]string{
	cardreader.SlotSign: ca.ProfilePhysicianSigning,
	cardreader.SlotAuth: ca.ProfilePhysicianAuth,
}

// findCard returns a connection to the card in reader (or, when reader is empty, to the first card whose
// application is profile) and the reader's name.
func findCard(ctx context.Context, pc *cardreader.Context, reader, profile, what string) (*cardreader.Card, error) {
	if reader != "" {
		card, err := pc.Connect(ctx, reader)
		if err != nil {
			return nil, cardOpenError(what, reader, err)
		}
		p, err := cardreader.Detect(ctx, card)
		if err == nil && p != profile {
			err = fmt.Errorf("it holds a %s card", p)
		}
		if err != nil {
			card.Close()
			return nil, fmt.Errorf("the card in %q is not a %s (%v): insert the %s there, or give the right reader", reader, what, err, what)
		}
		return card, nil
	}
	st, err := pc.Status(ctx)
	if err != nil {
		return nil, cardOpenError(what, "", err)
	}
	for _, s := range st {
		if !s.Present {
			continue
		}
		card, err := pc.Connect(ctx, s.Reader)
		if err != nil {
			continue
		}
		if p, err := cardreader.Detect(ctx, card); err == nil && p == profile {
			return card, nil
		}
		card.Close()
	}
	return nil, fmt.Errorf("no %s in any reader: insert it (readers: mohr card list)", what)
}

// cardOpenError explains a failure to reach a card.
func cardOpenError(what, reader string, err error) error {
	switch {
	case errors.Is(err, cardreader.ErrNoService):
		return errors.New("the smart-card service (pcscd) is not running: start it, then try again")
	case errors.Is(err, cardreader.ErrNoReader):
		return fmt.Errorf("there is no reader %q: see mohr card list", reader)
	case errors.Is(err, cardreader.ErrNoCard), errors.Is(err, cardreader.ErrCardRemoved):
		return fmt.Errorf("no card in %q: insert the %s", reader, what)
	}
	return fmt.Errorf("cannot reach the %s: %v", what, err)
}

// cardPINError explains a PIN failure: wrong PIN with the tries left, or blocked.
func cardPINError(err error, changed string) error {
	var ae *cardreader.AuthError
	switch {
	case errors.Is(err, cardreader.ErrPINBlocked):
		return errors.New("the card's PIN is blocked: the card must be unblocked by its issuer (" + changed + ")")
	case errors.As(err, &ae):
		return fmt.Errorf("wrong PIN: %d tries left before the PIN blocks (%s)", ae.Retries, changed)
	}
	return nil
}

func newCardEnrolCmd() *cobra.Command {
	var server, caBundle, raCert, raKey, idReader, idIssuers, idPINFile, reader, pinFile, certOut string
	var slots []string
	c := &cobra.Command{
		Use:   "enrol --server URL --ca-bundle root.pem --ra-cert ra.pem --ra-key URI --id-issuers FILE",
		Short: "RA desk: put this CA's certificates on a physician's medical-council card",
		Long: `Enrol a medical-council card at the RA desk, with the physician present:

  1. the physician's national ID card is checked: its certificate must chain to --id-issuers and the card
     must answer a fresh challenge (INTERNAL AUTHENTICATE) with that certificate's key;
  2. the council card must belong to the same person (the same national code);
  3. for each key (--keys, default sign): a new key pair is generated on the council card (the private key
     never leaves it; the slot's old certificate is deleted), the card signs a certificate request, the
     exchange issues the certificate (POST /v1/certificates, profile physician-signing or physician-auth)
     with the RA officer's credential (--ra-cert, --ra-key), after its registry check of the council
     registration, and the certificate is written back to the card.

The PIN is asked once (--pin-file, else MOHR_CARD_PIN, else a prompt without echo) and presented for each
card operation; a wrong PIN changes nothing on the card.`,
		Example: `  mohr card enrol --server https://hix.example:8443 --ca-bundle root.pem --ra-cert ra.pem --ra-key file:ra.key \
      --id-issuers national-id-issuer.pem --keys sign,auth`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var want []cardreader.KeySlot
			for _, s := range slots {
				slot := cardreader.KeySlot(strings.TrimSpace(s))
				if _, ok := cardSlotProfiles[slot]; !ok {
					return fmt.Errorf("--keys %q: use sign, auth or sign,auth", s)
				}
				if !slices.Contains(want, slot) {
					want = append(want, slot)
				}
			}
			endpoint, err := serverURL(server, "/v1/certificates")
			if err != nil {
				return err
			}
			client, err := raClient(ctx, caBundle, raCert, raKey)
			if err != nil {
				return err
			}
			pool, err := idIssuerPool(idIssuers)
			if err != nil {
				return err
			}
			out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()

			pc, err := cardreader.Establish(ctx)
			if err != nil {
				return cardOpenError("card", "", err)
			}
			defer pc.Release()

			// 1. The national ID card: genuine, and whose.
			idCheck, err := checkNationalIDCard(ctx, pc, idReader, pool, idCardPINSource(idPINFile), errw)
			if err != nil {
				return err
			}
			person := idCheck.Holder

			// 2. The council card, of the same person.
			card, err := findCard(ctx, pc, reader, cardreader.ProfileCouncil, "medical-council card")
			if err != nil {
				return err
			}
			defer card.Close()
			cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
			if err != nil {
				return fmt.Errorf("the medical-council card cannot be read: %v", err)
			}
			doc, err := cc.ReadHolder(ctx)
			if err != nil {
				return fmt.Errorf("the medical-council card's holder data cannot be read: %v", err)
			}
			if doc.NationalCode != person.NationalCode {
				return fmt.Errorf("the medical-council card belongs to national code %s, the national ID card to %s: enrol a card only with its holder's own national ID card", doc.NationalCode, person.NationalCode)
			}
			if doc.CouncilNumber == "" {
				return errors.New("the medical-council card holds no council number: it cannot be enrolled")
			}
			name := strings.TrimSpace(doc.GivenName + " " + doc.FamilyName)
			fmt.Fprintf(errw, "medical-council card %s: council number %s, same national code\n", card.Reader(), doc.CouncilNumber)

			// 3. The PIN once, for every card operation of this command.
			pin, err := cardPINSource(pinFile)(ctx, "PIN of the medical-council card in "+card.Reader())
			if err != nil {
				return err
			}
			defer clear(pin)
			pinFn := func(context.Context, string) ([]byte, error) { return bytes.Clone(pin), nil }
			if tries, err := cc.PINRetries(ctx); err == nil && tries == 0 {
				return errors.New("the card's PIN is blocked: the card must be unblocked by its issuer (nothing on the card was changed)")
			}

			var issued []*x509.Certificate
			for _, slot := range want {
				profile := cardSlotProfiles[slot]
				pub, err := cc.GenerateKey(ctx, slot, pinFn)
				if err != nil {
					if pe := cardPINError(err, "nothing on the card was changed"); pe != nil {
						return pe
					}
					return fmt.Errorf("the card could not generate the %s key: %v", slot, err)
				}
				fmt.Fprintf(errw, "%s key: new key pair generated on the card\n", slot)
				again := fmt.Sprintf("the card's %s key was replaced but has no certificate yet: fix the cause and run mohr card enrol again", slot)
				signer, err := cc.UncertifiedKey(ctx, slot, pinFn)
				if err != nil {
					return fmt.Errorf("%s (%v)", again, err)
				}
				tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: name, SerialNumber: hixext.NationalCodePrefix + doc.NationalCode}}
				csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, signer)
				if err != nil {
					if pe := cardPINError(err, again); pe != nil {
						return pe
					}
					return fmt.Errorf("the card could not sign the certificate request: %v; %s", err, again)
				}
				cert, err := issueOverAPI(ctx, client, endpoint, profile, csr, name, doc.NationalCode, doc.CouncilNumber)
				if err != nil {
					return fmt.Errorf("%v; %s", err, again)
				}
				if cp, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !cp.Equal(pub) {
					return fmt.Errorf("the exchange returned a certificate for another key; %s", again)
				}
				if err := cc.WriteCertificate(ctx, slot, pinFn, cert); err != nil {
					if pe := cardPINError(err, again); pe != nil {
						return pe
					}
					return fmt.Errorf("the certificate (serial %x) could not be written to the card: %v; %s", cert.SerialNumber, err, again)
				}
				issued = append(issued, cert)
				fmt.Fprintf(out, "%s key: %s certificate serial %x for %s, valid until %s, written to the card\n",
					slot, profile, cert.SerialNumber, cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.DateOnly))
			}
			if certOut != "" {
				var b bytes.Buffer
				for _, c := range issued {
					pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
				}
				if err := os.WriteFile(certOut, b.Bytes(), 0o644); err != nil {
					return fmt.Errorf("the card is enrolled, but --cert-out %s cannot be written: %s", certOut, pathErr(err))
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&server, "server", "", "the exchange's API, https://HOST:8443 (env "+serverEnv+")")
	c.Flags().StringVar(&caBundle, "ca-bundle", "", "the exchange's root certificate (PEM)")
	c.Flags().StringVar(&raCert, "ra-cert", "", "the RA officer's certificate (PEM, operator profile with role ra-officer)")
	c.Flags().StringVar(&raKey, "ra-key", "", "the RA officer's key URI (file:..., pkcs11:...)")
	c.Flags().StringVar(&idIssuers, "id-issuers", "", "CA certificates (PEM) of the national ID card issuer")
	c.Flags().StringVar(&idReader, "id-reader", "", "reader holding the national ID card (default: find it)")
	c.Flags().StringVar(&idPINFile, "id-pin-file", "", "read the national ID card's PIN from this file (else env MOHR_ID_CARD_PIN, else a prompt without echo)")
	c.Flags().StringVar(&reader, "reader", "", "reader holding the medical-council card (default: find it)")
	c.Flags().StringVar(&pinFile, "pin-file", "", "read the council card's PIN from this file (else env MOHR_CARD_PIN, else a prompt without echo)")
	c.Flags().StringSliceVar(&slots, "keys", []string{"sign"}, "keys to enrol: sign (physician-signing), auth (physician-auth), or sign,auth")
	c.Flags().StringVar(&certOut, "cert-out", "", "also write the issued certificates here (PEM)")
	return c
}

func pathErrOrNil(err error) string {
	if err == nil {
		return "empty"
	}
	return pathErr(err)
}

// raClient is exchangeClient with the RA officer's credential for mTLS.
func raClient(ctx context.Context, caBundle, certFile, keyURI string) (*http.Client, error) {
	if certFile == "" || keyURI == "" {
		return nil, errors.New("no RA credential: give --ra-cert (the RA officer's certificate, PEM) and --ra-key (its key URI, e.g. file:ra.key)")
	}
	client, err := exchangeClient(caBundle, 30*time.Second)
	if err != nil {
		return nil, err
	}
	certs, err := readCerts(certFile)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("--ra-cert %s holds no PEM certificate (%v)", certFile, pathErrOrNil(err))
	}
	key, err := newKeyResolver().Signer(ctx, keyURI)
	if err != nil {
		return nil, fmt.Errorf("--ra-key %s cannot be opened: %v", keyURI, err)
	}
	if err := keys.MatchesCertificate(key, certs[0]); err != nil {
		return nil, fmt.Errorf("--ra-key does not hold the key of --ra-cert %s", certFile)
	}
	tc := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{tc}
	return client, nil
}

// issueOverAPI asks the exchange for a certificate (POST /v1/certificates) and returns it.
func issueOverAPI(ctx context.Context, c *http.Client, endpoint, profile string, csr []byte, name, nationalCode, councilNumber string) (*x509.Certificate, error) {
	body, _ := json.Marshal(map[string]any{"profile": profile, "csr": csr,
		"subject": map[string]string{"commonName": name, "nationalCode": nationalCode, "councilNumber": councilNumber}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, transportError("issuance", endpoint, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusCreated:
	case http.StatusUnauthorized, http.StatusForbidden:
		if err := exchangeError("issuance refused", resp, rb); err != nil {
			return nil, fmt.Errorf("%v (is --ra-cert an RA officer's or operator's credential of this exchange?)", err)
		}
	default:
		return nil, exchangeError("issuance refused", resp, rb)
	}
	var v struct {
		Certificate []byte `json:"certificate"`
	}
	if json.Unmarshal(rb, &v) != nil || len(v.Certificate) == 0 {
		return nil, errors.New("issuance: the exchange's answer holds no certificate; is --server the exchange's API (port 8443)?")
	}
	cert, err := x509.ParseCertificate(v.Certificate)
	if err != nil {
		return nil, errors.New("issuance: the exchange's answer holds no valid certificate")
	}
	return cert, nil
}

// certUse labels a card certificate by what its key may do and under which policy it was issued.
func certUse(c *x509.Certificate, physicianPolicy asn1.ObjectIdentifier) string {
	var use string
	switch {
	case c.KeyUsage&x509.KeyUsageContentCommitment != 0 && c.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		use = "signing (non-repudiation)"
	case slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth):
		use = "authentication"
	default:
		use = "other"
	}
	for _, p := range c.PolicyIdentifiers {
		if physicianPolicy != nil && p.Equal(physicianPolicy) {
			return use + ", physician-signing policy " + physicianPolicy.String()
		}
	}
	if _, err := hixext.ParseAdmission(c); err == nil {
		return use + ", health CA"
	}
	return use + ", factory certificate (not from the health CA: enrol the card with mohr card enrol)"
}

// physicianSigningPolicy is the certificate policy of the physician-signing profile in this installation's
// configuration (or the default one).
func physicianSigningPolicy() asn1.ObjectIdentifier {
	iss := ca.DefaultConfig()
	if c, err := loadConfig(); err == nil {
		iss = c.CA.Issuance
	}
	pc, ok := iss.Profiles[ca.ProfilePhysicianSigning]
	if !ok || len(pc.Policies) == 0 {
		return nil
	}
	oid, err := parseOID(pc.Policies[0])
	if err != nil {
		return nil
	}
	return oid
}

// parseOID parses a dotted object identifier.
func parseOID(s string) (asn1.ObjectIdentifier, error) {
	var oid asn1.ObjectIdentifier
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("not a dotted OID: %q", s)
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return nil, fmt.Errorf("not a dotted OID: %q", s)
	}
	return oid, nil
}

func newCardShowCmd() *cobra.Command {
	var f cardFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "show",
		Short: "Show a medical-council card's certificates labelled by use, and its comfort-signature counter",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if f.profile == "" {
				f.profile = cardreader.ProfileCouncil
			}
			if f.profile != cardreader.ProfileCouncil {
				return errors.New("show reads medical-council cards; use mohr card read for other cards")
			}
			pc, err := cardreader.Establish(ctx)
			if err != nil {
				return cardOpenError("card", "", err)
			}
			defer pc.Release()
			card, err := findCard(ctx, pc, f.reader, cardreader.ProfileCouncil, "medical-council card")
			if err != nil {
				return err
			}
			defer card.Close()
			cc, err := cardreader.Council(ctx, card, cardreader.DefaultCouncilProfile())
			if err != nil {
				return err
			}
			h, err := cc.ReadHolder(ctx)
			if err != nil {
				return err
			}
			policy := physicianSigningPolicy()
			type slotJSON struct {
				Key         string        `json:"key"`
				Use         string        `json:"use"`
				Certificate *cardCertJSON `json:"certificate,omitempty"`
				KeyMatches  bool          `json:"keyMatches"`
				Problem     string        `json:"problem,omitempty"`
			}
			var slotsOut []slotJSON
			for _, slot := range []cardreader.KeySlot{cardreader.SlotSign, cardreader.SlotAuth} {
				sj := slotJSON{Key: string(slot)}
				cert, err := cc.Certificate(ctx, slot)
				if err != nil {
					sj.Use = "no certificate"
					sj.Problem = "no certificate in this slot (a new key was generated and never certified): run mohr card enrol"
					slotsOut = append(slotsOut, sj)
					continue
				}
				sum := sha256.Sum256(cert.Raw)
				sj.Certificate = &cardCertJSON{cert.Subject.String(), cert.Issuer.String(), cert.SerialNumber.Text(16), cert.NotAfter.UTC(), hex.EncodeToString(sum[:])}
				sj.Use = certUse(cert, policy)
				if pub, err := cc.PublicKey(ctx, slot); err == nil {
					if cp, ok := cert.PublicKey.(*ecdsa.PublicKey); ok && cp.Equal(pub) {
						sj.KeyMatches = true
					}
				}
				if !sj.KeyMatches {
					sj.Problem = "the certificate does not hold the key on the card: run mohr card enrol"
				}
				slotsOut = append(slotsOut, sj)
			}
			comfort := "none (PIN before every signature; mohr agent cannot use this card)"
			left, per, cerr := cc.ComfortCounter(ctx)
			if cerr == nil {
				comfort = fmt.Sprintf("%d signatures per PIN entry (%d left in the current card session)", per, left)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				v := struct {
					Reader      string             `json:"reader"`
					Holder      *cardreader.Holder `json:"holder"`
					Keys        []slotJSON         `json:"keys"`
					ComfortPer  int                `json:"comfortPerPIN"`
					ComfortLeft int                `json:"comfortLeft"`
				}{card.Reader(), h, slotsOut, per, left}
				e := json.NewEncoder(out)
				e.SetIndent("", "  ")
				return e.Encode(v)
			}
			fmt.Fprintf(out, "reader:          %s\nholder:          %s %s, national code %s, council number %s\n", card.Reader(), h.GivenName, h.FamilyName, h.NationalCode, h.CouncilNumber)
			for _, s := range slotsOut {
				fmt.Fprintf(out, "%s key:        %s\n", s.Key, s.Use)
				if s.Certificate != nil {
					fmt.Fprintf(out, "  subject:       %s\n  issuer:        %s\n  serial:        %s\n  not after:     %s\n", s.Certificate.Subject, s.Certificate.Issuer, s.Certificate.Serial, s.Certificate.NotAfter.Format(time.RFC3339))
				}
				if s.Problem != "" {
					fmt.Fprintf(out, "  problem:       %s\n", s.Problem)
				}
			}
			fmt.Fprintf(out, "comfort signature: %s\n", comfort)
			return nil
		},
	}
	f.register(c, false)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
