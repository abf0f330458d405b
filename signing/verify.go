package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/internal/hixext"
	"github.com/mohr-hix/mohr/internal/ids"
)

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// digestOf hashes the concatenation of parts with h. For SHA-256 (the policy's hash) it returns the digest by
// value through sha256.Sum256 and a pooled scratch buffer, so the hot path allocates nothing here.
func digestOf(h crypto.Hash, parts ...[]byte) (out [64]byte, n int) {
	if h == crypto.SHA256 {
		var s [32]byte
		if len(parts) == 1 {
			s = sha256.Sum256(parts[0])
		} else {
			bp := scratchPool.Get().(*[]byte)
			b := (*bp)[:0]
			for _, p := range parts {
				b = append(b, p...)
			}
			s = sha256.Sum256(b)
			*bp = b[:0]
			scratchPool.Put(bp)
		}
		copy(out[:], s[:])
		return out, 32
	}
	d := h.New()
	for _, p := range parts {
		d.Write(p)
	}
	return out, copy(out[:], d.Sum(nil))
}

var setTag = []byte{0x31}

// RevocationSource fetches a DER OCSPResponse (RFC 6960 §4.2.1) for cert, issued by issuer. The verifier calls
// it when a signature embeds no usable revocation data; the Ingestor calls it to build B-LT.
type RevocationSource interface {
	OCSP(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error)
}

// RevocationFunc adapts a function to RevocationSource.
type RevocationFunc func(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error)

// OCSP calls f.
func (f RevocationFunc) OCSP(ctx context.Context, cert, issuer *x509.Certificate) ([]byte, error) {
	return f(ctx, cert, issuer)
}

// Registration is a physician's standing in the medical council's registry.
type Registration struct {
	CouncilNumber string
	NationalCode  string
	Name          string
	Specialty     string
	// Status is "active", "suspended" or "expired" as of now; ValidFrom/ValidUntil bound the registration.
	Status     string
	ValidFrom  time.Time
	ValidUntil time.Time
	// SuspendedFrom, if set, is when a suspension began (a registration suspended after the signing time was
	// valid at signing time).
	SuspendedFrom time.Time
}

// ActiveAt reports whether the registration was valid at t.
func (r Registration) ActiveAt(t time.Time) bool {
	if t.Before(r.ValidFrom) || (!r.ValidUntil.IsZero() && !t.Before(r.ValidUntil)) {
		return false
	}
	switch r.Status {
	case "active", "expired":
		return true
	case "suspended":
		return !r.SuspendedFrom.IsZero() && t.Before(r.SuspendedFrom)
	}
	return false
}

// ErrUnknownPhysician is returned by a PhysicianRegistry for a council number it does not know.
var ErrUnknownPhysician = errors.New("signing: unknown medical-council number")

// PhysicianRegistry looks a prescriber up in the medical council's registry.
type PhysicianRegistry interface {
	Registration(ctx context.Context, councilNumber string) (Registration, error)
}

// VerifierConfig configures a Verifier. Roots is required.
type VerifierConfig struct {
	// Roots are the trust anchors for signing certificates (the national root).
	Roots *x509.CertPool
	// TSARoots are the trust anchors for time-stamping authorities; Roots when nil.
	TSARoots *x509.CertPool
	// Revocation is asked when no usable revocation data is embedded; without it such signatures are
	// INDETERMINATE/TRY_LATER.
	Revocation RevocationSource
	// Registry checks the prescriber's council registration; when nil the check is reported "not checked".
	Registry PhysicianRegistry
	// Now is the validation clock; time.Now when nil.
	Now func() time.Time
	// Policy is the expected signature policy; RxPolicy() when nil.
	Policy *SignaturePolicy
	// ClockSkew tolerated between signing-time and the signature timestamp; 5 minutes when zero.
	ClockSkew time.Duration
	// MaxCache bounds each cache (certificates, chains, OCSP responses); 100,000 when zero.
	MaxCache int
}

// Verifier validates HIX-Rx-CAdES signatures after ETSI EN 319 102-1 §5 (basic validation, validation with
// time and long-term validation with the POE a timestamp gives). It caches certificate parsing, chain
// validation and OCSP-response checks by fingerprint, so a batch signed by few physicians costs little more than
// the signature verifications themselves. It is safe for concurrent use.
type Verifier struct {
	cfg    VerifierConfig
	policy SignaturePolicy
	certs  certCache
	chains *boundedCache[chainKey, *chainResult]
	oids   *boundedCache[string, string]
	ocsps  *boundedCache[ocspKey, *ocspResult]
	sds    sync.Pool
}

