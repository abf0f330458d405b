package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mohr-hix/mohr/ca"
)

// This file holds the life of the intermediate's signing key across the nodes (docs/cluster.md, "CA key
// rollover and retirement"): which key issues, a rollover to a new intermediate key recorded in the audit log,
// a superseded key that signs only CRLs and OCSP responses for what it issued, and its retirement.
//
// The state is in the database, so every node and CLI sees it:
//   - ca/active-issuer: the PEM certificate of the intermediate that issues;
//   - ca/key/<SHA-256 of the SubjectPublicKeyInfo>: "superseded" or "retired".
// Each blob is written in the transaction of its audit event (ca.key.activated, ca.key.superseded,
// ca.key.retired).

const (
	caActiveIssuerBlob   = "ca/active-issuer"
	caKeyStateSuperseded = "superseded"
	caKeyStateRetired    = "retired"
)

// Audit events of the intermediate key's life.
const (
	eventCAKeyActivated  = "ca.key.activated"
	eventCAKeySuperseded = "ca.key.superseded"
	eventCAKeyRetired    = "ca.key.retired"
)

// caKeyID names an intermediate's key: SHA-256 of its SubjectPublicKeyInfo, in hex.
func caKeyID(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:])
}

func caKeyStateBlob(id string) string { return "ca/key/" + id }

// caKeyState returns "superseded", "retired" or "" for the intermediate key id.
func caKeyState(ctx context.Context, st clusterStore, id string) (string, error) {
	b, err := st.GetBlob(ctx, caKeyStateBlob(id))
	switch {
	case errors.Is(err, ca.ErrNotFound):
		return "", nil
	case err != nil:
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// errCAKeyRetired refuses a retired intermediate key for anything: certificates, CRLs, OCSP.
var errCAKeyRetired = errors.New("the intermediate key was retired (ca.key.retired): it signs nothing any more")

// issuerUsable is the ca.Options.IssuerUsable of a CA over is: before every issuance it reads the key's state,
// so a key superseded or retired while the node runs stops issuing at once, on every node.
func issuerUsable(st clusterStore, is *ca.Issuer) func(context.Context) error {
	id := caKeyID(is.Cert)
	return func(ctx context.Context) error {
		switch s, err := caKeyState(ctx, st, id); {
		case err != nil:
			return err
		case s == caKeyStateRetired:
			return errCAKeyRetired
		case s != "":
			return fmt.Errorf("the intermediate key %s was superseded by a key rollover: it signs only CRLs and OCSP responses for the certificates it issued", id[:16])
		}
		return nil
	}
}

// openCA makes the CA over is for a node or a CLI command, with the shared key state: a retired key is refused;
// a superseded key gives a CA whose issuance is suspended (its CRLs and OCSP responses go on); otherwise the
// key is recorded as the one that issues, which for a key other than the recorded one is a rollover: the old
// key is marked superseded (ca.key.superseded) and the new one activated (ca.key.activated). A rollover is
// accepted only to an intermediate under the same root, so a node started by mistake with another hierarchy's
// key cannot take the deployment's issuance away.
func openCA(ctx context.Context, st appStore, is *ca.Issuer, cfg ca.Config, opt ca.Options, actor string) (*ca.CA, error) {
	opt.IssuerUsable = issuerUsable(st, is)
	c, err := ca.New(is, st, cfg, opt)
	if err != nil {
		return nil, err
	}
	id := caKeyID(is.Cert)
	state, err := caKeyState(ctx, st, id)
	if err != nil {
		return nil, err
	}
	switch state {
	case caKeyStateRetired:
		return nil, errCAKeyRetired
	case caKeyStateSuperseded:
		c.Suspend("the intermediate key was superseded by a key rollover: it signs only CRLs and OCSP responses for the certificates it issued")
		return c, nil
	}
	cur, err := st.GetBlob(ctx, caActiveIssuerBlob)
	if err != nil && !errors.Is(err, ca.ErrNotFound) {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.Cert.Raw})
	data := map[string]any{"key": id, "intermediate": ca.SerialHex(is.Cert.SerialNumber), "subject": is.Cert.Subject.String()}
	if len(cur) == 0 {
		return c, st.PutBlob(ctx, caActiveIssuerBlob, certPEM, newEvent(eventCAKeyActivated, actor, id, data))
	}
	blk, _ := pem.Decode(cur)
	if blk == nil {
		return nil, errors.New("the intermediate in use (ca/active-issuer) does not parse")
	}
	old, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the intermediate in use (ca/active-issuer): %w", err)
	}
	oldID := caKeyID(old)
	if oldID == id {
		return c, nil
	}
	if err := old.CheckSignatureFrom(is.Root()); err != nil {
		return nil, fmt.Errorf("refusing a CA key rollover to an intermediate under another root: the intermediate in use (%s) "+
			"was not issued by %s", old.Subject, is.Root().Subject)
	}
	sup := map[string]any{"key": oldID, "intermediate": ca.SerialHex(old.SerialNumber), "successor": id}
	if err := st.PutBlob(ctx, caKeyStateBlob(oldID), []byte(caKeyStateSuperseded), newEvent(eventCAKeySuperseded, actor, oldID, sup)); err != nil {
		return nil, err
	}
	data["previous"] = oldID
	return c, st.PutBlob(ctx, caActiveIssuerBlob, certPEM, newEvent(eventCAKeyActivated, actor, id, data))
}

