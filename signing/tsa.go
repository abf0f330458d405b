package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mohr-hix/mohr/keys"
)

// Timestamper obtains an RFC 3161 TimeStampToken (a DER ContentInfo) for digest, made with h.
// The TSA (in-process) and HTTPTimestamper (remote) implement it.
type Timestamper interface {
	Timestamp(ctx context.Context, h crypto.Hash, digest []byte) (token []byte, err error)
}

// SerialSource hands out TSTInfo serial numbers, unique across every token the TSA issues (RFC 3161 §2.4.2).
type SerialSource interface {
	NextSerial(ctx context.Context) (*big.Int, error)
}

// RandomSerials is the default SerialSource: 128 random bits from crypto/rand, made positive and non-zero.
// With 2^64 tokens the chance of a collision stays below 2^-63.
type RandomSerials struct{}

// NextSerial returns a fresh random serial.
func (RandomSerials) NextSerial(context.Context) (*big.Int, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // 127 bits of randomness, never short
	return new(big.Int).SetBytes(b[:]), nil
}

// PKIStatus values (RFC 3161 §2.4.2).
const (
	statusGranted   = 0
	statusRejection = 2
)

// PKIFailureInfo bits (RFC 3161 §2.4.2).
const (
	FailBadAlg              = 0
	FailBadRequest          = 2
	FailBadDataFormat       = 5
	FailTimeNotAvailable    = 14
	FailUnacceptedPolicy    = 15
	FailUnacceptedExtension = 16
	FailSystemFailure       = 25
)

// TSA is the core of an RFC 3161 time-stamping service. Its key is any crypto.Signer (an HSM key in
// production); its certificate must carry a critical extendedKeyUsage of id-kp-timeStamping only (§2.3).
// It is safe for concurrent use.
type TSA struct {
	signer crypto.Signer
	cert   *x509.Certificate
	chain  [][]byte // the TSA certificate, then intermediates, sent when certReq is true
	cfg    TSAConfig
	sid    []byte
	scv2   []byte
	sigAlg []byte
	opts   crypto.SignerOpts
}

// TSAConfig configures a TSA.
type TSAConfig struct {
	// Policy is the TSA policy OID put in every TSTInfo; a request for another policy is rejected.
	Policy asn1.ObjectIdentifier
	// Accuracy is the TSA's clock accuracy (TSTInfo.accuracy); omitted when zero.
	Accuracy time.Duration
	// Now is the TSA's clock; time.Now when nil.
	Now func() time.Time
	// Serials issues serial numbers; RandomSerials when nil.
	Serials SerialSource
	// Hash is the TSA's own signature digest; SHA-256 when zero.
	Hash crypto.Hash
}

var oidKPTimeStamping = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}

// ErrTSACertificate: the certificate is not a TSA certificate per RFC 3161 §2.3.
var ErrTSACertificate = errors.New("signing: TSA certificate must have a critical extendedKeyUsage of timeStamping only")

// checkTSACert enforces RFC 3161 §2.3: exactly one extendedKeyUsage, id-kp-timeStamping, marked critical.
func checkTSACert(c *x509.Certificate) error {
	for _, e := range c.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 37}) {
			if !e.Critical || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageTimeStamping || len(c.UnknownExtKeyUsage) != 0 {
				return ErrTSACertificate
			}
			return nil
		}
	}
	return ErrTSACertificate
}

