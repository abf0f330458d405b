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
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zmap/zlint/v3/lint"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/keys"
)

// TestSignTBSKeyTypes: the certificate signed from the linted TBS verifies under the issuer for every issuer key
// type (and with OpenSSL as the outside check), is what parsing its DER gives, and IssueRecord returns what the
// store holds.
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
			// The certificate returned is the lint copy's parse with the real DER and signature
			// (signTBS): it must be what parsing the DER gives.
			parsed, err := x509.ParseCertificate(cert.Raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cert, parsed) {
				t.Fatalf("returned certificate differs from a parse of its DER:\n%+v\n%+v", cert, parsed)
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

// TestBuildTBSIsCreateCertificates: the TBS the pipeline lints and signs is byte for byte the one
// x509.CreateCertificate builds and signs for the same template and issuer, for every issuer key type; the lint
// copy carries it with the signature algorithm the CA key will use.
func TestBuildTBSIsCreateCertificates(t *testing.T) {
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
			c, err := New(&Issuer{Cert: inter, Signer: tc.key, Chain: []*x509.Certificate{inter, h.root}}, newMemStore(), DefaultConfig(), Options{Now: func() time.Time { return testNow }})
			if err != nil {
				t.Fatal(err)
			}
			for profile, req := range validRequests(t) {
				r, err := c.normalize(req)
				if err != nil {
					t.Fatal(err)
				}
				serial, _ := c.randomSerial()
				tmpl, err := c.template(r, serial, testNow)
				if err != nil {
					t.Fatal(err)
				}
				got, err := c.buildTBS(tmpl, r.CSR.PublicKey)
				if err != nil {
					t.Fatalf("%s: buildTBS: %v", profile, err)
				}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, r.CSR.PublicKey, tc.key)
				if err != nil {
					t.Fatal(err)
				}
				want, _ := x509.ParseCertificate(der)
				if !bytes.Equal(got.tbs, want.RawTBSCertificate) {
					t.Fatalf("%s: captured TBS differs from CreateCertificate's", profile)
				}
				lint, err := c.lintCopy(got)
				if err != nil {
					t.Fatal(err)
				}
				lc, err := x509.ParseCertificate(lint)
				if err != nil {
					t.Fatalf("%s: lint copy does not parse: %v", profile, err)
				}
				if lc.SignatureAlgorithm != want.SignatureAlgorithm || !bytes.Equal(lc.RawTBSCertificate, want.RawTBSCertificate) {
					t.Fatalf("%s: lint copy has algorithm %v, want %v", profile, lc.SignatureAlgorithm, want.SignatureAlgorithm)
				}
				if lc.CheckSignatureFrom(inter) == nil {
					t.Fatalf("%s: the lint copy's placeholder signature verifies under the CA key", profile)
				}
			}
		})
	}
}

// TestPipelineLintRefuses: a certificate zlint finds an error in is refused by the whole pipeline before
// anything is stored or signed. Here the registry of tls-server certificates is built without Mohr's waivers,
// so the internal host name (not a public TLD) is an error of the Baseline Requirements' lint.
func TestPipelineLintRefuses(t *testing.T) {
	c, st, _ := newTestCA(t)
	req := validRequests(t)[ProfileTLSServer]
	req.DNSNames = []string{"hix.moh.internal"}
	if _, err := c.Issue(context.Background(), req); err != nil {
		t.Fatalf("with the waivers: %v", err)
	}
	strict, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: lint.SourceList{lint.RFC5280, lint.CABFBaselineRequirements}})
	if err != nil {
		t.Fatal(err)
	}
	c.regMu.Lock()
	c.regs[ProfileTLSServer] = newLinter(strict)
	c.regMu.Unlock()
	before, events := st.snapshot()
	_, err = c.Issue(context.Background(), req)
	if !errors.Is(err, ErrLint) || !strings.Contains(err.Error(), "e_dnsname_not_valid_tld") {
		t.Fatalf("Issue = %v, want ErrLint naming e_dnsname_not_valid_tld", err)
	}
	if after, events2 := st.snapshot(); len(after) != len(before) || events2 != events {
		t.Fatal("a refused certificate left an intent or an audit event")
	}
}