type certEntry struct {
	cert *x509.Certificate
	fp   [32]byte
	info CertInfo
	// The physician-signing profile, read once.
	nationalCode, council, profession string
	profileErr                        string
}

type chainKey struct {
	leaf, rest [32]byte
	tsa        bool
}

type chainResult struct {
	chain  []*certEntry // leaf first, root last
	sub    SubIndication
	reason string
}

type ocspKey struct{ resp, issuer [32]byte }

type ocspResult struct {
	resp *ocsp.Response
	err  error
	fp   string
}

// NewVerifier returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Roots == nil {
		return nil, errors.New("signing: verifier needs trust anchors")
	}
	if cfg.TSARoots == nil {
		cfg.TSARoots = cfg.Roots
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = 5 * time.Minute
	}
	if cfg.MaxCache == 0 {
		cfg.MaxCache = 100000
	}
	v := &Verifier{cfg: cfg, policy: RxPolicy(),
		chains: newCache[chainKey, *chainResult](cfg.MaxCache), oids: newCache[string, string](1000), ocsps: newCache[ocspKey, *ocspResult](cfg.MaxCache)}
	v.certs.max = cfg.MaxCache
	if cfg.Policy != nil {
		v.policy = *cfg.Policy
	}
	v.sds.New = func() any { return new(signedData) }
	return v, nil
}

// cert returns the cached entry for der, parsing it the first time.
func (v *Verifier) cert(der []byte) (*certEntry, error) {
	if e, ok := v.certs.get(der); ok {
		if e.cert == nil {
			return nil, errors.New(e.profileErr)
		}
		return e, nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		v.certs.put(der, &certEntry{profileErr: "signing: " + err.Error()})
		return nil, err
	}
	e := &certEntry{cert: c, fp: sha256.Sum256(der)}
	e.info = CertInfo{Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: fmt.Sprintf("%x", c.SerialNumber),
		SHA256: hex.EncodeToString(e.fp[:]), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()}
	e.profileErr = physicianProfile(e)
	v.certs.put(der, e)
	return e, nil
}

// physicianProfile checks the physician-signing profile (ARCHITECTURE.md): keyUsage contentCommitment only, a
// well-formed national code in subject serialNumber "IDCIR-<code>" (EN 319 412-1 §5.1.3) and an admission
// extension with a council number. It returns "" when the profile holds.
func physicianProfile(e *certEntry) string {
	c := e.cert
	if c.KeyUsage != x509.KeyUsageContentCommitment {
		return "signing certificate keyUsage must be contentCommitment only"
	}
	code, err := hixext.NationalCodeFromSubject(c)
	if err != nil {
		return "signing certificate has no national code in subject serialNumber"
	}
	if e.nationalCode, err = ids.NationalCode(code); err != nil {
		return "national code in signing certificate: " + err.Error()
	}
	adm, err := hixext.ParseAdmission(c)
	if err != nil {
		return "signing certificate: admission extension: " + err.Error()
	}
	if e.council, err = ids.CouncilNumber(adm.RegistrationNumber); err != nil {
		return "council number in signing certificate: " + err.Error()
	}
	e.profession = adm.Profession
	return ""
}

// findSigner returns the certificate the SignerIdentifier names (RFC 5652 §5.3) among certs.
func findSigner(si *signerInfo, certs []*certEntry) *certEntry {
	for _, c := range certs {
		if si.sidSKI != nil {
			if bytes.Equal(c.cert.SubjectKeyId, si.sidSKI) {
				return c
			}
			continue
		}
		if bytes.Equal(c.cert.RawIssuer, si.sidIssuer) && serialEqual(c.cert.SerialNumber, si.sidSerial) {
			return c
		}
	}
	return nil
}

