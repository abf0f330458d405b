package signing

// Revocation checking (EN 319 102-1 §5.2.5, §5.6.2.2): for every certificate of the signer's chain except the
// trust anchor, of each TSA's chain, and for a delegated OCSP responder without id-pkix-ocsp-nocheck, by OCSP
// (RFC 6960) or CRL (RFC 5280 §5, §6.3), embedded first, then fetched.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

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

// CRLSource fetches the DER CRL published at a CRL distribution point URL (RFC 5280 §4.2.1.13). The verifier
// caches what it returns by URL until the CRL's nextUpdate.
type CRLSource interface {
	CRL(ctx context.Context, url string) ([]byte, error)
}

// CRLFunc adapts a function to CRLSource.
type CRLFunc func(ctx context.Context, url string) ([]byte, error)

// CRL calls f.
func (f CRLFunc) CRL(ctx context.Context, url string) ([]byte, error) { return f(ctx, url) }

// HTTPCRLs is a CRLSource over plain HTTP (RFC 5280 §4.2.1.13 names http URIs), with a timeout and a size bound.
type HTTPCRLs struct {
	Client *http.Client
	// Timeout bounds one fetch; 10 s when zero. MaxBytes bounds one CRL; 16 MiB when zero.
	Timeout  time.Duration
	MaxBytes int64
}

// CRL fetches url.
func (h *HTTPCRLs) CRL(ctx context.Context, url string) ([]byte, error) {
	to, max := h.Timeout, h.MaxBytes
	if to == 0 {
		to = 10 * time.Second
	}
	if max == 0 {
		max = 16 << 20
	}
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("signing: CRL request: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("signing: fetch CRL: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("signing: fetch CRL: HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("signing: fetch CRL: %w", err)
	}
	if int64(len(b)) > max {
		return nil, errors.New("signing: fetch CRL: too large")
	}
	return b, nil
}

type ocspKey struct{ resp, issuer [32]byte }

type ocspResult struct {
	resp *ocsp.Response
	err  error
	fp   string
	// responder is the delegated responder's certificate, nil when the CA signed the response itself.
	responder *x509.Certificate
}

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1).
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

func hasExt(c *x509.Certificate, oid asn1.ObjectIdentifier) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return true
		}
	}
	return false
}

// checkOCSP parses and verifies an OCSPResponse about a certificate of issuer (RFC 6960 §3.2), caching by
// fingerprint. Only two signers are authorised (§4.2.2.2): issuer itself, or a delegated responder that issuer
// issued with id-kp-OCSPSigning, valid when the response was produced, with acceptable algorithms. When basic is
// true, der is a BasicOCSPResponse (as embedded) rather than an OCSPResponse.
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
	case resp.Certificate != nil && !bytes.Equal(resp.Certificate.RawIssuer, issuer.cert.RawSubject):
		r.err = errors.New("OCSP responder certificate not issued by the certificate's issuer (RFC 6960 §4.2.2.2)")
	case resp.Certificate != nil && !hasEKU(resp.Certificate, x509.ExtKeyUsageOCSPSigning):
		r.err = errors.New("OCSP responder certificate lacks id-kp-OCSPSigning (RFC 6960 §4.2.2.2)")
	case resp.Certificate != nil && !hasExt(resp.Certificate, oidOCSPNoCheck):
		// Without id-pkix-ocsp-nocheck the responder's own status would have to be checked (RFC 6960
		// §4.2.2.2.1); Mohr's responders carry it and are short-lived, so one without it is not relied upon.
		r.err = errors.New("delegated OCSP responder certificate lacks id-pkix-ocsp-nocheck")
	case resp.Certificate != nil && (resp.ProducedAt.Before(resp.Certificate.NotBefore) || resp.ProducedAt.After(resp.Certificate.NotAfter)):
		r.err = errors.New("OCSP responder certificate not valid when the response was produced")
	default:
		r.resp, r.responder = resp, resp.Certificate
		if resp.Certificate != nil {
			if st, why := v.trust.certAlgorithms(resp.Certificate, resp.ProducedAt, false); st != algOK {
				r.resp, r.err = nil, errors.New("OCSP responder: "+why)
			}
		}
		if r.resp != nil {
			if st := v.trust.algorithm(hashName(sigHash(resp.SignatureAlgorithm)), 0, resp.ProducedAt); st != algOK {
				r.resp, r.err = nil, errors.New("OCSP response signature algorithm not acceptable")
			}
		}
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