// newCARetireKeyCmd is `mohr ca retire-key OLD-INTERMEDIATE.pem`.
func newCARetireKeyCmd() *cobra.Command {
	var force bool
	var reason string
	cmd := &cobra.Command{
		Use:   "retire-key OLD-INTERMEDIATE.pem",
		Short: "Record that a superseded intermediate key signs nothing any more (not even CRLs and OCSP)",
		Long: "After a CA key rollover the old intermediate key signs only CRLs and OCSP responses for the certificates it\n" +
			"issued. Once they have all expired, retire-key records its retirement in the audit log (ca.key.retired);\n" +
			"from then on no node or command signs anything with it. It refuses the intermediate in use, and refuses\n" +
			"while certificates of that key have not expired, unless --force with --reason.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			old, err := readOneCert(args[0])
			if err != nil {
				return err
			}
			if force && strings.TrimSpace(reason) == "" {
				return errors.New("--force needs --reason: why the key is retired while its certificates are still valid")
			}
			ctx := cmd.Context()
			return withStore(ctx, func(st appStore) error {
				id := caKeyID(old)
				if s, err := caKeyState(ctx, st, id); err != nil {
					return err
				} else if s == caKeyStateRetired {
					return fmt.Errorf("the key of %s is retired already", args[0])
				}
				if cur, err := st.GetBlob(ctx, caActiveIssuerBlob); err != nil && !errors.Is(err, ca.ErrNotFound) {
					return err
				} else if blk, _ := pem.Decode(cur); blk != nil {
					if c, err := x509.ParseCertificate(blk.Bytes); err == nil && caKeyID(c) == id {
						return errors.New("this is the intermediate in use: roll over to a new intermediate key first (ca.key, ca.cert), then retire this one")
					}
				}
				n, last, err := unexpiredIssuedBy(ctx, st, old, time.Now())
				if err != nil {
					return err
				}
				if n > 0 && !force {
					return fmt.Errorf("%d certificates issued by this key have not expired (the last on %s): the key must go on signing "+
						"their CRLs and OCSP responses until then (or retire it anyway with --force --reason)", n, last.UTC().Format(time.DateOnly))
				}
				data := map[string]any{"key": id, "intermediate": ca.SerialHex(old.SerialNumber), "subject": old.Subject.String(), "unexpired": n}
				if force {
					data["forced"], data["reason"] = true, reason
				}
				if err := st.PutBlob(ctx, caKeyStateBlob(id), []byte(caKeyStateRetired), newEvent(eventCAKeyRetired, cliActor(), id, data)); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "retired intermediate key %s (%d unexpired certificates)\n", id, n)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "retire the key although certificates it issued have not expired")
	cmd.Flags().StringVar(&reason, "reason", "", "with --force: why (recorded in the audit log)")
	return cmd
}

// unexpiredIssuedBy counts the certificates in the store that issuer signed and that have not expired at now,
// revoked ones included (their revocation must stay published until they expire), and returns the latest
// expiry. A certificate counts when its authority key identifier names the issuer and its signature verifies.
func unexpiredIssuedBy(ctx context.Context, st appStore, issuer *x509.Certificate, now time.Time) (int, time.Time, error) {
	var n int
	var last time.Time
	after := ""
	for {
		recs, err := st.Certificates(ctx, ca.CertFilter{Limit: 1000, After: after})
		if err != nil {
			return 0, last, err
		}
		for _, r := range recs {
			if len(r.DER) == 0 || !r.NotAfter.After(now) {
				continue
			}
			c, err := x509.ParseCertificate(r.DER)
			if err != nil || !bytesEqual(c.AuthorityKeyId, issuer.SubjectKeyId) || c.CheckSignatureFrom(issuer) != nil {
				continue
			}
			n++
			if c.NotAfter.After(last) {
				last = c.NotAfter
			}
		}
		if len(recs) < 1000 {
			return n, last, nil
		}
		after = recs[len(recs)-1].Serial
	}
}

func bytesEqual(a, b []byte) bool { return len(a) > 0 && string(a) == string(b) }