func serialEqual(n *big.Int, der []byte) bool {
	if len(der) == 0 || n.Sign() < 0 || der[0]&0x80 != 0 { // Mohr's certificates have positive serials
		return false
	}
	if len(der) > 1 && der[0] == 0 {
		der = der[1:]
	}
	if (n.BitLen()+7)/8 != len(der) || len(der) > 64 {
		return n.Sign() == 0 && len(der) == 1 && der[0] == 0
	}
	var buf [64]byte
	return bytes.Equal(n.FillBytes(buf[:len(der)]), der)
}

// siNeeds says which optional signed attributes a profile requires.
type siNeeds int

const (
	needESS           siNeeds = 1 << iota // signing-certificate-v2 (RFC 5035)
	needAlgProtection                     // CMS algorithm protection (RFC 6211)
)

// checkSignerInfo verifies a SignerInfo over content per RFC 5652 §5.4 and §5.6: content-type matches
// eContentType, message-digest matches, signing-certificate-v2 (RFC 5035) names the certificate, the signature
// verifies, and CMS algorithm protection (RFC 6211 §3) matches when present (required is true for
// HIX-Rx-CAdES signatures).
func checkSignerInfo(si *signerInfo, eContentType, content []byte, signer *certEntry, need siNeeds) (SubIndication, string) {
	algProtRequired := need&needAlgProtection != 0
	h := hashFromDER(si.digestOID)
	if h == 0 {
		return CryptoConstraintsFailure, "digest algorithm not allowed"
	}
	if si.signedAttrsRaw == nil {
		return FormatFailure, "no signed attributes"
	}
	for i := range si.signedAttrs { // RFC 5652 §5.3 / EN 319 122-1: each signed attribute at most once
		for j := i + 1; j < len(si.signedAttrs); j++ {
			if bytes.Equal(si.signedAttrs[i].oid, si.signedAttrs[j].oid) {
				return FormatFailure, "duplicate signed attribute"
			}
		}
	}
	ct, _ := findAttr(si.signedAttrs, dContentType)
	mdA, _ := findAttr(si.signedAttrs, dMessageDigest)
	if ct == nil || mdA == nil {
		return FormatFailure, "content-type or message-digest attribute missing"
	}
	v, ok := ct.single()
	var oid cryptobyte.String
	if !ok || !v.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || !bytes.Equal(oid, eContentType) {
		return FormatFailure, "content-type attribute does not match eContentType"
	}
	v, ok = mdA.single()
	var md cryptobyte.String
	if !ok || !v.ReadASN1(&md, cbasn1.OCTET_STRING) {
		return FormatFailure, "malformed message-digest attribute"
	}
	if sum, n := digestOf(h, content); !bytes.Equal(sum[:n], md) {
		return HashFailure, "message digest does not match the content"
	}
	if _, n := findAttr(si.signedAttrs, dSigningCertV2); n > 0 || need&needESS != 0 {
		if sub, why := checkSigningCertV2(si, signer); sub != "" {
			return sub, why
		}
	}
	family, sigHash := sigAlgFromDER(si.sigAlgOID)
	if family == "" || (sigHash != 0 && sigHash != h) {
		return CryptoConstraintsFailure, "signature algorithm not allowed"
	}
	sum, n := digestOf(h, setTag, si.signedAttrsRaw[1:])
	digest := sum[:n]
	switch pub := signer.cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if family != "ecdsa" || !ecdsa.VerifyASN1(pub, digest, si.signature) {
			return SigCryptoFailure, "signature does not verify"
		}
	case *rsa.PublicKey:
		if family != "rsa" || rsa.VerifyPKCS1v15(pub, h, digest, si.signature) != nil {
			return SigCryptoFailure, "signature does not verify"
		}
	default:
		return CryptoConstraintsFailure, "public key algorithm not allowed"
	}
	ap, _ := findAttr(si.signedAttrs, dAlgProtection)
	if ap == nil {
		if algProtRequired {
			return FormatFailure, "CMS algorithm protection attribute missing"
		}
		return "", ""
	}
	// CMSAlgorithmProtection ::= SEQUENCE { digestAlgorithm, signatureAlgorithm [1] IMPLICIT OPTIONAL, ... }
	v, ok = ap.single()
	var seq, dAlg, sAlg cryptobyte.String
	if !ok || !v.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Element(&dAlg, cbasn1.SEQUENCE) ||
		!seq.ReadASN1(&sAlg, cbasn1.Tag(1).ContextSpecific().Constructed()) {
		return SigCryptoFailure, "malformed CMS algorithm protection attribute"
	}
	var siSig cryptobyte.String = si.sigAlgRaw
	var siSigContent cryptobyte.String
	siSig.ReadASN1(&siSigContent, cbasn1.SEQUENCE)
	if !bytes.Equal(dAlg, si.digestAlgRaw) || !bytes.Equal(sAlg, siSigContent) {
		return SigCryptoFailure, "CMS algorithm protection does not match the algorithms used (RFC 6211)"
	}
	return "", ""
}

