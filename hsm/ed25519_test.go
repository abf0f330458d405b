package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/mohr-hix/mohr/internal/testenv"
	"github.com/mohr-hix/mohr/keys"
)

// ed25519Messages are what the Ed25519 tests sign: pure Ed25519 signs whole messages, of any length.
var ed25519Messages = [][]byte{nil, []byte("mohr.audit/mohr\n42\nAAAA\n"), bytes.Repeat([]byte{0xa5}, 64<<10)}

func TestEd25519GenerateSign(t *testing.T) {
	module, pinFile := softhsm(t)
	o := newTestOpener(t, module, 2)
	ctx := context.Background()
	uri := keyURI(tokCA, "gen-"+AlgEd25519, pinFile)
	s, err := o.GenerateKey(ctx, uri, AlgEd25519)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	pub, ok := s.Public().(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("public key %T %d bytes, want ed25519.PublicKey", s.Public(), len(pub))
	}
	k := s.(*Key)
	for _, msg := range ed25519Messages {
		sig, err := k.SignContext(ctx, msg, crypto.Hash(0))
		if err != nil {
			t.Fatalf("SignContext (%d bytes): %v", len(msg), err)
		}
		if !ed25519.Verify(pub, msg, sig) {
			t.Fatalf("crypto/ed25519 refuses the token's signature of %d bytes", len(msg))
		}
		// RFC 8032 signatures are deterministic: the same message gives the same signature, through
		// crypto.Signer with *ed25519.Options as well.
		sig2, err := s.Sign(rand.Reader, msg, &ed25519.Options{})
		if err != nil || !bytes.Equal(sig, sig2) {
			t.Fatalf("second signature: err %v, equal %v", err, bytes.Equal(sig, sig2))
		}
	}
	for _, tc := range []struct {
		name string
		opts crypto.SignerOpts
	}{
		{"SHA-256 digest", crypto.SHA256},
		{"Ed25519ph", &ed25519.Options{Hash: crypto.SHA512}},
		{"Ed25519ctx", &ed25519.Options{Context: "mohr"}},
		{"nil options", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := make([]byte, 32)
			if tc.opts != nil && tc.opts.HashFunc() != 0 {
				msg = make([]byte, tc.opts.HashFunc().Size())
			}
			sig, err := k.SignContext(ctx, msg, tc.opts)
			if !errors.Is(err, keys.ErrUnsupportedKey) || sig != nil {
				t.Fatalf("got sig %x, err %v; want keys.ErrUnsupportedKey", sig, err)
			}
		})
	}
	if _, err := o.GenerateKey(ctx, uri, AlgEd25519); !errors.Is(err, ErrExists) {
		t.Fatalf("second GenerateKey: got %v, want ErrExists", err)
	}
	// Opened again, by label and by the ID GenerateKey chose, it has the same public key and signs.
	for _, u := range []string{uri, (&URI{Token: tokCA, ID: k.ID(), PINSource: "file:" + pinFile}).String()} {
		k2, err := o.OpenKey(ctx, u)
		if err != nil {
			t.Fatalf("OpenKey %s: %v", u, err)
		}
		if !pub.Equal(k2.Public()) {
			t.Fatalf("%s: another public key", u)
		}
		sig, err := k2.SignContext(ctx, ed25519Messages[1], crypto.Hash(0))
		if err != nil || !ed25519.Verify(pub, ed25519Messages[1], sig) {
			t.Fatalf("%s: sign: %v", u, err)
		}
	}
	// x509.CreateCertificate signs with it (pure Ed25519 over the TBS) and checks the result itself.
	cert := selfSigned(t, s)
	if err := o.StoreCertificate(ctx, uri, cert); err != nil {
		t.Fatalf("StoreCertificate: %v", err)
	}
	if err := keys.MatchesCertificate(s, cert); err != nil {
		t.Fatal(err)
	}
	objs, err := o.Objects(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	for _, ob := range objs {
		if ob.Class == "private" && (ob.KeyType != "EdDSA" || !ob.Sensitive || ob.Extractable || !ob.NeverExtractable) {
			t.Fatalf("Objects lists the key as %+v", ob)
		}
	}
}

