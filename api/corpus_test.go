package api

import (
	"context"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crypto/x509"

	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/signing"
)

type corpusVerifier struct{ v *signing.Verifier }

func (c corpusVerifier) Verify(ctx context.Context, der []byte) ([]byte, error) {
	return json.Marshal(c.v.Verify(ctx, der))
}

type corpusBatch struct{ b *signing.BatchVerifier }

func (c corpusBatch) VerifyNDJSON(ctx context.Context, r io.Reader, w io.Writer, opt BatchOptions) error {
	_, err := c.b.VerifyNDJSONWith(ctx, r, w, signing.BatchOptions{FromLine: opt.FromLine})
	return err
}

// TestCorpusThroughAPI: POST /v1/verify and POST /v1/verify/batch give every CAdES file of the conformance
// corpus (signing/testdata/corpus) the indication and sub-indication of its manifest.
func TestCorpusThroughAPI(t *testing.T) {
	dir := filepath.Join("..", "signing", "testdata", "corpus")
	certs := func(n string) []*x509.Certificate {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		var out []*x509.Certificate
		for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
		return out
	}
	tp := &signing.TrustPolicy{Anchors: certs("root.pem"), SignerCAs: certs("intermediate.pem"),
		PrescriberPolicies: []asn1.ObjectIdentifier{testpki.OIDPhysicianSigningPolicy}}
	for _, c := range certs("tsa.pem") {
		tp.TSAs = append(tp.TSAs, signing.TrustedTSA{Cert: c})
	}
	v, err := signing.NewVerifier(signing.VerifierConfig{Trust: tp, Now: func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config, s *Services) {
		c.MaxBatchBody = 64 << 20
		s.Verifier, s.Batch = corpusVerifier{v}, corpusBatch{&signing.BatchVerifier{Verifier: v, Workers: 2}}
	})
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var entries []struct{ File, Content, Indication, SubIndication string }
	if err := json.Unmarshal(b, &entries); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	var ndjson strings.Builder
	for _, en := range entries {
		if en.Content != "" {
			continue // detached rows: the API takes enveloping CAdES
		}
		der, err := os.ReadFile(filepath.Join(dir, en.File))
		if err != nil {
			t.Fatal(err)
		}
		want[en.File] = en.Indication + "/" + en.SubIndication
		line, _ := json.Marshal(map[string]any{"name": en.File, "cms": der})
		ndjson.Write(append(line, '\n'))
		r := e.do(string(RoleInsurer), "POST", "/v1/verify", ctCMS, der)
		if len(der) == 0 { // refused before the verifier: an empty body is malformed
			checkProblem(t, r, 400)
			continue
		}
		var rep struct{ Indication, SubIndication string }
		if r.status != 200 || json.Unmarshal(r.body, &rep) != nil {
			t.Fatalf("%s: %d %s", en.File, r.status, r.body)
		}
		if got := rep.Indication + "/" + rep.SubIndication; got != want[en.File] {
			t.Errorf("POST /v1/verify %s: got %s, want %s", en.File, got, want[en.File])
		}
	}
	r := e.do(string(RoleInsurer), "POST", "/v1/verify/batch", ctNDJSON, []byte(ndjson.String()))
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(r.body)), "\n") {
		var rep struct {
			Name, Indication, SubIndication string
			Line                            int
			Summary                         *struct{ Lines, Documents int }
		}
		if err := json.Unmarshal([]byte(line), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Summary != nil { // the closing line
			if rep.Summary.Lines != len(want) {
				t.Errorf("summary %s", line)
			}
			continue
		}
		if rep.Line != n+1 {
			t.Errorf("result %d is for line %d", n+1, rep.Line)
		}
		if got := rep.Indication + "/" + rep.SubIndication; got != want[rep.Name] {
			t.Errorf("batch %s: got %s, want %s", rep.Name, got, want[rep.Name])
		}
		n++
	}
	if n != len(want) {
		t.Fatalf("batch: %d reports for %d files", n, len(want))
	}
}
