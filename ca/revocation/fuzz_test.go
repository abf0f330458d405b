package revocation

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ocsp"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzParseRequest seeds")

// fuzzSeeds are requests of every shape the responder meets: SHA-1 and SHA-256, with and without a
// nonce, several CertIDs, another issuer, and broken variants.
func fuzzSeeds(t testing.TB, f *ocspFixture) map[string][]byte {
	good, _ := f.p.leaf(t, true)
	unknown, _ := f.p.leaf(t, false)
	id1 := certID(t, good, f.p.inter, crypto.SHA1)
	id256 := certID(t, good, f.p.inter, crypto.SHA256)
	idU := certID(t, unknown, f.p.inter, crypto.SHA1)
	xreq, _ := ocsp.CreateRequest(good, f.p.inter, nil)
	nonce := bytes.Repeat([]byte{0x5a}, 16)
	seeds := map[string][]byte{
		"xcrypto-sha1":   xreq,
		"sha256":         request(t, nil, id256),
		"sha1-nonce":     request(t, nonce, id1),
		"sha256-nonce32": request(t, bytes.Repeat([]byte{1}, 32), id256),
		"two-certids":    request(t, nil, id1, idU),
		"unknown-serial": request(t, nil, idU),
		"truncated":      xreq[:len(xreq)-3],
		"empty-list":     request(t, nil),
		"nonce-33":       request(t, make([]byte, 33), id1),
		"empty":          {},
	}
	// A signed request: [0] EXPLICIT Signature after the TBSRequest.
	signed := append([]byte(nil), xreq[2:]...)
	sig := []byte{0xa0, 0x04, 0x30, 0x02, 0x05, 0x00}
	body := append(signed, sig...)
	seeds["signed"] = append([]byte{0x30, byte(len(body))}, body...)
	return seeds
}

func FuzzParseRequest(f *testing.F) {
	ctx := context.Background()
	fx := newOCSPFixture(f, testEpoch)
	seeds := fuzzSeeds(f, fx)
	if err := fx.r.Start(ctx); err != nil {
		f.Fatal(err)
	}
	if *updateSeeds {
		dir := filepath.Join("testdata", "fuzz", "FuzzParseRequest")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			f.Fatal(err)
		}
		for name, b := range seeds {
			data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				f.Fatal(err)
			}
		}
	}
	for _, b := range seeds {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		req, err := ParseRequest(der)
		answer, rerr := fx.r.Handle(ctx, der)
		resp := answer.DER
		if plain, err := fx.r.Respond(ctx, der); err != nil || len(plain) == 0 {
			t.Fatalf("Respond: %x, %v", plain, err)
		}
		if len(resp) == 0 {
			t.Fatalf("empty response (err %v)", rerr)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedRequest) || !errors.Is(rerr, ErrMalformedRequest) || !bytes.Equal(resp, malformedResponse) {
				t.Fatalf("parse error %v, respond error %v, response %x", err, rerr, resp)
			}
			return
		}
		if len(der) > MaxRequestSize || req.Count < 1 || (req.Nonce != nil && (len(req.Nonce) < 1 || len(req.Nonce) > 32)) {
			t.Fatalf("accepted out-of-profile request: %d bytes, %d CertIDs, nonce %d", len(der), req.Count, len(req.Nonce))
		}
		// Property: the CertID re-encodes, and both this parser and golang.org/x/crypto/ocsp read the
		// re-encoding back to the same CertID.
		id := req.CertID
		re := request(t, req.Nonce, id)
		back, err := ParseRequest(re)
		if err != nil {
			t.Fatalf("re-encoded request rejected: %v", err)
		}
		if !sameCertID(back.CertID, id) || back.Count != 1 || !bytes.Equal(back.Nonce, req.Nonce) {
			t.Fatalf("round trip changed the request: %+v -> %+v", req, back)
		}
		xr, err := ocsp.ParseRequest(re)
		if err != nil {
			t.Fatalf("x/crypto/ocsp rejects the re-encoded request: %v", err)
		}
		if xr.HashAlgorithm != id.Hash || !bytes.Equal(xr.IssuerNameHash, id.IssuerNameHash) ||
			!bytes.Equal(xr.IssuerKeyHash, id.IssuerKeyHash) || xr.SerialNumber.Cmp(id.Serial()) != 0 {
			t.Fatalf("x/crypto/ocsp reads another CertID: %+v vs %+v", xr, id)
		}
		idDER, err := id.Marshal()
		if err != nil || !bytes.Contains(re, idDER) {
			t.Fatalf("CertID.Marshal: %v", err)
		}
		// A successful response answers exactly this CertID.
		if rerr == nil {
			r, err := ocsp.ParseResponse(resp, fx.p.inter)
			if err != nil {
				t.Fatalf("response does not parse: %v", err)
			}
			if r.SerialNumber.Cmp(id.Serial()) != 0 || r.IssuerHash != id.Hash {
				t.Fatalf("response answers serial %x/%v, asked %x/%v", r.SerialNumber, r.IssuerHash, id.Serial(), id.Hash)
			}
		} else if !errors.Is(rerr, ErrUnauthorized) && !errors.Is(rerr, ErrInternal) {
			t.Fatalf("accepted request answered with %v", rerr)
		}
	})
}

func sameCertID(a, b CertID) bool {
	return a.Hash == b.Hash && bytes.Equal(a.IssuerNameHash, b.IssuerNameHash) &&
		bytes.Equal(a.IssuerKeyHash, b.IssuerKeyHash) && bytes.Equal(a.rawSerial, b.rawSerial)
}