// TestEd25519NotExtractable asks the token for the private key's value through a second handle on the
// module, as any other program could: the token refuses (CKR_ATTRIBUTE_SENSITIVE).
func TestEd25519NotExtractable(t *testing.T) {
	module, pinFile := softhsm(t)
	o := newTestOpener(t, module, 1)
	ctx := context.Background()
	if _, err := o.GenerateKey(ctx, keyURI(tokExt, "secret-"+AlgEd25519, pinFile), AlgEd25519); err != nil {
		t.Fatal(err)
	}
	c, slot := secondHandle(t, module, tokExt)
	sh, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseSession(sh)
	c.Login(sh, pkcs11.CKU_USER, testenv.SoftHSMPIN) // the process may be logged in already
	h, err := findOne(c, sh, pkcs11.CKO_PRIVATE_KEY, "secret-"+AlgEd25519, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if rv(err) != pkcs11.CKR_ATTRIBUTE_SENSITIVE {
		t.Fatalf("reading CKA_VALUE: got %v, want CKR_ATTRIBUTE_SENSITIVE", err)
	}
	a, err := attrs(c, sh, h, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_NEVER_EXTRACTABLE,
		pkcs11.CKA_ALWAYS_SENSITIVE, pkcs11.CKA_DECRYPT, pkcs11.CKA_UNWRAP, pkcs11.CKA_DERIVE, pkcs11.CKA_KEY_TYPE)
	if err != nil {
		t.Fatal(err)
	}
	if ulong(a[pkcs11.CKA_KEY_TYPE]) != ckkECEdwards || !boolAttr(a[pkcs11.CKA_SENSITIVE]) || boolAttr(a[pkcs11.CKA_EXTRACTABLE]) ||
		!boolAttr(a[pkcs11.CKA_NEVER_EXTRACTABLE]) || !boolAttr(a[pkcs11.CKA_ALWAYS_SENSITIVE]) ||
		boolAttr(a[pkcs11.CKA_DECRYPT]) || boolAttr(a[pkcs11.CKA_UNWRAP]) || boolAttr(a[pkcs11.CKA_DERIVE]) {
		t.Fatalf("private key attributes %x", a)
	}
}

// TestEd25519OutsideCheck checks the Ed25519 support with OpenSC's pkcs11-tool, in its own process: the key
// Mohr generates is listed as an EC_EDWARDS key, sensitive and never extractable, usage sign only, with the
// public key Mohr reads; a signature pkcs11-tool makes with it (CKM_EDDSA) verifies with crypto/ed25519; and
// a key pkcs11-tool generates (CKA_EC_PARAMS as the curve name, not the OID) signs through Mohr.
func TestEd25519OutsideCheck(t *testing.T) {
	module, pinFile := softhsm(t)
	o := newTestOpener(t, module, 2)
	ctx := context.Background()
	label := "mohr-" + AlgEd25519
	s, err := o.GenerateKey(ctx, keyURI(tokExt, label, pinFile), AlgEd25519)
	if err != nil {
		t.Fatal(err)
	}
	pub := s.Public().(ed25519.PublicKey)
	out := pkcs11Tool(t, module, "--token-label", tokExt, "-O", "--login", "--pin", testenv.SoftHSMPIN)
	blk := privateKeyBlock(out, label)
	if blk == "" || !strings.Contains(blk, "EC_EDWARDS") {
		t.Fatalf("pkcs11-tool does not list the Ed25519 private key %s:\n%s", label, out)
	}
	for _, want := range []string{"sensitive", "always sensitive", "never extractable", "sign"} {
		if !strings.Contains(blk, want) {
			t.Errorf("pkcs11-tool does not say %q:\n%s", want, blk)
		}
	}
	for _, bad := range []string{"decrypt", "unwrap", "derive"} {
		if strings.Contains(usageLine(blk), bad) {
			t.Errorf("usage includes %q:\n%s", bad, blk)
		}
	}
	if point := "0420" + hex.EncodeToString(pub); !strings.Contains(out, "EC_POINT:   "+point) {
		t.Errorf("pkcs11-tool shows no public key with EC_POINT %s:\n%s", point, out)
	}

	dir := t.TempDir()
	in, sigFile := filepath.Join(dir, "in"), filepath.Join(dir, "sig")
	msg := []byte("checkpoint signed by pkcs11-tool")
	os.WriteFile(in, msg, 0o600)
	pkcs11Tool(t, module, "--token-label", tokExt, "--login", "--pin", testenv.SoftHSMPIN,
		"--sign", "--mechanism", "EDDSA", "--id", hex.EncodeToString(s.(*Key).ID()), "-i", in, "-o", sigFile) // --sign picks the key by ID only
	sig, err := os.ReadFile(sigFile)
	if err != nil || !ed25519.Verify(pub, msg, sig) {
		t.Fatalf("pkcs11-tool's EDDSA signature (%x) with Mohr's key does not verify with Mohr's public key %x (%v)", sig, pub, err)
	}

	pkcs11Tool(t, module, "--token-label", tokExt, "--login", "--pin", testenv.SoftHSMPIN,
		"--keypairgen", "--key-type", "EC:edwards25519", "--label", "tool-ed25519", "--id", "e1", "--usage-sign")
	k, err := o.OpenKey(ctx, keyURI(tokExt, "tool-ed25519", pinFile))
	if err != nil {
		t.Fatalf("Mohr cannot open the Ed25519 key pkcs11-tool made: %v", err)
	}
	for _, m := range ed25519Messages {
		sig, err := k.SignContext(ctx, m, crypto.Hash(0))
		if err != nil || !ed25519.Verify(k.Public().(ed25519.PublicKey), m, sig) {
			t.Fatalf("sign with pkcs11-tool's key: %v", err)
		}
	}
}

// TestEd25519WrongPIN opens an Ed25519 key that pkcs11-tool made on a token this process never logged in
// to: a wrong PIN is refused (and not presented twice), the right one opens it.
func TestEd25519WrongPIN(t *testing.T) {
	module, pinFile := softhsm(t)
	pkcs11Tool(t, module, "--token-label", tokEdPIN, "--login", "--pin", testenv.SoftHSMPIN,
		"--keypairgen", "--key-type", "EC:edwards25519", "--label", "ed-pin", "--usage-sign")
	o := newTestOpener(t, module, 1)
	ctx := context.Background()
	bad := filepath.Join(t.TempDir(), "badpin")
	os.WriteFile(bad, []byte("4321\n"), 0o600)
	u := keyURI(tokEdPIN, "ed-pin", bad)
	for i := range 2 {
		k, err := o.OpenSigner(ctx, u)
		var le *LoginError
		if !errors.As(err, &le) || !errors.Is(err, keys.ErrPINIncorrect) || k != nil {
			t.Fatalf("attempt %d with a wrong PIN: got %v, want *LoginError matching keys.ErrPINIncorrect", i, err)
		}
		if strings.Contains(err.Error(), "4321") {
			t.Fatalf("error %q quotes the PIN", err)
		}
	}
	k, err := o.OpenKey(ctx, keyURI(tokEdPIN, "ed-pin", pinFile))
	if err != nil {
		t.Fatalf("right PIN: %v", err)
	}
	sig, err := k.SignContext(ctx, ed25519Messages[1], crypto.Hash(0))
	if err != nil || !ed25519.Verify(k.Public().(ed25519.PublicKey), ed25519Messages[1], sig) {
		t.Fatalf("sign after the right PIN: %v", err)
	}
}

// TestEd25519FaultySignatureRefused flips one bit of the token's CKM_EDDSA answer: Mohr refuses it with
// keys.ErrBadSignature, through SignContext and crypto.Signer, and signs again once the token is sound.
func TestEd25519FaultySignatureRefused(t *testing.T) {
	module, pinFile := softhsm(t)
	ctx := context.Background()
	wrapped := "/corrupt/" + t.Name()
	cb := &corruptingBackend{}
	old := loadBackend
	loadBackend = func(p string) (backend, error) {
		if p != wrapped {
			return old(p)
		}
		b, err := old(module)
		if err != nil {
			return nil, err
		}
		cb.backend = b
		return cb, nil
	}
	t.Cleanup(func() { loadBackend = old })
	o := newTestOpener(t, wrapped, 1)
	s, err := o.GenerateKey(ctx, keyURI(tokFault, "corrupt-"+AlgEd25519, pinFile), AlgEd25519)
	if err != nil {
		t.Fatal(err)
	}
	k := s.(*Key)
	msg := ed25519Messages[1]
	cb.corrupt.Store(true)
	sig, err := k.SignContext(ctx, msg, crypto.Hash(0))
	sig2, err2 := k.Sign(nil, msg, crypto.Hash(0))
	cb.corrupt.Store(false)
	if cb.flipped.Load() != 2 {
		t.Fatalf("the wrapper corrupted %d answers, want 2", cb.flipped.Load())
	}
	if !errors.Is(err, keys.ErrBadSignature) || sig != nil || !errors.Is(err2, keys.ErrBadSignature) || sig2 != nil {
		t.Fatalf("corrupted signatures: got %x, %v and %x, %v; want keys.ErrBadSignature", sig, err, sig2, err2)
	}
	if sig, err = k.SignContext(ctx, msg, crypto.Hash(0)); err != nil || !ed25519.Verify(s.Public().(ed25519.PublicKey), msg, sig) {
		t.Fatalf("after the fault: %v", err)
	}
}

func TestEd25519Params(t *testing.T) {
	mustOID := func(o asn1.ObjectIdentifier) []byte { b, _ := asn1.Marshal(o); return b }
	mustPrintable := func(s string) []byte { b, _ := asn1.MarshalWithParams(s, "printable"); return b }
	for _, tc := range []struct {
		name   string
		params []byte
		want   bool
	}{
		{"id-Ed25519 (RFC 8410)", mustOID(oidEd25519), true},
		{"curve name", mustPrintable("edwards25519"), true},
		{"GnuPG OID", mustOID(oidEd25519GnuPG), true},
		{"id-Ed448", mustOID(asn1.ObjectIdentifier{1, 3, 101, 113}), false},
		{"edwards448", mustPrintable("edwards448"), false},
		{"P-256", mustOID(oidP256), false},
		{"trailing byte", append(mustOID(oidEd25519), 0), false},
		{"UTF8String name", []byte("\x0c\x0cedwards25519"), false},
		{"empty", nil, false},
	} {
		if got := isEd25519Params(tc.params); got != tc.want {
			t.Errorf("%s (%x): got %v, want %v", tc.name, tc.params, got, tc.want)
		}
	}
	key := bytes.Repeat([]byte{7}, 32)
	for _, tc := range []struct {
		name  string
		point []byte
		ok    bool
	}{
		{"OCTET STRING", append([]byte{4, 32}, key...), true},
		{"bare", key, true},
		{"short", key[:31], false},
		{"OCTET STRING of 31", append([]byte{4, 31}, key[:31]...), false},
		{"wrong tag", append([]byte{3, 32}, key...), false},
		{"long-form length", append([]byte{4, 0x81, 32}, key...), false},
		{"uncompressed EC point", append([]byte{4}, bytes.Repeat(key, 2)...), false},
	} {
		pub, err := parseEd25519Point(tc.point)
		if tc.ok != (err == nil) || tc.ok && !bytes.Equal(pub, key) {
			t.Errorf("%s: got %x, %v", tc.name, pub, err)
		}
		if err != nil && !errors.Is(err, keys.ErrUnsupportedKey) {
			t.Errorf("%s: error %v does not match keys.ErrUnsupportedKey", tc.name, err)
		}
	}
}

// FuzzParseEd25519Point checks that whatever a token returns as CKA_EC_POINT, parseEd25519Point accepts only a
// 32-byte key given bare or as the exact DER OCTET STRING around it, and returns those 32 bytes.
func FuzzParseEd25519Point(f *testing.F) {
	f.Add(append([]byte{4, 32}, make([]byte, 32)...))
	f.Add(make([]byte, 32))
	f.Add([]byte{4, 0x81, 32})
	f.Fuzz(func(t *testing.T, point []byte) {
		pub, err := parseEd25519Point(point)
		if err != nil {
			return
		}
		switch {
		case len(pub) != ed25519.PublicKeySize:
			t.Fatalf("%d-byte key from %x", len(pub), point)
		case len(point) == 32 && bytes.Equal(pub, point):
		case len(point) == 34 && point[0] == 4 && point[1] == 32 && bytes.Equal(pub, point[2:]):
		default:
			t.Fatalf("accepted %x as %x", point, pub)
		}
	})
}