// checkSigningCertV2 checks that signing-certificate-v2 (RFC 5035 §3) is present and its first ESSCertIDv2
// hashes to the signer's certificate.
func checkSigningCertV2(si *signerInfo, signer *certEntry) (SubIndication, string) {
	a, n := findAttr(si.signedAttrs, dSigningCertV2)
	if a == nil || n != 1 {
		return FormatFailure, "signing-certificate-v2 attribute missing"
	}
	v, ok := a.single()
	var scv2, certs, id, hashV cryptobyte.String
	if !ok || !v.ReadASN1(&scv2, cbasn1.SEQUENCE) || !scv2.ReadASN1(&certs, cbasn1.SEQUENCE) || !certs.ReadASN1(&id, cbasn1.SEQUENCE) {
		return FormatFailure, "malformed signing-certificate-v2"
	}
	h := crypto.SHA256
	if id.PeekASN1Tag(cbasn1.SEQUENCE) {
		var alg, oid cryptobyte.String
		if !id.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) {
			return FormatFailure, "malformed signing-certificate-v2"
		}
		if h = hashFromDER(oid); h == 0 {
			return CryptoConstraintsFailure, "signing-certificate-v2 hash not allowed"
		}
	}
	if !id.ReadASN1(&hashV, cbasn1.OCTET_STRING) {
		return FormatFailure, "malformed signing-certificate-v2"
	}
	var got []byte
	if h == crypto.SHA256 {
		got = signer.fp[:]
	} else {
		d := h.New()
		d.Write(signer.cert.Raw)
		got = d.Sum(nil)
	}
	if !bytes.Equal(got, hashV) {
		return NoSigningCertificateFound, "signing-certificate-v2 does not name the certificate that signed"
	}
	return "", ""
}

// chain validates leaf to the trust anchors (RFC 5280 §6 via crypto/x509) and caches the result by the
// fingerprints of the leaf and of the other certificates offered. The path is built once at a time all its
// certificates are valid; validity at the best signature time is checked per signature by the caller.
func (v *Verifier) chain(leaf *certEntry, others []*certEntry, tsa bool) *chainResult {
	key := chainKey{leaf: leaf.fp, tsa: tsa}
	var buf [16 * 32]byte
	n := 0
	for _, o := range others {
		if n+32 > len(buf) {
			break // beyond 16: a cached chain is valid whatever else a signature carries
		}
		n += copy(buf[n:], o.fp[:])
	}
	key.rest = sha256.Sum256(buf[:n])
	if r, ok := v.chains.get(key); ok {
		return r
	}
	inter := x509.NewCertPool()
	t := leaf.cert.NotBefore
	for _, o := range others {
		if o != leaf && o.cert.IsCA {
			inter.AddCert(o.cert)
			if o.cert.NotBefore.After(t) && o.cert.NotBefore.Before(leaf.cert.NotAfter) {
				t = o.cert.NotBefore
			}
		}
	}
	roots := v.cfg.Roots
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	if tsa {
		roots, eku = v.cfg.TSARoots, []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}
	}
	res := &chainResult{}
	chains, err := leaf.cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: t.Add(time.Second), KeyUsages: eku})
	if err != nil {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			res.sub, res.reason = NoCertificateChainFound, "no chain to a trust anchor: "+err.Error()
		} else {
			res.sub, res.reason = CertificateChainGeneralFailure, err.Error()
		}
	} else {
		for _, c := range chains[0] {
			e, err := v.cert(c.Raw)
			if err != nil {
				res.sub, res.reason = CertificateChainGeneralFailure, err.Error()
				break
			}
			res.chain = append(res.chain, e)
		}
		if tsa && res.sub == "" {
			if err := checkTSACert(leaf.cert); err != nil {
				res.sub, res.reason = CertificateChainGeneralFailure, err.Error()
			}
		}
	}
	v.chains.put(key, res)
	return res
}

