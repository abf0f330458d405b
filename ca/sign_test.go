package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/keys"
)

// TestSignTBSKeyTypes: the certificate signed from the linted TBS verifies under the issuer for every issuer key
// type (and with OpenSSL as the outside check), and IssueRecord returns what the store holds.
func TestSignTBSKeyTypes(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{
		{"ecdsa-p256", p256(t)}, {"ecdsa-p384", p384}, {"rsa-2048", rsaKey}, {"ed25519", edKey},
		{"verifying-wrapper", keys.Verifying(p256(t))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHierarchy(t, elliptic.P256())
			inter, err := SignIntermediate(h.root, h.rootKey, tc.key.Public(), DevIntermediateName, testNow, 10*365*day)
			if err != nil {
				t.Fatal(err)
			}
			st := newMemStore()
			c, err := New(&Issuer{Cert: inter, Signer: tc.key, Chain: []*x509.Certificate{inter, h.root}}, st, DefaultConfig(), Options{Now: func() time.Time { return testNow }})
			if err != nil {
				t.Fatal(err)
			}
			cert, rec, err := c.IssueRecord(context.Background(), validRequests(t)[ProfileOrganisationAuth])
			if err != nil {
				t.Fatal(err)
			}
			if err := cert.CheckSignatureFrom(inter); err != nil {
				t.Fatalf("certificate does not verify under its issuer: %v", err)
			}
			stored, err := st.Certificate(context.Background(), rec.Serial)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(stored.DER, rec.DER) || !bytes.Equal(rec.DER, cert.Raw) || stored.Status != StatusIssued || rec.Status != StatusIssued ||
				stored.Subject != rec.Subject || stored.Shard != rec.Shard || !stored.NotAfter.Equal(rec.NotAfter) {
				t.Fatalf("IssueRecord returned %+v, the store holds %+v", rec, stored)
			}
			dir := t.TempDir()
			write := func(name string, der []byte) string {
				p := filepath.Join(dir, name)
				os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
				return p
			}
			ca := write("ca.pem", h.root.Raw)
			untrusted := write("inter.pem", inter.Raw)
			leaf := write("leaf.pem", cert.Raw)
			out, err := exec.Command(testenv.Tool(t, "openssl"), "verify", "-partial_chain", "-CAfile", untrusted, "-purpose", "any", leaf).CombinedOutput()
			if err != nil {
				t.Fatalf("openssl verify: %v\n%s (root %s)", err, out, ca)
			}
		})
	}
}