// NewTSA returns a TSA signing with signer under chain (the TSA certificate first, then intermediates).
func NewTSA(signer crypto.Signer, chain []*x509.Certificate, cfg TSAConfig) (*TSA, error) {
	if signer == nil || len(chain) == 0 {
		return nil, ErrNoChain
	}
	cert := chain[0]
	if err := checkTSACert(cert); err != nil {
		return nil, err
	}
	if err := keys.MatchesCertificate(signer, cert); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyMismatch, err)
	}
	if len(cfg.Policy) == 0 {
		return nil, errors.New("signing: TSA needs a policy OID")
	}
	if cfg.Hash == 0 {
		cfg.Hash = crypto.SHA256
	}
	if cfg.Serials == nil {
		cfg.Serials = RandomSerials{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	sigAlg, opts, err := signatureAlgorithm(cert.PublicKey, cfg.Hash)
	if err != nil {
		return nil, err
	}
	t := &TSA{signer: keys.Verifying(signer), cert: cert, cfg: cfg, sigAlg: sigAlg, opts: opts,
		sid: issuerAndSerial(cert.RawIssuer, cert.SerialNumber), scv2: signingCertV2Attr(cert, cfg.Hash)}
	for _, c := range chain {
		t.chain = append(t.chain, c.Raw)
	}
	return t, nil
}

// Certificate returns the TSA's certificate.
func (t *TSA) Certificate() *x509.Certificate { return t.cert }

// tsRequest is a parsed TimeStampReq (RFC 3161 §2.4.1).
type tsRequest struct {
	hash    crypto.Hash
	imprint []byte
	policy  asn1.ObjectIdentifier
	nonce   *big.Int
	certReq bool
	hasExt  bool
}

// parseTSRequest parses a DER TimeStampReq strictly:
//
//	TimeStampReq ::= SEQUENCE { version INTEGER { v1(1) }, messageImprint MessageImprint,
//	    reqPolicy TSAPolicyId OPTIONAL, nonce INTEGER OPTIONAL, certReq BOOLEAN DEFAULT FALSE,
//	    extensions [0] IMPLICIT Extensions OPTIONAL }
//
// The failure bit tells the TSA which PKIFailureInfo to answer with.
func parseTSRequest(der []byte) (req tsRequest, failBit int, err error) {
	s := cryptobyte.String(der)
	var body, mi, alg, oid, hashed cryptobyte.String
	var version int64
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !s.Empty() {
		return req, FailBadDataFormat, formatErr("TimeStampReq")
	}
	if !body.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || version != 1 {
		return req, FailBadRequest, formatErr("TimeStampReq version")
	}
	if !body.ReadASN1(&mi, cbasn1.SEQUENCE) || !mi.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
		return req, FailBadDataFormat, formatErr("messageImprint")
	}
	if !alg.Empty() { // parameters: absent or NULL
		var null cryptobyte.String
		if !alg.ReadASN1(&null, cbasn1.NULL) || len(null) != 0 || !alg.Empty() {
			return req, FailBadDataFormat, formatErr("hashAlgorithm parameters")
		}
	}
	if !mi.ReadASN1(&hashed, cbasn1.OCTET_STRING) || !mi.Empty() {
		return req, FailBadDataFormat, formatErr("hashedMessage")
	}
	req.hash = hashFromDER(oid)
	if req.hash == 0 {
		return req, FailBadAlg, fmt.Errorf("%w: hash algorithm not accepted", ErrTimestamp)
	}
	if len(hashed) != req.hash.Size() {
		return req, FailBadDataFormat, formatErr("hashedMessage length does not match the algorithm")
	}
	req.imprint = hashed
	if body.PeekASN1Tag(cbasn1.OBJECT_IDENTIFIER) {
		var p asn1.ObjectIdentifier
		if !body.ReadASN1ObjectIdentifier(&p) {
			return req, FailBadDataFormat, formatErr("reqPolicy")
		}
		req.policy = p
	}
	if body.PeekASN1Tag(cbasn1.INTEGER) {
		n := new(big.Int)
		if !body.ReadASN1Integer(n) || n.Sign() < 0 || n.BitLen() > 512 {
			return req, FailBadDataFormat, formatErr("nonce")
		}
		req.nonce = n
	}
	if body.PeekASN1Tag(cbasn1.BOOLEAN) {
		var b bool
		if !body.ReadASN1Boolean(&b) || !b { // DER: a DEFAULT value is never encoded
			return req, FailBadDataFormat, formatErr("certReq")
		}
		req.certReq = true
	}
	if body.PeekASN1Tag(tagImplicit0) {
		var ext cryptobyte.String
		body.ReadASN1(&ext, tagImplicit0)
		req.hasExt = true
	}
	if !body.Empty() {
		return req, FailBadDataFormat, formatErr("trailing data in TimeStampReq")
	}
	return req, 0, nil
}