// outOfBounds returns the first certificate of chain not valid at t.
func outOfBounds(chain []*certEntry, t time.Time) *certEntry {
	for _, c := range chain {
		if t.Before(c.cert.NotBefore) || t.After(c.cert.NotAfter) {
			return c
		}
	}
	return nil
}

// checkOCSP parses and verifies an OCSPResponse for cert from issuer (RFC 6960 §3.2), caching by fingerprint.
// When basic is true, der is a BasicOCSPResponse (as embedded) rather than an OCSPResponse.
func (v *Verifier) checkOCSP(der []byte, issuer *certEntry, basic bool) *ocspResult {
	key := ocspKey{resp: sha256.Sum256(der), issuer: issuer.fp}
	if r, ok := v.ocsps.get(key); ok {
		return r
	}
	r := &ocspResult{fp: hex.EncodeToString(key.resp[:])}
	if basic {
		der = wrapBasicOCSP(der)
	}
	resp, err := ocsp.ParseResponse(der, issuer.cert)
	switch {
	case err != nil:
		r.err = err
	case resp.Certificate != nil && !hasEKU(resp.Certificate, x509.ExtKeyUsageOCSPSigning):
		r.err = errors.New("OCSP responder certificate lacks id-kp-OCSPSigning (RFC 6960 §4.2.2.2)")
	case resp.Certificate != nil && (resp.ProducedAt.Before(resp.Certificate.NotBefore) || resp.ProducedAt.After(resp.Certificate.NotAfter)):
		r.err = errors.New("OCSP responder certificate not valid when the response was produced")
	default:
		r.resp = resp
	}
	v.ocsps.put(key, r)
	return r
}

func hasEKU(c *x509.Certificate, eku x509.ExtKeyUsage) bool {
	for _, e := range c.ExtKeyUsage {
		if e == eku {
			return true
		}
	}
	return false
}

// wrapBasicOCSP turns a BasicOCSPResponse (as the revocation-values attribute stores it, EN 319 122-1 §A.1.2)
// into an OCSPResponse (RFC 6960 §4.2.1) with status successful.
func wrapBasicOCSP(basic []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Enum(0)
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidOCSPBasic)
				b.AddASN1OctetString(basic)
			})
		})
	})
	return b.BytesOrPanic()
}

// embeddedOCSP returns the BasicOCSPResponses of the revocation-values attribute.
func embeddedOCSP(si *signerInfo) ([][]byte, error) {
	var out [][]byte
	for i := range si.unsignedAttrs {
		a := &si.unsignedAttrs[i]
		if !bytes.Equal(a.oid, dRevocationVals) {
			continue
		}
		v, ok := a.single()
		var rv cryptobyte.String
		if !ok || !v.ReadASN1(&rv, cbasn1.SEQUENCE) {
			return nil, formatErr("revocation-values")
		}
		for !rv.Empty() {
			var tag cbasn1.Tag
			var body cryptobyte.String
			if !rv.ReadAnyASN1(&body, &tag) {
				return nil, formatErr("revocation-values")
			}
			if tag != tagExplicit1 { // ocspVals [1]; crlVals and otherRevVals are not used by Mohr
				continue
			}
			var seq cryptobyte.String
			if !body.ReadASN1(&seq, cbasn1.SEQUENCE) {
				return nil, formatErr("ocspVals")
			}
			for !seq.Empty() {
				var basic cryptobyte.String
				if !seq.ReadASN1Element(&basic, cbasn1.SEQUENCE) {
					return nil, formatErr("BasicOCSPResponse")
				}
				out = append(out, basic)
			}
		}
	}
	return out, nil
}

// timeAttr reads a signing-time value (UTCTime or GeneralizedTime).
func readTime(v cryptobyte.String) (time.Time, bool) {
	var t time.Time
	if v.PeekASN1Tag(cbasn1.UTCTime) {
		return t, v.ReadASN1UTCTime(&t) && v.Empty()
	}
	return t, v.ReadASN1GeneralizedTime(&t) && v.Empty()
}

