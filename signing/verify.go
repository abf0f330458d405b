package signing

// The validation pipeline (ETSI EN 319 102-1 §5): one for CAdES prescriptions and for PAdES signatures, which
// differ only in where the signed bytes are (enveloped, or the PDF's /ByteRange) and in the prescription's
// policy attributes and health-domain checks. The rules live in their own files: attributes.go (signed
// attributes and cryptography), chain.go (X.509 paths), timestamp.go (signature timestamps, POE),
// revocation.go (OCSP and CRL), constraints.go (the trust policy) and domain.go (health-domain checks).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"sync"
	"time"
)

// VerifierConfig configures a Verifier. Trust is required.
type VerifierConfig struct {
	// Trust is the trust policy: anchors, signer CAs, prescriber policy, TSA trust list, algorithms, limits.
	Trust *TrustPolicy
	// Roots and TSARoots are no longer used: trust comes from Trust only. They are kept so that old callers
	// compile, and NewVerifier refuses a configuration that sets them without Trust.
	Roots, TSARoots *x509.CertPool
	// Revocation is asked for OCSP when no usable revocation data is embedded; CRLs fetches CRLs from the
	// distribution points when OCSP gave nothing. Without both, such signatures are INDETERMINATE/TRY_LATER.
	Revocation RevocationSource
	CRLs       CRLSource
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
	// RevocationCache, when above zero, keeps up to that many OCSP answers fetched from Revocation, by issuer
	// and serial, until their nextUpdate, so a batch from one signer costs one lookup. Fetched CRLs are always
	// kept by URL until their nextUpdate (4,096 URLs when zero). Concurrent lookups of the same certificate or
	// URL are shared either way.
	RevocationCache int
	// RevocationCacheTTL, when above zero, also bounds how long after its fetch an answer is kept (a CA's own
	// node that learns of revocations before its responses expire keeps them briefly).
	RevocationCacheTTL time.Duration
	// CacheClock ages the cached fetched revocation data; Now when nil. Set it to the wall clock when Now is a
	// past validation time.
	CacheClock func() time.Time
}

// Verifier validates HIX-Rx-CAdES signatures and PAdES signatures after ETSI EN 319 102-1 §5 (basic validation,
// validation with time and long-term validation with the POE a timestamp gives), under a TrustPolicy. It caches
// certificate parsing, chain validation, OCSP-response and CRL checks by fingerprint, so a batch signed by few
// physicians costs little more than the signature verifications themselves. It is safe for concurrent use.
type Verifier struct {
	cfg       VerifierConfig
	trust     *TrustPolicy
	limits    Limits
	anchors   *x509.CertPool
	policy    SignaturePolicy
	certs     certCache
	chains    *boundedCache[chainKey, *chainResult]
	oids      *boundedCache[string, string]
	ocsps     *boundedCache[ocspKey, *ocspResult]
	crlChecks *boundedCache[crlKey, *crlResult]
	fetched   *fetchCache
	sigs      *sigCache // signature verifications that succeeded (sigcache.go)
	sds       sync.Pool
}

// NewVerifier returns a Verifier, or an error wrapping ErrTrustPolicy when cfg.Trust is missing or incomplete.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if err := cfg.Trust.Validate(); err != nil {
		return nil, err
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
	if cfg.CacheClock == nil {
		cfg.CacheClock = cfg.Now
	}
	tp := *cfg.Trust
	v := &Verifier{cfg: cfg, trust: &tp, limits: tp.Limits.withDefaults(), policy: RxPolicy(), anchors: x509.NewCertPool(),
		chains: newCache[chainKey, *chainResult](cfg.MaxCache), oids: newCache[string, string](1000),
		ocsps: newCache[ocspKey, *ocspResult](cfg.MaxCache), crlChecks: newCache[crlKey, *crlResult](cfg.MaxCache),
		sigs: newCache[[32]byte, struct{}](maxSigCache)}
	for _, a := range tp.Anchors {
		v.anchors.AddCert(a)
	}
	v.certs.max = cfg.MaxCache
	fetchMax := cfg.RevocationCache
	if fetchMax <= 0 {
		fetchMax = 4096
	}
	v.fetched = newFetchCache(cfg.CacheClock, cfg.ClockSkew, cfg.RevocationCacheTTL, fetchMax, cfg.RevocationCache > 0)
	if cfg.Policy != nil {
		v.policy = *cfg.Policy
	}
	v.sds.New = func() any { return new(signedData) }
	return v, nil
}

