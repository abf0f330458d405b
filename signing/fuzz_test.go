package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
)

// Seeds for the fuzzers are kept as plain DER files in testdata/fuzz/seeds (with the root they chain to), so
// they are readable by openssl too. TestUpdateFuzzSeeds rewrites them when MOHR_UPDATE_FUZZ_SEEDS=1.
const seedDir = "testdata/fuzz/seeds"

// seedTime is when the stored seeds were made; the fuzz verifier's clock is pinned just after it.
var seedTime = t0

func TestUpdateFuzzSeeds(t *testing.T) {
	if os.Getenv("MOHR_UPDATE_FUZZ_SEEDS") != "1" {
		t.Skip("set MOHR_UPDATE_FUZZ_SEEDS=1 to rewrite testdata/fuzz/seeds")
	}
	f := newFixture(t)
	os.MkdirAll(seedDir, 0o755)
	bb := f.signBB(t, f.doc, f.physician)
	bt := f.toBT(t, bb)
	blt := f.toBLT(t, bt, f.doc)
	for name, b := range map[string][]byte{"bb.p7s": bb, "bt.p7s": bt, "blt.p7s": blt} {
		os.WriteFile(filepath.Join(seedDir, name), b, 0o644)
	}
	d := sha256.Sum256([]byte("seed"))
	os.WriteFile(filepath.Join(seedDir, "tsreq.der"), tsReq(t, crypto.SHA256, d[:], 99), 0o644)
	os.WriteFile(filepath.Join(seedDir, "root.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.pki.Root.Raw}), 0o644)
}

// sigTriple is what must not change for a signature to pass: the content, the signed attributes and the
// signature value.
type sigTriple [3][32]byte

func tripleOf(der []byte) (sigTriple, bool) {
	var sd signedData
	if parseSignedData(der, &sd) != nil || len(sd.signers) != 1 {
		return sigTriple{}, false
	}
	si := &sd.signers[0]
	return sigTriple{sha256.Sum256(sd.content), sha256.Sum256(si.signedAttrsRaw), sha256.Sum256(si.signature)}, true
}

// FuzzVerify feeds mutated signatures to the verifier. Properties: it never panics, and a TOTAL_PASSED result
// is only possible when the content, the signed attributes and the signature are those of a seed that was
// genuinely signed.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	roots := x509.NewCertPool()
	roots.AddCert(fx.pki.Root)
	if b, err := os.ReadFile(filepath.Join(seedDir, "root.pem")); err == nil {
		roots.AppendCertsFromPEM(b)
	}
	genuine := map[sigTriple]bool{}
	add := func(der []byte) {
		if tr, ok := tripleOf(der); ok {
			genuine[tr] = true
		}
		f.Add(der)
	}
	for _, n := range []string{"bb.p7s", "bt.p7s", "blt.p7s"} {
		if b, err := os.ReadFile(filepath.Join(seedDir, n)); err == nil {
			add(b)
		}
	}
	bb := fx.signBB(f, fx.doc, fx.physician)
	add(bb)
	add(fx.toBLT(f, fx.toBT(f, bb), fx.doc))
	trust := fx.trust()
	if b, err := os.ReadFile(filepath.Join(seedDir, "root.pem")); err == nil {
		if blk, _ := pem.Decode(b); blk != nil {
			if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
				trust.Anchors = append(trust.Anchors, c)
			}
		}
	}
	v, err := NewVerifier(VerifierConfig{Trust: trust, CRLs: fx.crls(), Now: func() time.Time { return seedTime.Add(10 * time.Minute) },
		Revocation: RevocationFunc(func(_ context.Context, c, _ *x509.Certificate) ([]byte, error) { return fx.pki.OCSP(c) })})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		r := v.Verify(context.Background(), der)
		if r == nil {
			t.Fatal("nil report")
		}
		if r.Indication == TotalPassed {
			tr, ok := tripleOf(der)
			if !ok || !genuine[tr] {
				t.Fatalf("a mutated signature passed: %s", r.Summary())
			}
		}
		if r.Indication != r.SubIndication.Indication() {
			t.Fatalf("indication %s does not match sub-indication %s", r.Indication, r.SubIndication)
		}
	})
}

// FuzzTSARequest feeds arbitrary requests to the TSA. Properties: no panic and no error (a malformed request is
// answered with a rejection); every answer is a well-formed TimeStampResp; a granted answer stamps exactly the
// imprint of a well-formed request.
func FuzzTSARequest(f *testing.F) {
	fx := newFixture(f)
	if b, err := os.ReadFile(filepath.Join(seedDir, "tsreq.der")); err == nil {
		f.Add(b)
	}
	d := sha256.Sum256([]byte("x"))
	f.Add(tsReq(f, crypto.SHA256, d[:], 1))
	f.Add(tsReq(f, crypto.SHA512, make([]byte, 64), 0))
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, req []byte) {
		resp, err := fx.tsa.Respond(context.Background(), req)
		if err != nil {
			t.Fatalf("Respond error: %v", err)
		}
		st, _ := respStatus(t, resp)
		parsed, _, perr := parseTSRequest(req)
		if st == 0 {
			if perr != nil {
				t.Fatal("granted a malformed request")
			}
			ts, err := timestamp.ParseResponse(resp)
			if err != nil {
				t.Fatalf("granted response does not parse: %v", err)
			}
			if !bytes.Equal(ts.HashedMessage, parsed.imprint) || ts.HashAlgorithm != parsed.hash {
				t.Fatal("token stamps another imprint")
			}
		}
	})
}