// Verify validates der, an HIX-Rx-CAdES signature at any level, and returns its report. It never panics on
// malformed input and never returns nil.
func (v *Verifier) Verify(ctx context.Context, der []byte) *Report {
	now := v.cfg.Now().UTC()
	r := &Report{ValidationTime: now, BestSignatureTime: now}
	sd := v.sds.Get().(*signedData)
	defer v.sds.Put(sd)
	if err := parseSignedData(der, sd); err != nil {
		return r.fail(FormatFailure, "%v", err)
	}
	if len(sd.signers) != 1 {
		return r.fail(FormatFailure, "exactly one SignerInfo is required, found %d", len(sd.signers))
	}
	if !sd.hasContent {
		return r.fail(SignedDataNotFound, "the prescription is not enveloped in the signature")
	}
	if !bytes.Equal(sd.eContentType, dData) {
		return r.fail(FormatFailure, "eContentType must be id-data")
	}
	si := &sd.signers[0]
	cs := sha256.Sum256(sd.content)
	r.ContentSHA256 = hex.EncodeToString(cs[:])

	// Certificates: parsed once per distinct certificate (cached).
	var certBuf [8]*certEntry
	certs := certBuf[:0]
	for _, c := range sd.certs {
		e, err := v.cert(c)
		if err != nil {
			return r.fail(FormatFailure, "certificate: %v", err)
		}
		certs = append(certs, e)
	}
	signer := findSigner(si, certs)
	if signer == nil {
		return r.fail(NoSigningCertificateFound, "the signing certificate is not in the signature")
	}
	info := signer.info
	r.Signer = &info
	if sub, why := checkSignerInfo(si, sd.eContentType, sd.content, signer, needESS|needAlgProtection); sub != "" {
		return r.fail(sub, "%s", why)
	}
	if st, n := findAttr(si.signedAttrs, dSigningTime); st != nil && n == 1 {
		val, _ := st.single()
		if t, ok := readTime(val); ok {
			r.ClaimedSigningTime = &t
		} else {
			return r.fail(FormatFailure, "malformed signing-time")
		}
	} else {
		return r.fail(FormatFailure, "signing-time attribute missing")
	}
	if sub, why := v.checkPolicyAttrs(si); sub != "" {
		return r.fail(sub, "%s", why)
	}
	r.Policy = v.policy.OID.String()

	// X.509 validation (EN 319 102-1 §5.2.6), cached by fingerprints.
	ch := v.chain(signer, certs, false)
	if ch.sub != "" {
		return r.fail(ch.sub, "%s", ch.reason)
	}
	r.Chain = make([]CertInfo, len(ch.chain))
	for i, c := range ch.chain {
		r.Chain[i] = c.info
	}
	if signer.profileErr != "" {
		return r.fail(ChainConstraintsFailure, "%s", signer.profileErr)
	}
	r.Prescriber = &Prescriber{NationalCode: signer.nationalCode, CouncilNumber: signer.council, Name: signer.cert.Subject.CommonName, Registration: "not checked"}

	// Signature timestamps give a proof of existence (EN 319 102-1 §5.4, §5.6.2.3).
	poe, failed := v.signatureTimestamps(si, sd.certs, r)
	if failed != nil {
		return failed
	}
	best := r.BestSignatureTime

	// Validity of the chain at the best signature time (EN 319 102-1 §5.2.6, §5.6.2.4).
	if failed := chainBounds(ch.chain, best, poe, r); failed != nil {
		return failed
	}

	// Revocation of the signing certificate at the best signature time (RFC 6960; EN 319 102-1 §5.2.5).
	if len(ch.chain) < 2 {
		return r.fail(CertificateChainGeneralFailure, "the signing certificate is a trust anchor")
	}
	issuer := ch.chain[1]
	if sub, why := v.checkRevocation(ctx, si, nil, signer, issuer, best, poe, r); sub != "" {
		return r.fail(sub, "%s", why)
	}
	if r.Level == "B-T" && len(r.Revocation) > 0 && r.Revocation[0].Source == "embedded" {
		r.Level = "B-LT"
	}
	if _, n := findAttr(si.unsignedAttrs, dArchiveTS); n > 0 {
		if r.Level != "B-LT" {
			return r.fail(FormatFailure, "archive timestamp on a signature that is not B-LT")
		}
		if sub, why := v.checkArchive(sd, best, r); sub != "" {
			return r.fail(sub, "%s", why)
		}
		r.Level = "B-LTA"
	}

	// Health-domain checks (docs/signature-policy.md §5).
	if sub, why := v.checkDomain(ctx, sd.content, signer, best, r); sub != "" {
		return r.fail(sub, "%s", why)
	}
	r.Indication = TotalPassed
	return r
}