// Trust returns the verifier's trust policy (a copy of what it was configured with).
func (v *Verifier) Trust() TrustPolicy { return *v.trust }

// Verify validates der, an HIX-Rx-CAdES signature at any level, and returns its report. It never panics on
// malformed input and never returns nil.
func (v *Verifier) Verify(ctx context.Context, der []byte) *Report {
	return v.run(ctx, der, nil, nil, docPrescription)
}

// VerifyDetached validates a detached CMS signature over content, as PDF signatures are (ETSI EN 319 142-1
// PAdES baseline; ISO 32000-1 §12.8), through the same pipeline as Verify: the signer constraints of the trust
// policy, signing-certificate-v2, the chain, signature timestamps as POE, validity at the best signature time
// and revocation. The prescription's policy attributes and health-domain checks do not apply to a printout.
func (v *Verifier) VerifyDetached(ctx context.Context, der, content []byte) *Report {
	return v.VerifyDetachedWith(ctx, der, content, nil)
}

// VerifyDetachedWith is VerifyDetached with validation data found outside the CMS, such as a PDF's document
// security store (ETSI EN 319 142-1 §5.4): its certificates join those of the SignedData for path building
// and its OCSP responses and CRLs are candidates for revocation checking. vd may be nil.
func (v *Verifier) VerifyDetachedWith(ctx context.Context, der, content []byte, vd *ValidationData) *Report {
	if content == nil {
		content = []byte{}
	}
	return v.run(ctx, der, content, vd, docDetached)
}

type docKind uint8

const (
	docPrescription docKind = iota // enveloped FHIR Bundle, HIX-Rx-CAdES policy
	docDetached                    // detached over given bytes (PAdES)
)

// errBudget: the document took longer than the policy's time budget.
var errBudget = errors.New("signing: validation time budget exceeded")

// run is the pipeline, in the order of docs/signature-policy.md §5, on der parsed into a pooled signedData.
func (v *Verifier) run(ctx context.Context, der, detached []byte, vd *ValidationData, kind docKind) *Report {
	sd := v.sds.Get().(*signedData)
	defer v.sds.Put(sd)
	return v.runParsed(ctx, sd, parseSignedData(der, sd), detached, vd, kind)
}

// verifyParsed is Verify of a prescription signature the caller has already parsed (parseSignedData, with
// its error perr): the Ingestor parses each document of an ingestion once and hands the parsed form to every
// step. sd is only read.
func (v *Verifier) verifyParsed(ctx context.Context, sd *signedData, perr error) *Report {
	return v.runParsed(ctx, sd, perr, nil, nil, docPrescription)
}