// Respond answers a DER TimeStampReq with a DER TimeStampResp (RFC 3161 §2.4.2). A malformed or unacceptable
// request gets a rejection status with the matching PKIFailureInfo, not an error; an error means the TSA itself
// failed (its key or serial source) and no response could be made.
func (t *TSA) Respond(ctx context.Context, reqDER []byte) ([]byte, error) {
	req, fail, err := parseTSRequest(reqDER)
	if err != nil {
		// The statusString is for a public, unauthenticated caller: a fixed text per failure, never the
		// parser's error (RFC 3161 §2.4.2 leaves the text free; internal detail does not belong in it).
		return rejection(fail, failText(fail)), nil
	}
	if req.policy != nil && !req.policy.Equal(t.cfg.Policy) {
		return rejection(FailUnacceptedPolicy, "policy not supported"), nil
	}
	if req.hasExt { // Mohr's TSA understands no request extensions (§2.4.1: reject what is not understood)
		return rejection(FailUnacceptedExtension, "extensions not supported"), nil
	}
	token, _, err := t.token(ctx, req)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1Int64(statusGranted) })
		b.AddBytes(token)
	})
	return b.Bytes()
}

// failText is the statusString sent with a PKIFailureInfo bit.
func failText(bit int) string {
	switch bit {
	case FailBadAlg:
		return "unrecognized or unsupported algorithm"
	case FailBadDataFormat:
		return "the data submitted has the wrong format"
	case FailUnacceptedPolicy:
		return "policy not supported"
	case FailUnacceptedExtension:
		return "extensions not supported"
	case FailTimeNotAvailable:
		return "time source not available"
	case FailSystemFailure:
		return "system failure"
	}
	return "transaction not permitted or supported"
}

// rejection encodes a TimeStampResp with status rejection, a statusString and one failInfo bit.
func rejection(bit int, msg string) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(statusRejection)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(msg)) })
			})
			// BIT STRING, DER: no trailing zero bits, so the unused-bit count is 7 - bit%8.
			bits := make([]byte, bit/8+1)
			bits[bit/8] = 0x80 >> (bit % 8)
			b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
				b.AddUint8(uint8(7 - bit%8))
				b.AddBytes(bits)
			})
		})
	})
	return b.BytesOrPanic()
}

// Timestamp implements Timestamper in-process: it returns a TimeStampToken for digest with the TSA certificate
// included.
func (t *TSA) Timestamp(ctx context.Context, h crypto.Hash, digest []byte) ([]byte, error) {
	if _, ok := hashOID(h); !ok || len(digest) != h.Size() {
		return nil, fmt.Errorf("%w: unsupported digest", ErrTimestamp)
	}
	tok, _, err := t.token(ctx, tsRequest{hash: h, imprint: digest, certReq: true})
	return tok, err
}

// timestampSigned is Timestamp, also returning the token's signature as the TSA verified it before releasing it
// (the Ingestor hands it to its Verifier, which then does not verify the same signature a second time).
func (t *TSA) timestampSigned(ctx context.Context, h crypto.Hash, digest []byte) ([]byte, *signedHere, error) {
	if _, ok := hashOID(h); !ok || len(digest) != h.Size() {
		return nil, nil, fmt.Errorf("%w: unsupported digest", ErrTimestamp)
	}
	return t.token(ctx, tsRequest{hash: h, imprint: digest, certReq: true})
}