// checkPolicyAttrs checks the HIX-Rx-CAdES signed attributes: mime-type, commitment-type-indication (proof of
// origin) and signature-policy-identifier with the expected OID and hash (EN 319 122-1 §5.2.3, §5.2.4, §5.2.9).
func (v *Verifier) checkPolicyAttrs(si *signerInfo) (SubIndication, string) {
	a, n := findAttr(si.signedAttrs, dMimeType)
	if a == nil || n != 1 {
		return SigConstraintsFailure, "mime-type attribute missing"
	}
	val, ok := a.single()
	var mt cryptobyte.String
	if !ok || !val.ReadASN1(&mt, cbasn1.UTF8String) || string(mt) != MIMEFHIRJSON {
		return SigConstraintsFailure, "mime-type must be " + MIMEFHIRJSON
	}
	a, n = findAttr(si.signedAttrs, dCommitmentType)
	var seq, oid cryptobyte.String
	if a == nil || n != 1 {
		return SigConstraintsFailure, "commitment-type-indication missing"
	}
	if val, ok = a.single(); !ok || !val.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) || !bytes.Equal(oid, dCommitOrigin) {
		return SigConstraintsFailure, "commitment type must be proof of origin"
	}
	a, n = findAttr(si.signedAttrs, dSigPolicyID)
	if a == nil || n != 1 {
		return SigConstraintsFailure, "signature-policy-identifier missing"
	}
	var spid, hav, alg, halg, hv cryptobyte.String
	var pol asn1.ObjectIdentifier
	if val, ok = a.single(); !ok || !val.ReadASN1(&spid, cbasn1.SEQUENCE) || !spid.ReadASN1ObjectIdentifier(&pol) ||
		!spid.ReadASN1(&hav, cbasn1.SEQUENCE) || !hav.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1(&halg, cbasn1.OBJECT_IDENTIFIER) ||
		!hav.ReadASN1(&hv, cbasn1.OCTET_STRING) {
		return SigConstraintsFailure, "malformed signature-policy-identifier"
	}
	if !pol.Equal(v.policy.OID) {
		return SigConstraintsFailure, "signature policy " + pol.String() + " is not " + v.policy.OID.String()
	}
	if !bytes.Equal(halg, dSHA256) || !bytes.Equal(hv, v.policy.Hash) {
		return SigConstraintsFailure, "signature policy hash does not match the published policy"
	}
	return "", ""
}