// embeddedRevocation returns the BasicOCSPResponses and CRLs of the revocation-values attribute
// (EN 319 122-1 §A.1.2: RevocationValues ::= SEQUENCE { crlVals [0] SEQUENCE OF CertificateList OPTIONAL,
// ocspVals [1] SEQUENCE OF BasicOCSPResponse OPTIONAL, otherRevVals [2] OtherRevVals OPTIONAL }).
func embeddedRevocation(si *signerInfo, basics, crls [][]byte) ([][]byte, [][]byte, error) {
	for i := range si.unsignedAttrs {
		a := &si.unsignedAttrs[i]
		if !bytes.Equal(a.oid, dRevocationVals) {
			continue
		}
		v, ok := a.single()
		var rv cryptobyte.String
		if !ok || !v.ReadASN1(&rv, cbasn1.SEQUENCE) {
			return nil, nil, formatErr("revocation-values")
		}
		for !rv.Empty() {
			var tag cbasn1.Tag
			var body cryptobyte.String
			if !rv.ReadAnyASN1(&body, &tag) {
				return nil, nil, formatErr("revocation-values")
			}
			if tag != tagExplicit1 && tag != tagExplicit0 {
				continue // otherRevVals: not used by Mohr
			}
			var seq cryptobyte.String
			if !body.ReadASN1(&seq, cbasn1.SEQUENCE) {
				return nil, nil, formatErr("revocation-values list")
			}
			for !seq.Empty() {
				var x cryptobyte.String
				if !seq.ReadASN1Element(&x, cbasn1.SEQUENCE) {
					return nil, nil, formatErr("revocation value")
				}
				if tag == tagExplicit1 {
					basics = append(basics, x)
				} else {
					crls = append(crls, x)
				}
			}
		}
	}
	return basics, crls, nil
}

// revInput is the revocation material a validation may use: embedded or given BasicOCSPResponses, OCSPResponses
// and CRLs, and whether fetching is allowed.
type revInput struct {
	basics, ocsps, crls [][]byte
}

type crlKey struct{ crl, issuer [32]byte }

type crlResult struct {
	list *x509.RevocationList
	idp  idpInfo
	err  error
	fp   string
}

// idpInfo is the issuing distribution point of a CRL (RFC 5280 §5.2.5).
type idpInfo struct {
	present            bool
	uris               []string
	onlyUser, onlyCA   bool
	unsupportedContent bool // onlySomeReasons, indirectCRL or attribute certificates: not for Mohr's use
}

var oidIDP = asn1.ObjectIdentifier{2, 5, 29, 28}

// parseIDP reads IssuingDistributionPoint ::= SEQUENCE { distributionPoint [0] DistributionPointName OPTIONAL,
// onlyContainsUserCerts [1] IMPLICIT BOOLEAN DEFAULT FALSE, onlyContainsCACerts [2] IMPLICIT BOOLEAN DEFAULT
// FALSE, onlySomeReasons [3] ReasonFlags OPTIONAL, indirectCRL [4] BOOLEAN DEFAULT FALSE,
// onlyContainsAttributeCerts [5] BOOLEAN DEFAULT FALSE }. crypto/x509 does not expose it.
func parseIDP(der []byte) (idpInfo, bool) {
	info := idpInfo{present: true}
	s := cryptobyte.String(der)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return info, false
	}
	if seq.PeekASN1Tag(tagExplicit0) {
		var dpn, full cryptobyte.String
		if !seq.ReadASN1(&dpn, tagExplicit0) {
			return info, false
		}
		if dpn.PeekASN1Tag(tagExplicit0) { // fullName [0] GeneralNames
			if !dpn.ReadASN1(&full, tagExplicit0) {
				return info, false
			}
			for !full.Empty() {
				var gn cryptobyte.String
				var tag cbasn1.Tag
				if !full.ReadAnyASN1(&gn, &tag) {
					return info, false
				}
				if tag == cbasn1.Tag(6).ContextSpecific() {
					info.uris = append(info.uris, string(gn))
				}
			}
		} else {
			info.unsupportedContent = true // nameRelativeToCRLIssuer
		}
	}
	for !seq.Empty() {
		var body cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1(&body, &tag) {
			return info, false
		}
		set := len(body) == 1 && body[0] != 0
		switch tag {
		case cbasn1.Tag(1).ContextSpecific():
			info.onlyUser = set
		case cbasn1.Tag(2).ContextSpecific():
			info.onlyCA = set
		default:
			info.unsupportedContent = true
		}
	}
	return info, true
}

