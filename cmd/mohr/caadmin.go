package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/keys"
)

// caAdmin implements api.CAAdmin: the gravest operations, which the API runs only after two different
// operators approved them (dual control). Each is audited with both operators.
type caAdmin struct{ n *node }

func revokedMarker(cfg *Config) string { return filepath.Join(caDir(cfg), "intermediate.revoked") }
func nextKeyFile(cfg *Config) string   { return filepath.Join(caDir(cfg), "next-key-uri") }
func trustAnchorsFile(cfg *Config) string {
	return filepath.Join(cfg.dataDir, "trust-anchors.pem")
}

// RevokeIntermediate records that the intermediate is to be revoked and stops issuance at once. Mohr cannot
// revoke its own certificate (the national root does that); it can and must stop using it: the marker file
// keeps every later start of this data directory from issuing.
func (a caAdmin) RevokeIntermediate(ctx context.Context, reason int, actors [2]string) error {
	cfg := a.n.cfg
	rec := map[string]any{"reason": reason, "approved_by": actors, "at": time.Now().UTC(),
		"intermediate": ca.SerialHex(a.n.ca.Issuer().Cert.SerialNumber)}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := os.WriteFile(revokedMarker(cfg), b, 0o600); err != nil {
		return err
	}
	if err := a.n.st.AppendAudit(ctx, newEvent("ca.intermediate.revoked", actors[0]+"+"+actors[1], rec["intermediate"].(string), rec)); err != nil {
		return err
	}
	a.n.ca.Suspend("the intermediate was revoked under dual control")
	return nil
}

var objectAttr = regexp.MustCompile(`object=([^;?]*)`)

// nextKeyURI names a new key beside cur: a new file in the CA directory, or a new object on the same token.
func nextKeyURI(cfg *Config, cur string) (string, error) {
	stamp := time.Now().UTC().Format("20060102T150405")
	scheme, err := keys.Scheme(cur)
	if err != nil {
		return "", err
	}
	switch scheme {
	case "file":
		return "file:" + filepath.Join(caDir(cfg), "intermediate-"+stamp+".key"), nil
	case "pkcs11":
		if !objectAttr.MatchString(cur) {
			return "", errors.New("the intermediate's pkcs11 URI has no object= attribute to derive a new key name from")
		}
		return objectAttr.ReplaceAllString(cur, "object=${1}-"+stamp), nil
	}
	return "", fmt.Errorf("cannot make a new key for scheme %q", scheme)
}

// RekeyIntermediate makes a new intermediate key where the current one lives (file or HSM) and returns its
// CSR for the national root. `mohr ca import` with the signed certificate switches to the new key.
func (a caAdmin) RekeyIntermediate(ctx context.Context, actors [2]string) ([]byte, error) {
	cfg := a.n.cfg
	cur := a.n.ca.Issuer()
	next, err := nextKeyURI(cfg, resolveCAKeyURI(cfg))
	if err != nil {
		return nil, err
	}
	alg := "EC-P256"
	switch k := cur.Cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize == 384 {
			alg = "EC-P384"
		}
	case *rsa.PublicKey:
		alg = fmt.Sprintf("RSA-%d", k.N.BitLen())
	}
	key, err := newCAKey(ctx, next, alg)
	if err != nil {
		return nil, err
	}
	csr, err := ca.CreateCSR(key, cur.Cert.Subject)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(nextKeyFile(cfg), []byte(next+"\n"), 0o600); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(csr)
	ev := newEvent("ca.intermediate.rekey", actors[0]+"+"+actors[1], "", map[string]any{
		"approved_by": actors, "next_key": redactURI(next), "csr_sha256": hex.EncodeToString(sum[:])})
	return csr, a.n.st.AppendAudit(ctx, ev)
}

// redactURI drops pin-value from a key URI before it is written anywhere.
func redactURI(u string) string {
	return regexp.MustCompile(`pin-value=[^;?&]*`).ReplaceAllString(u, "pin-value=REDACTED")
}

// DestroyKey destroys a key Mohr no longer uses: a file key in the data directory (overwritten, then removed)
// or an HSM object. The intermediate's and the services' current keys are refused.
func (a caAdmin) DestroyKey(ctx context.Context, keyID string, actors [2]string) error {
	cfg := a.n.cfg
	inUse := []string{resolveCAKeyURI(cfg), cfg.Services.TSAKey, cfg.Services.OCSPKey, cfg.Services.SealKey, cfg.Services.TLSKey}
	for _, name := range []string{"tsa", "ocsp", "seal", "tls"} {
		inUse = append(inUse, keys.FileURI(filepath.Join(cfg.dataDir, "services", name+".key")))
	}
	for _, u := range inUse {
		if u != "" && u == keyID {
			return invalid(errors.New("that key is in use; replace it before destroying it"))
		}
	}
	scheme, err := keys.Scheme(keyID)
	if err != nil {
		return invalid(err)
	}
	switch scheme {
	case "file":
		path := filepath.Clean(strings.TrimPrefix(keyID, "file:"))
		if rel, err := filepath.Rel(cfg.dataDir, path); err != nil || strings.HasPrefix(rel, "..") {
			return invalid(errors.New("only key files inside the data directory can be destroyed"))
		}
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("%w: %s", ca.ErrNotFound, filepath.Base(path))
		}
		if err := os.WriteFile(path, make([]byte, fi.Size()), 0o600); err != nil {
			return err
		}
		if err := os.Remove(path); err != nil {
			return err
		}
	case "pkcs11":
		if err := hsmOpener().DestroyKey(ctx, keyID); err != nil {
			return err
		}
	default:
		return invalid(fmt.Errorf("keys of scheme %q cannot be destroyed here", scheme))
	}
	return a.n.st.AppendAudit(ctx, newEvent("key.destroyed", actors[0]+"+"+actors[1], redactURI(keyID), map[string]any{"approved_by": actors}))
}

// SetTrustAnchors replaces the roots signatures are verified against, in the database with its audit event in
// one transaction; this node applies them at once, the others when their change feed reaches the event.
func (a caAdmin) SetTrustAnchors(ctx context.Context, roots []*x509.Certificate, actors [2]string) error {
	if len(roots) == 0 {
		return invalid(errors.New("at least one trust anchor is needed"))
	}
	var fps []string
	for _, r := range roots {
		if !r.IsCA {
			return invalid(fmt.Errorf("%s is not a CA certificate", r.Subject))
		}
		s := sha256.Sum256(r.Raw)
		fps = append(fps, hex.EncodeToString(s[:]))
	}
	var pemData []byte
	for _, r := range roots {
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})...)
	}
	ev := newEvent(eventTrustAnchors, actors[0]+"+"+actors[1], "", map[string]any{"approved_by": actors, "sha256": fps})
	if err := a.n.st.PutBlob(ctx, trustAnchorsBlob, pemData, ev); err != nil {
		return err
	}
	return a.n.reloadTrustAnchors(ctx)
}
