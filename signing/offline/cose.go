package offline

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"strings"

	"github.com/veraison/go-cose"

	"github.com/mohr-hix/mohr/keys"
)

// Prefix starts the text of every offline prescription QR code, as "HC1:" starts an EU DCC (HCERT): it names
// the context and version, so a scanner can tell a Mohr prescription from any other QR code.
const Prefix = "RX1:"

// Limits on untrusted input: the largest QR code (version 40) holds 4,296 alphanumeric characters, and a
// payload is never larger than a few kilobytes once inflated.
const (
	maxText     = 4296
	maxInflated = 16 << 10
)

// ErrFormat is returned for QR text that is not a Mohr offline prescription: wrong prefix, bad Base45, bad
// zlib stream, or not a COSE_Sign1.
var ErrFormat = errors.New("offline: not a Mohr offline prescription")

// SignPayload signs p as a COSE_Sign1 (RFC 9052 §4.2) with signer, whose certificate cert must hold its public
// key. The protected header carries the algorithm and cert in x5chain (RFC 9360 §2), so the verifier needs only
// the intermediate and root certificates of a trust bundle. Each signature signer returns is verified before
// use (a card or HSM key; keys.Verifying). It returns the tagged COSE_Sign1.
func SignPayload(ctx context.Context, p *Payload, signer crypto.Signer, cert *x509.Certificate) ([]byte, error) {
	body, err := p.Marshal()
	if err != nil {
		return nil, err
	}
	return sign1(ctx, body, signer, cert, cose.ProtectedHeader{cose.HeaderLabelX5Chain: cert.Raw})
}

// sign1 signs payload with signer after checking that signer's key is cert's (when cert is not nil).
func sign1(ctx context.Context, payload []byte, signer crypto.Signer, cert *x509.Certificate, hdr cose.ProtectedHeader) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cert != nil {
		if err := keys.MatchesCertificate(signer, cert); err != nil {
			return nil, fmt.Errorf("offline: %w", err)
		}
	}
	alg, err := algorithmFor(signer.Public())
	if err != nil {
		return nil, err
	}
	cs, err := cose.NewSigner(alg, withHash{keys.Verifying(signer), hashOf(alg)})
	if err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}
	hdr.SetAlgorithm(alg)
	msg := &cose.Sign1Message{Headers: cose.Headers{Protected: hdr, Unprotected: cose.UnprotectedHeader{}}, Payload: payload}
	if err := msg.Sign(rand.Reader, nil, cs); err != nil {
		return nil, fmt.Errorf("offline: sign: %w", err)
	}
	return msg.MarshalCBOR()
}

// withHash supplies the SignerOpts go-cose v1.3.0 leaves nil when it signs a digest with an ECDSA
// crypto.Signer (ecdsaCryptoSigner.SignDigest): card and HSM keys need the hash to know what they sign. It adds
// nothing else.
type withHash struct {
	crypto.Signer
	h crypto.Hash
}

func (w withHash) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil {
		opts = w.h
	}
	return w.Signer.Sign(r, digest, opts)
}

// hashOf is the digest algorithm of a COSE signature algorithm (RFC 9053 §2.1, RFC 8230 §2).
func hashOf(alg cose.Algorithm) crypto.Hash {
	if alg == cose.AlgorithmES384 {
		return crypto.SHA384
	}
	return crypto.SHA256
}

// algorithmFor returns the COSE algorithm (RFC 9053 §2.1, RFC 8230 §2) for a public key: ES256/ES384 for
// P-256/P-384 (the medical-council card holds P-256 keys), PS256 for RSA.
func algorithmFor(pub crypto.PublicKey) (cose.Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return cose.AlgorithmES256, nil
		case elliptic.P384():
			return cose.AlgorithmES384, nil
		}
	case *rsa.PublicKey:
		return cose.AlgorithmPS256, nil
	}
	return 0, fmt.Errorf("offline: unsupported key %T", pub)
}

// staticDictionary starts the zlib preset dictionary (RFC 1950 §2.2, FDICT) of every RX1 code: strings that
// physician certificates and dosage texts share. Changing it changes every DICTID: it is fixed for "RX1:".
const staticDictionary = "Medical Council of the I.R. of Iran General Practitioner Physician http:// https:// /ocsp /crl/ .crl " +
	"IDCIR- tablet capsule inhaler syrup drops ampoule vial sachet puffs every hours once daily twice daily three times " +
	"with meals before breakfast after food at night as needed for days max a day morning evening"

