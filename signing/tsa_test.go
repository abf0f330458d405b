package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"math/big"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func tsReq(t testing.TB, h crypto.Hash, digest []byte, nonce int64) []byte {
	req := &timestamp.Request{HashAlgorithm: h, HashedMessage: digest, Certificates: true}
	if nonce != 0 {
		req.Nonce = big.NewInt(nonce)
	}
	der, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// respStatus returns the PKIStatus and failInfo bit (or -1) of a TimeStampResp.
func respStatus(t *testing.T, der []byte) (int, int) {
	s := cryptobyte.String(der)
	var resp, status cryptobyte.String
	var st int64
	if !s.ReadASN1(&resp, cbasn1.SEQUENCE) || !resp.ReadASN1(&status, cbasn1.SEQUENCE) || !status.ReadASN1Int64WithTag(&st, cbasn1.INTEGER) {
		t.Fatalf("malformed response %x", der)
	}
	status.SkipOptionalASN1(cbasn1.SEQUENCE)
	bit := -1
	var bs cryptobyte.String
	if status.ReadASN1(&bs, cbasn1.BIT_STRING) && len(bs) > 1 {
		for i, b := range bs[1:] {
			for j := 0; j < 8; j++ {
				if b&(0x80>>j) != 0 {
					bit = i*8 + j
				}
			}
		}
	}
	return int(st), bit
}

func TestTSARespond(t *testing.T) {
	f := newFixture(t)
	d := sha256.Sum256([]byte("hello"))
	good := tsReq(t, crypto.SHA256, d[:], 42)
	tests := []struct {
		name    string
		req     []byte
		status  int
		failBit int
	}{
		{"granted", good, 0, -1},
		{"empty", nil, 2, FailBadDataFormat},
		{"garbage", []byte{0x30, 0x03, 0x02, 0x01}, 2, FailBadDataFormat},
		{"trailing byte", append(append([]byte{}, good...), 0), 2, FailBadDataFormat},
		{"SHA-1 refused", tsReq(t, crypto.SHA1, make([]byte, 20), 0), 2, FailBadAlg},
		{"wrong digest length", tsReq(t, crypto.SHA256, make([]byte, 31), 0), 2, FailBadDataFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := f.tsa.Respond(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			st, bit := respStatus(t, resp)
			if st != tc.status || bit != tc.failBit {
				t.Fatalf("status %d bit %d, want %d %d", st, bit, tc.status, tc.failBit)
			}
			// The statusString goes to unauthenticated callers: no internal error text.
			if bytes.Contains(resp, []byte("signing:")) || bytes.Contains(resp, []byte("asn1")) {
				t.Fatalf("internal error text in the response: %q", resp)
			}
			if st == 0 {
				ts, err := timestamp.ParseResponse(resp) // interop: digitorus parses and verifies it
				if err != nil {
					t.Fatal(err)
				}
				if ts.Nonce.Int64() != 42 || !ts.Time.Equal(t0) || ts.Accuracy != time.Second || !ts.Policy.Equal(tsaPolicy) {
					t.Fatalf("token %+v", ts)
				}
			}
		})
	}
}

// TestTSAUniqueSerials checks concurrent tokens never share a serial.
func TestTSAUniqueSerials(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				d := sha256.Sum256([]byte{byte(i), byte(j)})
				resp, _ := f.tsa.Respond(context.Background(), tsReq(t, crypto.SHA256, d[:], 0))
				ts, err := timestamp.ParseResponse(resp)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[ts.SerialNumber.String()] {
					t.Error("duplicate serial")
				}
				seen[ts.SerialNumber.String()] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestTSACertificateMustBeCriticalTimeStamping(t *testing.T) {
	f := newFixture(t)
	if _, err := NewTSA(f.doc.Key, f.doc.Chain, TSAConfig{Policy: tsaPolicy}); err == nil {
		t.Fatal("a physician certificate was accepted as a TSA certificate")
	}
}

// TestOpenSSLVerifiesTSAResponses is the outside check: openssl ts -verify accepts the TSA's responses and
// tokens.
func TestOpenSSLVerifiesTSAResponses(t *testing.T) {
	openssl := needTool(t, "openssl")
	f := newFixture(t)
	dir := t.TempDir()
	root, _ := f.pki.WritePEM(dir)
	data := writeFile(t, dir, "data.txt", []byte("prescription bytes"))
	d := sha256.Sum256([]byte("prescription bytes"))
	resp, err := f.tsa.Respond(context.Background(), tsReq(t, crypto.SHA256, d[:], 7))
	if err != nil {
		t.Fatal(err)
	}
	rf := writeFile(t, dir, "resp.tsr", resp)
	tok, _ := f.tsa.Timestamp(context.Background(), crypto.SHA256, d[:])
	tf := writeFile(t, dir, "tok.der", tok)
	for _, args := range [][]string{
		{"ts", "-verify", "-in", rf, "-data", data, "-CAfile", root, "-untrusted", dir + "/intermediate.pem", "-attime", "1772359200"},
		{"ts", "-verify", "-in", tf, "-token_in", "-data", data, "-CAfile", root, "-untrusted", dir + "/intermediate.pem", "-attime", "1772359200"},
	} {
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verification: OK") {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
}

func TestHTTPTimestamper(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(serveTSA(f.tsa))
	defer srv.Close()
	c := &HTTPTimestamper{URL: srv.URL, Timeout: 5 * time.Second}
	bb := f.signBB(t, f.doc, f.physician)
	bt, err := AddSignatureTimestamp(context.Background(), bb, c)
	if err != nil {
		t.Fatal(err)
	}
	if r := f.verifier(t, nil).Verify(context.Background(), bt); !r.Passed() || r.Level != "B-T" {
		t.Fatal(r.Summary())
	}
}
