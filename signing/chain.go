package signing

// Certificates and X.509 path validation (EN 319 102-1 §5.2.6; RFC 5280 §6 through crypto/x509), with the
// caches that make a batch signed by few physicians cheap.

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sync/atomic"
	"time"
)

type certEntry struct {
	cert *x509.Certificate
	fp   [32]byte
	info CertInfo
	// The physician-signing profile, read once.
	nationalCode, council, profession string
	profileErr                        string
	// Revocation lookups (revocation.go): the fetched-OCSP cache key for the last issuer asked about, and
	// whether the Verifier's RevocationSource said the certificate names no OCSP responder (ErrNoOCSPResponder).
	ocspKey atomic.Pointer[ocspKeyMemo]
	noOCSP  atomic.Bool
}

type ocspKeyMemo struct {
	issuer [32]byte
	key    string
}

// chainKind says which constraints a path is built for.
type chainKind uint8

const (
	chainSigner chainKind = iota // a prescriber (or PDF signer): through a configured signer CA
	chainTSA                     // a time-stamping unit: EKU timeStamping
)

type chainKey struct {
	leaf, rest [32]byte
	kind       chainKind
}

type chainResult struct {
	chain  []*certEntry // leaf first, anchor last
	sub    SubIndication
	reason string
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
	if e.profileErr == "" {
		e.profileErr = v.trust.prescriberExtras(c)
	}
	v.certs.put(der, e)
	return e, nil
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

// chain validates leaf to the trust anchors (RFC 5280 §6 via crypto/x509) and caches the result by the
// fingerprints of the leaf and of the other certificates offered. The path is built once at a time all its
// certificates are valid; validity at the best signature time is checked per signature by the caller. A signer
// path must pass through one of the policy's signer CAs (the issuer directly above the leaf); a TSA path needs
// the timeStamping EKU (RFC 3161 §2.3). Algorithms are checked per signature, at the time that matters.
func (v *Verifier) chain(leaf *certEntry, others []*certEntry, kind chainKind) *chainResult {
	key := chainKey{leaf: leaf.fp, kind: kind}
	var buf [16 * 32]byte
	n := 0
	for _, o := range others {
		if n+32 > len(buf) {
			break // the policy's limits keep a document under 16 certificates
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
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	if kind == chainTSA {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}
	}
	res := &chainResult{}
	chains, err := leaf.cert.Verify(x509.VerifyOptions{Roots: v.anchors, Intermediates: inter, CurrentTime: t.Add(time.Second), KeyUsages: eku})
	if err != nil {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			res.sub, res.reason = NoCertificateChainFound, "no chain to a trust anchor: "+err.Error()
		} else {
			res.sub, res.reason = CertificateChainGeneralFailure, err.Error()
		}
		v.chains.put(key, res)
		return res
	}
	pick := chains[0]
	if kind == chainSigner {
		pick = nil
		for _, c := range chains { // the shortest path through a signer CA: a signer CA may itself be an anchor
			if len(c) >= 2 && v.trust.isSignerCA(c[1]) && (pick == nil || len(c) < len(pick)) {
				pick = c
			}
		}
		if pick == nil {
			res.sub, res.reason = ChainConstraintsFailure, fmt.Sprintf("issuer %q is not a CA allowed to issue signing certificates", leaf.cert.Issuer.String())
			v.chains.put(key, res)
			return res
		}
	}
	for _, c := range pick {
		e, err := v.cert(c.Raw)
		if err != nil {
			res.sub, res.reason = CertificateChainGeneralFailure, err.Error()
			break
		}
		res.chain = append(res.chain, e)
	}
	if kind == chainTSA && res.sub == "" {
		if err := checkTSACert(leaf.cert); err != nil {
			res.sub, res.reason = CertificateChainGeneralFailure, err.Error()
		}
	}
	if res.sub == "" && len(res.chain) < 2 {
		res.sub, res.reason = CertificateChainGeneralFailure, "the certificate is a trust anchor"
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