// Dictionary returns the zlib preset dictionary for codes whose signer was issued by issuer: the static
// dictionary followed by the issuer's DER certificate. A physician certificate repeats its issuer's name, key
// identifier and often its policy and URLs, so the dictionary saves about a fifth of the code: the difference
// between QR version 26 and 23 for five medicines with a production-sized certificate. HCERT uses no dictionary;
// Mohr's verifiers hold the issuer certificates in their trust bundle, so they always have it.
func Dictionary(issuer *x509.Certificate) []byte {
	d := make([]byte, 0, len(staticDictionary)+len(issuer.Raw))
	return append(append(d, staticDictionary...), issuer.Raw...)
}

// EncodeText turns a COSE_Sign1 into the text of the QR code: Prefix, then Base45 (RFC 9285) of the zlib
// (RFC 1950) compression of the message, as HCERT does. With a non-nil issuer (the CA that issued the signing
// certificate) the stream uses Dictionary(issuer) as its preset dictionary. The text uses only the QR
// alphanumeric alphabet.
func EncodeText(coseMsg []byte, issuer *x509.Certificate) (string, error) {
	var dict []byte
	if issuer != nil {
		dict = Dictionary(issuer)
	}
	var z bytes.Buffer
	w, err := zlib.NewWriterLevelDict(&z, zlib.BestCompression, dict)
	if err != nil {
		return "", err
	}
	w.Write(coseMsg)
	if err := w.Close(); err != nil {
		return "", err
	}
	return Prefix + EncodeBase45(z.Bytes()), nil
}

// DecodeText reverses EncodeText and returns the COSE_Sign1 bytes; issuers are the candidates for the preset
// dictionary (a trust bundle's intermediates), chosen by the stream's DICTID. It does not verify anything.
func DecodeText(text string, issuers []*x509.Certificate) ([]byte, error) {
	text = strings.TrimSpace(text)
	if len(text) > maxText+len(Prefix) || !strings.HasPrefix(text, Prefix) {
		return nil, fmt.Errorf("%w: missing %q prefix", ErrFormat, Prefix)
	}
	z, err := DecodeBase45(text[len(Prefix):])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	var dict []byte
	if len(z) >= 6 && z[1]&0x20 != 0 { // FLG.FDICT: DICTID follows CMF and FLG (RFC 1950 §2.2)
		id := binary.BigEndian.Uint32(z[2:6])
		for _, c := range issuers {
			if d := Dictionary(c); adler32.Checksum(d) == id {
				dict = d
				break
			}
		}
		if dict == nil {
			return nil, ErrUnknownDictionary
		}
	}
	return inflate(z, dict)
}

// ErrUnknownDictionary is returned for a code compressed with the dictionary of an issuer the verifier does
// not know: its trust bundle does not hold the CA that issued the signing certificate.
var ErrUnknownDictionary = errors.New("offline: the code was made for a CA that is not in the trust bundle")

// inflate decompresses a zlib stream of at most maxInflated bytes.
func inflate(z, dict []byte) ([]byte, error) {
	r, err := zlib.NewReaderDict(bytes.NewReader(z), dict)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	out, err := io.ReadAll(io.LimitReader(r, maxInflated+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if len(out) > maxInflated {
		return nil, fmt.Errorf("%w: too large", ErrFormat)
	}
	if err := r.Close(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	return out, nil
}

// Encode is SignPayload then EncodeText: the QR text of a payload signed with signer, whose certificate is
// chain[0]; chain[1], when present, is its issuer and gives the compression dictionary.
func Encode(ctx context.Context, p *Payload, signer crypto.Signer, chain []*x509.Certificate) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("offline: no signing certificate")
	}
	msg, err := SignPayload(ctx, p, signer, chain[0])
	if err != nil {
		return "", err
	}
	var issuer *x509.Certificate
	if len(chain) > 1 && bytes.Equal(chain[0].RawIssuer, chain[1].RawSubject) {
		issuer = chain[1]
	}
	return EncodeText(msg, issuer)
}