// checkCRL parses and verifies a CRL of issuer (RFC 5280 §6.3.3), caching by fingerprint.
func (v *Verifier) checkCRL(der []byte, issuer *certEntry) *crlResult {
	key := crlKey{crl: sha256.Sum256(der), issuer: issuer.fp}
	if r, ok := v.crlChecks.get(key); ok {
		return r
	}
	r := &crlResult{fp: hex.EncodeToString(key.crl[:])}
	l, err := x509.ParseRevocationList(der)
	switch {
	case err != nil:
		r.err = err
	case !bytes.Equal(l.RawIssuer, issuer.cert.RawSubject):
		r.err = errors.New("CRL is not from the certificate's issuer")
	case l.CheckSignatureFrom(issuer.cert) != nil:
		r.err = errors.New("CRL signature does not verify with the issuer's key")
	case v.trust.algorithm(hashName(sigHash(l.SignatureAlgorithm)), 0, l.ThisUpdate) != algOK:
		r.err = errors.New("CRL signature algorithm not acceptable")
	default:
		r.list = l
		for _, e := range l.Extensions {
			if e.Id.Equal(oidIDP) {
				idp, ok := parseIDP(e.Value)
				if !ok || idp.unsupportedContent {
					r.list, r.err = nil, errors.New("CRL issuing distribution point not supported")
				}
				r.idp = idp
			} else if e.Critical && !e.Id.Equal(oidCRLNumber) && !e.Id.Equal(oidAKI) {
				r.list, r.err = nil, fmt.Errorf("CRL has an unknown critical extension %s", e.Id)
			}
		}
	}
	v.crlChecks.put(key, r)
	return r
}