// runParsed is the pipeline on sd, the result of parseSignedData with its error perr.
func (v *Verifier) runParsed(ctx context.Context, sd *signedData, perr error, detached []byte, vd *ValidationData, kind docKind) *Report {
	now := v.cfg.Now().UTC()
	r := &Report{ValidationTime: now, BestSignatureTime: now}
	deadline := time.Now().Add(v.limits.Budget)
	stop := func() *Report {
		if err := ctx.Err(); err != nil {
			return r.fail(TryLater, "validation stopped: %v", err)
		}
		if time.Now().After(deadline) {
			return r.fail(TryLater, "%v", errBudget)
		}
		return nil
	}
	if f := stop(); f != nil {
		return f
	}
	if perr != nil {
		return r.fail(FormatFailure, "%v", perr)
	}
	if len(sd.signers) != 1 {
		return r.fail(FormatFailure, "exactly one SignerInfo is required, found %d", len(sd.signers))
	}
	si := &sd.signers[0]
	// Bounds before any expensive work (item: one request must not burn minutes of CPU).
	nCerts, nCRLs, nOCSPs := len(sd.certs), len(sd.crls), 0
	if vd != nil {
		nCerts, nCRLs, nOCSPs = nCerts+len(vd.Certs), nCRLs+len(vd.CRLs), len(vd.OCSPs)
	}
	switch {
	case len(si.signedAttrs) > v.limits.SignedAttrs:
		return r.fail(FormatFailure, "%d signed attributes; the policy allows %d", len(si.signedAttrs), v.limits.SignedAttrs)
	case len(si.unsignedAttrs) > v.limits.UnsignedAttrs:
		return r.fail(FormatFailure, "%d unsigned attributes; the policy allows %d", len(si.unsignedAttrs), v.limits.UnsignedAttrs)
	case nCerts > v.limits.Certs:
		return r.fail(FormatFailure, "%d certificates; the policy allows %d", nCerts, v.limits.Certs)
	case nCRLs > v.limits.CRLs:
		return r.fail(FormatFailure, "%d CRLs; the policy allows %d", nCRLs, v.limits.CRLs)
	case nOCSPs > v.limits.OCSPs:
		return r.fail(FormatFailure, "%d OCSP responses; the policy allows %d", nOCSPs, v.limits.OCSPs)
	}
	var content []byte
	need := needESS
	switch kind {
	case docPrescription:
		if !sd.hasContent {
			return r.fail(SignedDataNotFound, "the prescription is not enveloped in the signature")
		}
		if !bytes.Equal(sd.eContentType, dData) {
			return r.fail(FormatFailure, "eContentType must be id-data")
		}
		content = sd.content
		need |= needAlgProtection
	case docDetached:
		if sd.hasContent {
			return r.fail(FormatFailure, "a detached signature is required")
		}
		content = detached
	}
	cs := sha256.Sum256(content)
	r.ContentSHA256 = hex.EncodeToString(cs[:])

	// Revocation material: embedded in the signature, and given (a PDF's DSS).
	in := &revInput{crls: sd.crls}
	var err error
	if in.basics, in.crls, err = embeddedRevocation(si, nil, in.crls); err != nil {
		return r.fail(FormatFailure, "%v", err)
	}
	in.ocsps = adbeOCSP(si)
	certDERs := sd.certs
	if vd != nil {
		certDERs = append(append([][]byte(nil), sd.certs...), vd.Certs...)
		in.ocsps = append(in.ocsps, vd.OCSPs...)
		in.crls = append(in.crls, vd.CRLs...)
	}
	if len(in.basics)+len(in.ocsps) > v.limits.OCSPs || len(in.crls) > v.limits.CRLs {
		return r.fail(FormatFailure, "more revocation data than the policy allows")
	}

	// Certificates: parsed once per distinct certificate (cached).
	var certBuf [8]*certEntry
	certs := certBuf[:0]
	for _, c := range certDERs {
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
	if sub, why := checkSignerInfo(si, sd.eContentType, content, signer, need, v.trust, now, v.sigs); sub != "" {
		return r.fail(sub, "%s", why)
	}
	if st, n := findAttr(si.signedAttrs, dSigningTime); st != nil && n == 1 {
		val, _ := st.single()
		t, ok := readTime(val)
		if !ok {
			return r.fail(FormatFailure, "malformed signing-time")
		}
		if kind == docDetached { // EN 319 142-1 §5.2.1: the claimed time is the PDF's /M, not a CMS attribute
			return r.fail(FormatFailure, "a PAdES signature must not carry signing-time")
		}
		r.ClaimedSigningTime = &t
	} else if kind == docPrescription {
		return r.fail(FormatFailure, "signing-time attribute missing")
	}
	if kind == docPrescription {
		if sub, why := v.checkPolicyAttrs(si); sub != "" {
			return r.fail(sub, "%s", why)
		}
		r.Policy = v.policy.OID.String()
	}

	// X.509 validation (EN 319 102-1 §5.2.6) under the signer constraints, cached by fingerprints.
	ch := v.chain(signer, certs, chainSigner)
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
	r.Prescriber.RemoteSigningPolicy = remoteSigningPolicy(signer.cert) // remotepolicy.go
	if f := stop(); f != nil {
		return f
	}

	// Signature timestamps give a proof of existence (EN 319 102-1 §5.4, §5.6.2.3).
	poe, failed := v.signatureTimestamps(ctx, si, certDERs, in, r)
	if failed != nil {
		return failed
	}
	best := r.BestSignatureTime

	// Cryptographic constraints at the best signature time (EN 319 102-1 §5.2.8).
	h := hashFromDER(si.digestOID)
	if st := v.trust.algorithm(hashName(h), 0, best); st != algOK {
		return r.fail(algSub(st), "digest algorithm %s is not acceptable at %s", hashName(h), best.Format(time.RFC3339))
	}
	if sub, why := v.trust.chainAlgorithms(ch.chain, best); sub != "" {
		return r.fail(sub, "%s", why)
	}

	// Validity of the chain at the best signature time (EN 319 102-1 §5.2.6, §5.6.2.4).
	if failed := chainBounds(ch.chain, best, poe, r); failed != nil {
		return failed
	}
	if f := stop(); f != nil {
		return f
	}

	// Revocation of every certificate of the chain but the anchor (RFC 6960, RFC 5280; EN 319 102-1 §5.2.5).
	if sub, why := v.chainRevocation(ctx, in, ch.chain, best, poe, r); sub != "" {
		return r.fail(sub, "%s", why)
	}
	if r.Level == "B-T" && len(r.Revocation) > 0 && r.signerStatus().Source == "embedded" {
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
	if f := stop(); f != nil {
		return f
	}

	// Health-domain checks (docs/signature-policy.md §5).
	check := v.checkDomain
	if kind == docDetached { // a printout: no FHIR content, but the same prescriber standing
		check = func(ctx context.Context, _ []byte, signer *certEntry, best time.Time, r *Report) (SubIndication, string) {
			return v.checkRegistration(ctx, signer, best, r)
		}
	}
	if sub, why := check(ctx, sd.content, signer, best, r); sub != "" {
		return r.fail(sub, "%s", why)
	}
	r.Indication = TotalPassed
	return r
}

// signerStatus returns the revocation entry of the signing certificate (the last one added for its serial).
func (r *Report) signerStatus() RevocationInfo {
	for i := len(r.Revocation) - 1; i >= 0; i-- {
		if r.Signer != nil && r.Revocation[i].Serial == r.Signer.Serial && r.Revocation[i].Subject == r.Signer.Subject {
			return r.Revocation[i]
		}
	}
	return RevocationInfo{}
}

// chainRevocation establishes the status of each certificate of chain (leaf first, anchor last, which is not
// checked) at best. The signer: revoked at or before a timestamped best signature time is REVOKED, revoked
// without a timestamp REVOKED_NO_POE, revoked after the timestamp leaves the signature standing (EN 319 102-1
// §5.6.2.4). A CA certificate revoked and not covered by a proof of existence before its revocation is
// REVOKED_CA_NO_POE. No usable status is TRY_LATER.
func (v *Verifier) chainRevocation(ctx context.Context, in *revInput, chain []*certEntry, best time.Time, poe bool, r *Report) (SubIndication, string) {
	for i := 0; i+1 < len(chain); i++ {
		c := chain[i]
		st := v.certStatus(ctx, in, c, chain[i+1], best, r)
		if st == nil {
			if i == 0 {
				return TryLater, "no revocation information for the signing certificate issued after the best signature time"
			}
			return TryLater, "no revocation information for CA certificate " + c.info.Subject
		}
		r.Revocation = append(r.Revocation, st.info)
		if !st.revoked || (poe && st.at.After(best)) {
			continue
		}
		when := st.at.Format(time.RFC3339)
		switch {
		case i > 0:
			return RevokedCANoPOE, "CA certificate " + c.info.Subject + " revoked at " + when
		case poe:
			return Revoked, "signing certificate " + st.info.Status + " at " + when + ", before the signature timestamp"
		default:
			return RevokedNoPOE, "signing certificate " + st.info.Status + " at " + when + " and no proof the signature existed before"
		}
	}
	return "", ""
}
