package signing

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/internal/testpki"
)

var updateCorpus = flag.Bool("update", false, "regenerate testdata/corpus (TestCorpus)")

// CorpusDir holds the conformance corpus: signed files, manifest.json and the trust material (root.pem,
// intermediate.pem as the signer CA, tsa.pem as the TSA trust list; prescriber policy testpki's).
const corpusDir = "testdata/corpus"

// corpusTrust reads the corpus's trust policy from dir.
func corpusTrust(t testing.TB, dir string) *TrustPolicy {
	read := func(n string) []*x509.Certificate {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		var out []*x509.Certificate
		for _, blk := range pemBlocks(b) {
			c, err := x509.ParseCertificate(blk)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
		return out
	}
	tp := &TrustPolicy{Anchors: read("root.pem"), SignerCAs: read("intermediate.pem"),
		PrescriberPolicies: []asn1.ObjectIdentifier{testpki.OIDPhysicianSigningPolicy}}
	for _, c := range read("tsa.pem") {
		tp.TSAs = append(tp.TSAs, TrustedTSA{Cert: c})
	}
	return tp
}

// TestCorpus checks every file of the conformance corpus against its expected indication and sub-indication
// (manifest.json), and that OpenSSL accepts every CAdES file expected to pass. With -update it regenerates the
// corpus first (deterministically: pinned clock, cryptotest's global random source).
func TestCorpus(t *testing.T) {
	if *updateCorpus {
		cryptotest.SetGlobalRandom(t, 12)
		g := generateCorpus(t)
		os.RemoveAll(corpusDir)
		if err := os.MkdirAll(corpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for n, b := range g.files {
			writeFile(t, corpusDir, n, b)
		}
		js, _ := json.MarshalIndent(g.entries, "", "  ")
		writeFile(t, corpusDir, "manifest.json", append(js, '\n'))
		testpki.WriteCerts(filepath.Join(corpusDir, "root.pem"), g.f.pki.Root)
		testpki.WriteCerts(filepath.Join(corpusDir, "intermediate.pem"), g.f.pki.Intermediate)
		testpki.WriteCerts(filepath.Join(corpusDir, "tsa.pem"), g.tsas...)
	}
	var entries []corpusEntry
	b, err := os.ReadFile(filepath.Join(corpusDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) < 60 {
		t.Fatalf("corpus has %d files; at least 60 expected", len(entries))
	}
	v, err := NewVerifier(VerifierConfig{Trust: corpusTrust(t, corpusDir), Now: func() time.Time { return corpusNow }})
	if err != nil {
		t.Fatal(err)
	}
	openssl := testenv.Tool(t, "openssl")
	tsChecked.Store(0)
	passed := 0
	for _, e := range entries {
		if e.Indication == TotalPassed {
			passed++
		}
		t.Run(e.File, func(t *testing.T) {
			der, err := os.ReadFile(filepath.Join(corpusDir, e.File))
			if err != nil {
				t.Fatal(err)
			}
			var r *Report
			if e.Content != "" {
				content, err := os.ReadFile(filepath.Join(corpusDir, e.Content))
				if err != nil {
					t.Fatal(err)
				}
				r = v.VerifyDetached(context.Background(), der, content)
			} else {
				r = v.Verify(context.Background(), der)
			}
			if r.Indication != e.Indication || r.SubIndication != e.SubIndication {
				t.Fatalf("%s (%s): got %s", e.File, e.Tests, r.Summary())
			}
			if e.Indication == TotalPassed {
				args := []string{"cms", "-verify", "-binary", "-inform", "DER", "-in", filepath.Join(corpusDir, e.File),
					"-CAfile", filepath.Join(corpusDir, "root.pem"), "-purpose", "any", "-attime", strconv.FormatInt(corpusNow.Unix(), 10), "-out", os.DevNull}
				if e.Content != "" {
					args = append(args, "-content", filepath.Join(corpusDir, e.Content))
				}
				if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
					t.Fatalf("openssl cms -verify refuses %s: %v\n%s", e.File, err, out)
				}
				opensslTSVerify(t, openssl, der)
			}
		})
	}
	if passed > 0 && tsChecked.Load() == 0 && !t.Failed() {
		t.Fatal("no corpus file expected to pass carries a signature timestamp: openssl ts -verify checked nothing")
	}
	t.Logf("openssl ts -verify accepted the signature timestamps of %d of the %d files expected to pass", tsChecked.Load(), passed)
}

// opensslTSVerify is the outside check of every signature timestamp of der (a corpus file expected to pass):
// `openssl ts -verify` accepts the token over the imprint of the signature value, computed here (not read from
// the token), with the corpus root and intermediate as the trust store, at the token's genTime; and refuses it
// over a changed imprint. The TSA's certificate is in the token or in tsa.pem (-untrusted).
func opensslTSVerify(t *testing.T, openssl string, der []byte) {
	t.Helper()
	sd, err := parseOne(der)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	var pems []byte
	for _, n := range []string{"root.pem", "intermediate.pem"} {
		b, err := os.ReadFile(filepath.Join(corpusDir, n))
		if err != nil {
			t.Fatal(err)
		}
		pems = append(pems, b...)
	}
	if err := os.WriteFile(ca, pems, 0o644); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range sd.signers[0].unsignedAttrs {
		if !bytes.Equal(a.oid, dSigTimeStamp) {
			continue
		}
		tok, ok := a.single()
		if !ok {
			t.Fatal("signature-time-stamp attribute without exactly one value")
		}
		var tsd signedData
		if err := parseSignedData(tok, &tsd); err != nil || !tsd.hasContent {
			t.Fatalf("signature timestamp token: %v", err)
		}
		info, err := parseTSTInfo(tsd.content)
		if err != nil {
			t.Fatal(err)
		}
		h := hashFromDER(info.hashOID)
		if h == 0 {
			t.Fatal("signature timestamp: unknown imprint hash")
		}
		hh := h.New()
		hh.Write(sd.signers[0].signature)
		sum := hh.Sum(nil)
		tokFile := writeFile(t, dir, "token.der", tok)
		args := func(imprint []byte) []string {
			return []string{"ts", "-verify", "-digest", hex.EncodeToString(imprint), "-token_in", "-in", tokFile,
				"-CAfile", ca, "-untrusted", filepath.Join(corpusDir, "tsa.pem"), "-attime", strconv.FormatInt(info.genTime.Unix(), 10)}
		}
		out, err := exec.Command(openssl, args(sum)...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verification: OK") {
			t.Fatalf("openssl ts -verify refuses signature timestamp %d: %v\n%s", n+1, err, out)
		}
		sum[len(sum)-1] ^= 1
		out, err = exec.Command(openssl, args(sum)...).CombinedOutput()
		if err == nil && strings.Contains(string(out), "Verification: OK") {
			t.Fatalf("openssl ts -verify accepts signature timestamp %d over a wrong imprint", n+1)
		}
		n++
	}
	if n > 0 {
		tsChecked.Add(1)
	}
}

// tsChecked counts corpus files whose signature timestamps openssl ts -verify accepted.
var tsChecked atomic.Int64

// pemBlocks returns the DER of every PEM block of b.
func pemBlocks(b []byte) [][]byte {
	var out [][]byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		out = append(out, blk.Bytes)
	}
}