var (
	oidCRLNumber = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidAKI       = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// coversCert reports whether a CRL with this issuing distribution point is the right scope for c: a sharded
// CRL (Mohr's ca/revocation) names its shard's URL, which must be one the certificate names (RFC 5280 §6.3.3 b).
func (r *crlResult) coversCert(c *x509.Certificate) bool {
	if !r.idp.present {
		return true // a full CRL
	}
	if (r.idp.onlyUser && c.IsCA) || (r.idp.onlyCA && !c.IsCA) {
		return false
	}
	if len(r.idp.uris) == 0 {
		return true
	}
	for _, u := range r.idp.uris {
		for _, dp := range c.CRLDistributionPoints {
			if u == dp {
				return true
			}
		}
	}
	return false
}

// status is what one revocation check established about a certificate.
type status struct {
	info    RevocationInfo
	revoked bool
	at      time.Time
}

// certStatus establishes the status of cert (issued by issuer) at time at from in, else by fetching (what
// it fetches and uses is added to r.Used, for an upgrade to embed). Data
// counts when issued at or after at minus the clock skew (a "revoked" answer counts whenever it was issued). It
// returns nil when no usable data was found.
func (v *Verifier) certStatus(ctx context.Context, in *revInput, cert, issuer *certEntry, at time.Time, r *Report) *status {
	skewed := at.Add(-v.cfg.ClockSkew)
	now := v.cfg.Now()
	// fresh: embedded data must be issued at or after the time it speaks for (minus the skew); data fetched now
	// is the issuer's current word until its nextUpdate (policy §5.8: "else one fetched now"): a certificate
	// not revoked now was not revoked before (holds aside, which a current answer also shows). A thisUpdate
	// after the validation time is accepted for fetched data: an auditor may validate as of a past time.
	fresh := func(thisUpdate, nextUpdate time.Time, source string) bool {
		if source == "fetched" {
			return nextUpdate.IsZero() || now.Before(nextUpdate) || !thisUpdate.Before(skewed)
		}
		return !thisUpdate.Before(skewed)
	}
	fromOCSP := func(res *ocspResult, source string) *status {
		if res.err != nil || res.resp.SerialNumber.Cmp(cert.cert.SerialNumber) != 0 {
			return nil
		}
		if !fresh(res.resp.ThisUpdate, res.resp.NextUpdate, source) && res.resp.Status != ocsp.Revoked {
			return nil // not fresh: issued before the time it must speak for
		}
		if res.resp.Status == ocsp.Unknown {
			return nil
		}
		st := &status{info: RevocationInfo{Serial: cert.info.Serial, Subject: cert.info.Subject, Type: "ocsp", Source: source,
			ProducedAt: res.resp.ProducedAt.UTC(), ThisUpdate: res.resp.ThisUpdate.UTC(), ResponseSHA256: res.fp, Status: "good"}}
		if res.responder != nil {
			st.info.Responder = res.responder.Subject.CommonName
		}
		if res.resp.Status == ocsp.Revoked {
			st.revoked, st.at = true, res.resp.RevokedAt.UTC()
			st.info.Status = "revoked"
			if res.resp.RevocationReason == ocsp.CertificateHold {
				st.info.Status = "on hold"
			}
			t := st.at
			st.info.RevokedAt = &t
		}
		return st
	}
	fromCRL := func(res *crlResult, source string) *status {
		if res.err != nil || !res.coversCert(cert.cert) {
			return nil
		}
		if !fresh(res.list.ThisUpdate, res.list.NextUpdate, source) {
			return nil
		}
		st := &status{info: RevocationInfo{Serial: cert.info.Serial, Subject: cert.info.Subject, Type: "crl", Source: source,
			ThisUpdate: res.list.ThisUpdate.UTC(), ProducedAt: res.list.ThisUpdate.UTC(), ResponseSHA256: res.fp, Status: "good"}}
		for _, e := range res.list.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(cert.cert.SerialNumber) == 0 {
				st.revoked, st.at = true, e.RevocationTime.UTC()
				st.info.Status = "revoked"
				if e.ReasonCode == ocsp.CertificateHold {
					st.info.Status = "on hold"
				}
				t := st.at
				st.info.RevokedAt = &t
				break
			}
		}
		return st
	}
	for _, b := range in.basics {
		if st := fromOCSP(v.checkOCSP(b, issuer, true), "embedded"); st != nil {
			return st
		}
	}
	for _, o := range in.ocsps {
		if st := fromOCSP(v.checkOCSP(o, issuer, false), "embedded"); st != nil {
			return st
		}
	}
	for _, c := range in.crls {
		if st := fromCRL(v.checkCRL(c, issuer), "embedded"); st != nil {
			return st
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	// A certificate the source said names no responder is not asked about again (its CRLs are, below).
	if v.cfg.Revocation != nil && !cert.noOCSP.Load() {
		der, err := v.fetched.lookup(ctx, v.fetched.ocsps, ocspFetchKey(issuer, cert), v.fetched.ocsp,
			func(ctx context.Context) ([]byte, error) { return v.cfg.Revocation.OCSP(ctx, cert.cert, issuer.cert) },
			func(der []byte) (time.Time, time.Time, bool) {
				res := v.checkOCSP(der, issuer, false)
				if res.err != nil || res.resp.SerialNumber.Cmp(cert.cert.SerialNumber) != 0 || res.resp.Status == ocsp.Unknown {
					return time.Time{}, time.Time{}, false
				}
				return res.resp.ThisUpdate, res.resp.NextUpdate, true
			})
		if errors.Is(err, ErrNoOCSPResponder) {
			cert.noOCSP.Store(true)
		}
		if err == nil {
			if st := fromOCSP(v.checkOCSP(der, issuer, false), "fetched"); st != nil {
				r.used().OCSPs = append(r.used().OCSPs, der)
				return st
			}
		}
	}
	if v.cfg.CRLs != nil {
		for _, url := range cert.cert.CRLDistributionPoints {
			der, err := v.fetched.lookup(ctx, v.fetched.crls, "c"+url, true,
				func(ctx context.Context) ([]byte, error) { return v.cfg.CRLs.CRL(ctx, url) },
				func(der []byte) (time.Time, time.Time, bool) {
					res := v.checkCRL(der, issuer)
					if res.err != nil {
						return time.Time{}, time.Time{}, false
					}
					return res.list.ThisUpdate, res.list.NextUpdate, true
				})
			if err != nil {
				continue
			}
			if st := fromCRL(v.checkCRL(der, issuer), "fetched"); st != nil {
				r.used().CRLs = append(r.used().CRLs, der)
				return st
			}
		}
	}
	return nil
}

// CertificateStatus asks src for cert's OCSP status and returns "good", "revoked" or "on hold" (RFC 6960
// §2.2), after checking that the response is signed by issuer or a responder it authorised (§4.2.2.2). Signing
// tools use it to refuse a revoked certificate before touching a card.
func CertificateStatus(ctx context.Context, src RevocationSource, cert, issuer *x509.Certificate) (string, error) {
	if issuer == nil {
		return "", errors.New("signing: issuer of the certificate not given")
	}
	der, err := src.OCSP(ctx, cert, issuer)
	if err != nil {
		return "", err
	}
	resp, err := ocsp.ParseResponseForCert(der, cert, issuer)
	if err != nil {
		return "", fmt.Errorf("signing: OCSP response: %w", err)
	}
	if resp.Certificate != nil && (!bytes.Equal(resp.Certificate.RawIssuer, issuer.RawSubject) || !hasEKU(resp.Certificate, x509.ExtKeyUsageOCSPSigning)) {
		return "", errors.New("signing: OCSP response from a responder the issuer did not authorise")
	}
	switch resp.Status {
	case ocsp.Good:
		return "good", nil
	case ocsp.Revoked:
		if resp.RevocationReason == ocsp.CertificateHold {
			return "on hold", nil
		}
		return "revoked", nil
	}
	return "", errors.New("signing: OCSP status unknown")
}