// checkRevocation establishes the status of signer at best from embedded OCSP responses issued at or after
// best (EN 319 122-1 B-LT), else from the RevocationSource.
func (v *Verifier) checkRevocation(ctx context.Context, si *signerInfo, extra [][]byte, signer, issuer *certEntry, best time.Time, poe bool, r *Report) (SubIndication, string) {
	basics, err := embeddedOCSP(si)
	if err != nil {
		return FormatFailure, err.Error()
	}
	var res *ocspResult
	source := "embedded"
	adbe := append(adbeOCSP(si), extra...)
	for k := 0; k < len(basics)+len(adbe); k++ {
		var cand *ocspResult
		if k < len(basics) {
			cand = v.checkOCSP(basics[k], issuer, true)
		} else {
			cand = v.checkOCSP(adbe[k-len(basics)], issuer, false)
		}
		if cand.err != nil || cand.resp.SerialNumber.Cmp(signer.cert.SerialNumber) != 0 {
			continue
		}
		if cand.resp.ThisUpdate.Before(best.Add(-v.cfg.ClockSkew)) && cand.resp.Status != ocsp.Revoked {
			continue // not fresh: issued before the best signature time
		}
		res = cand
		break
	}
	if res == nil {
		if v.cfg.Revocation == nil {
			return TryLater, "no revocation information for the signing certificate issued after the best signature time"
		}
		der, err := v.cfg.Revocation.OCSP(ctx, signer.cert, issuer.cert)
		if err != nil {
			return TryLater, "revocation status unavailable: " + err.Error()
		}
		res = v.checkOCSP(der, issuer, false)
		source = "fetched"
		if res.err != nil {
			return TryLater, "OCSP response not usable: " + res.err.Error()
		}
		if res.resp.SerialNumber.Cmp(signer.cert.SerialNumber) != 0 {
			return TryLater, "OCSP response is for another certificate"
		}
	}
	ri := RevocationInfo{Serial: signer.info.Serial, Source: source, ProducedAt: res.resp.ProducedAt.UTC(),
		ThisUpdate: res.resp.ThisUpdate.UTC(), ResponseSHA256: res.fp}
	if res.resp.Certificate != nil {
		ri.Responder = res.resp.Certificate.Subject.CommonName
	}
	switch res.resp.Status {
	case ocsp.Good:
		ri.Status = "good"
	case ocsp.Revoked:
		ri.Status = "revoked"
		t := res.resp.RevokedAt.UTC()
		ri.RevokedAt = &t
	default:
		ri.Status = "unknown"
	}
	r.Revocation = append(r.Revocation, ri)
	switch res.resp.Status {
	case ocsp.Good:
		return "", ""
	case ocsp.Revoked:
		if res.resp.RevokedAt.After(best) && poe {
			return "", "" // revoked after a proven signing time: the signature stands (EN 319 102-1 §5.6.2.4)
		}
		if poe {
			return Revoked, fmt.Sprintf("signing certificate revoked at %s, before the signature timestamp", res.resp.RevokedAt.UTC().Format(time.RFC3339))
		}
		return RevokedNoPOE, fmt.Sprintf("signing certificate revoked at %s and no proof the signature existed before", res.resp.RevokedAt.UTC().Format(time.RFC3339))
	}
	return TryLater, "OCSP status unknown"
}

// signatureTimestamps checks every signature timestamp of si (EN 319 102-1 §5.4), records it in r, sets r.Level
// and r.BestSignatureTime (the earliest accepted one), and reports whether there is a proof of existence. A
// non-nil report is the failure to return.
func (v *Verifier) signatureTimestamps(si *signerInfo, certs [][]byte, r *Report) (poe bool, failed *Report) {
	r.Level = "B-B"
	for i := range si.unsignedAttrs {
		a := &si.unsignedAttrs[i]
		if !bytes.Equal(a.oid, dSigTimeStamp) {
			continue
		}
		tok, ok := a.single()
		ti := TimestampInfo{Type: "signature"}
		gen, err := v.checkTimestamp(tok, certs, si.signature, &ti)
		if err != nil {
			ti.Detail = err.Error()
			r.Timestamps = append(r.Timestamps, ti)
			return false, r.fail(NoPOE, "signature timestamp not accepted: %v", err)
		}
		if !ok {
			return false, r.fail(FormatFailure, "signature-time-stamp attribute must have one value")
		}
		ti.Valid = true
		r.Timestamps = append(r.Timestamps, ti)
		if !poe || gen.Before(r.BestSignatureTime) {
			r.BestSignatureTime = gen
		}
		poe = true
		r.Level = "B-T"
	}
	if poe && r.ClaimedSigningTime != nil && r.ClaimedSigningTime.After(r.BestSignatureTime.Add(v.cfg.ClockSkew)) {
		return poe, r.fail(TimestampOrderFailure, "signing-time %s is after the signature timestamp %s",
			r.ClaimedSigningTime.Format(time.RFC3339), r.BestSignatureTime.Format(time.RFC3339))
	}
	return poe, nil
}

// chainBounds checks that every certificate of the chain was valid at best (EN 319 102-1 §5.2.6, §5.6.2.4).
func chainBounds(chain []*certEntry, best time.Time, poe bool, r *Report) *Report {
	c := outOfBounds(chain, best)
	if c == nil {
		return nil
	}
	if !poe {
		return r.fail(OutOfBoundsNoPOE, "certificate %q is not valid at %s and there is no proof of existence before", c.info.Subject, best.Format(time.RFC3339))
	}
	if best.Before(c.cert.NotBefore) {
		return r.fail(NotYetValid, "certificate %q was not yet valid at the timestamp", c.info.Subject)
	}
	return r.fail(Expired, "certificate %q had expired at the timestamp %s", c.info.Subject, best.Format(time.RFC3339))
}