// token builds and signs a TimeStampToken: SignedData with eContentType id-ct-TSTInfo (RFC 3161 §2.4.2), the
// signed attributes content-type, message-digest and signing-certificate-v2 (RFC 5816), and the TSA
// certificate when asked for.
//
// It also returns the signature as verified before release (t.signer is keys.Verifying, whose key NewTSA
// matched to the certificate).
func (t *TSA) token(ctx context.Context, req tsRequest) ([]byte, *signedHere, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	serial, err := t.cfg.Serials.NextSerial(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: TSA serial: %w", err)
	}
	now := t.cfg.Now().UTC()
	if now.Before(t.cert.NotBefore) || now.After(t.cert.NotAfter) {
		return nil, nil, fmt.Errorf("signing: TSA certificate is not valid at %v", now)
	}
	hOID, _ := hashOID(req.hash)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddASN1ObjectIdentifier(t.cfg.Policy)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			algID(b, hOID, false)
			b.AddASN1OctetString(req.imprint)
		})
		b.AddASN1BigInt(serial)
		addGeneralizedTime(b, now, t.cfg.Accuracy < time.Second && t.cfg.Accuracy > 0)
		if t.cfg.Accuracy > 0 {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				a := t.cfg.Accuracy
				if s := int64(a / time.Second); s > 0 {
					b.AddASN1Int64(s)
				}
				if ms := int64(a % time.Second / time.Millisecond); ms > 0 {
					b.AddASN1Int64WithTag(ms, cbasn1.Tag(0).ContextSpecific())
				}
				if us := int64(a % time.Millisecond / time.Microsecond); us > 0 {
					b.AddASN1Int64WithTag(us, cbasn1.Tag(1).ContextSpecific())
				}
			})
		}
		if req.nonce != nil {
			b.AddASN1BigInt(req.nonce)
		}
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) { // tsa [0] GeneralName: directoryName [4] EXPLICIT
			b.AddASN1(cbasn1.Tag(4).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { b.AddBytes(t.cert.RawSubject) })
		})
	})
	tst, err := b.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("signing: encode TSTInfo: %w", err)
	}
	md := t.cfg.Hash.New()
	md.Write(tst)
	attrs := setOf([][]byte{
		attribute(oidAttrContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidTSTInfo) }),
		attribute(oidAttrMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(md.Sum(nil)) }),
		t.scv2,
	})
	sig, digest, err := signAttrsDigest(t.signer, t.cfg.Hash, t.opts, attrs)
	if err != nil {
		return nil, nil, err
	}
	tsHOID, _ := hashOID(t.cfg.Hash)
	dAlg := algIDBytes(tsHOID, false)
	si := signerInfoParts{sid: t.sid, digestAlg: dAlg, signedAttrs: attrs, sigAlg: t.sigAlg, signature: sig}
	sd := signedDataParts{version: 3, digestAlgs: [][]byte{dAlg}, eContentType: oidTSTInfo, content: tst, signerInfos: [][]byte{si.marshal()}}
	if req.certReq {
		sd.certs = slices.Clone(t.chain)
	}
	tok, err := sd.marshal()
	if err != nil {
		return nil, nil, err
	}
	family := "rsa"
	if _, ok := t.cert.PublicKey.(*ecdsa.PublicKey); ok {
		family = "ecdsa"
	}
	return tok, &signedHere{cert: t.cert, family: family, h: t.cfg.Hash, digest: digest, sig: sig}, nil
}

// addGeneralizedTime writes t as GeneralizedTime "YYYYMMDDhhmmss[.fff]Z" (RFC 3161 §2.4.2: no trailing zeros
// in the fraction).
func addGeneralizedTime(b *cryptobyte.Builder, t time.Time, frac bool) {
	s := t.UTC().Format("20060102150405")
	if frac {
		f := t.UTC().Format(".000000")
		f = string(bytes.TrimRight([]byte(f), "0"))
		if f != "." {
			s += f
		}
	}
	s += "Z"
	b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
}
