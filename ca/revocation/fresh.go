package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mohr-hix/mohr/ca"
)

// MaxFreshAhead is how far past the responder's clock SignFresh may date a response so that it is not
// earlier than the time it was asked for: GeneralizedTime in OCSP has whole seconds (the responder truncates),
// while a signature timestamp's genTime may carry a fraction.
const MaxFreshAhead = 2 * time.Second

// ErrFreshTooEarly: SignFresh was asked for a response produced after a time further in the future than
// MaxFreshAhead (the caller's clock is ahead of the responder's).
var ErrFreshTooEarly = errors.New("revocation: fresh OCSP response asked for a time in the future")

// SignFresh returns an OCSPResponse (RFC 6960 §4.2.1, SHA-256 CertID, no nonce) for cert whose producedAt and
// thisUpdate are not earlier than notBefore, signed now by the delegated responder with the status the store
// holds at this moment, never a pre-signed one.
//
// It exists for the exchange's ingestion, which must embed revocation data produced after the signature
// timestamp it has just added (docs/signature-policy.md §4, B-LT; ETSI EN 319 102-1 §5.6.2.3 freshness):
// a pre-signed response is up to half its validity old (RFC 5019 §4 refresh cycle, about 12 hours by
// default), so it can never be that. Signing one response per ingestion costs one signature with the
// responder key, small beside the timestamp and the sealed report each ingestion signs anyway. The response is
// neither cached nor served to others.
//
// cert must have been issued by the responder's CA (ErrUnauthorized otherwise). A serial the store does not
// know, or a store record holding another certificate under that serial, is answered "unknown".
func (r *Responder) SignFresh(ctx context.Context, cert *x509.Certificate, notBefore time.Time) ([]byte, error) {
	is := r.cfg.Issuer.Cert
	if cert == nil || !bytes.Equal(cert.RawIssuer, is.RawSubject) || !r.signFresh.issued(cert, is) {
		return nil, fmt.Errorf("%w: certificate not issued by %s", ErrUnauthorized, is.Subject.CommonName)
	}
	if cert.SerialNumber == nil || cert.SerialNumber.Sign() <= 0 {
		return nil, fmt.Errorf("%w: non-positive serial", ErrBadSerial)
	}
	d := r.del.Load()
	if d == nil {
		return nil, ErrNotReady
	}
	now := r.cfg.Now()
	at := now.Truncate(time.Second)
	if at.Before(notBefore) {
		at = notBefore.Truncate(time.Second)
		if at.Before(notBefore) {
			at = at.Add(time.Second)
		}
		if at.Sub(now) > MaxFreshAhead {
			return nil, fmt.Errorf("%w: %s is after the responder's clock %s", ErrFreshTooEarly,
				notBefore.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano))
		}
	}
	if at.After(d.cert.NotAfter) || at.Before(d.cert.NotBefore) {
		return nil, fmt.Errorf("%w: responder certificate not valid at %s", ErrNotReady, at.UTC().Format(time.RFC3339))
	}
	rec, err := r.cfg.Store.Certificate(ctx, ca.SerialHex(cert.SerialNumber))
	found := err == nil
	if err != nil && !errors.Is(err, ca.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	if found && len(rec.DER) > 0 && !bytes.Equal(rec.DER, cert.Raw) {
		found = false // not the certificate the store knows under this serial
	}
	s := r.singleFor(d, rec, found, at)
	id := CertID{Hash: crypto.SHA256, IssuerNameHash: r.nameHash[1], IssuerKeyHash: r.keyHash[1], rawSerial: intBytes(cert.SerialNumber)}
	der, err := d.rs.sign(id, s, at, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	return der, nil
}

// maxFreshIssued bounds the certificates SignFresh remembers as issued by the responder's CA.
const maxFreshIssued = 1 << 14

// freshState is SignFresh's memory: the certificates (by SHA-256 fingerprint) whose signature by the CA it has
// checked. The check is deterministic, so remembering it changes no answer; it saves one signature
// verification per ingestion of a physician's prescriptions.
type freshState struct {
	mu       sync.Mutex
	verified map[[32]byte]struct{}
}

// issued reports whether is signed cert, checking each certificate once.
func (f *freshState) issued(cert, is *x509.Certificate) bool {
	fp := sha256.Sum256(cert.Raw)
	f.mu.Lock()
	_, ok := f.verified[fp]
	f.mu.Unlock()
	if ok {
		return true
	}
	if cert.CheckSignatureFrom(is) != nil {
		return false
	}
	f.mu.Lock()
	if f.verified == nil || len(f.verified) >= maxFreshIssued {
		f.verified = map[[32]byte]struct{}{}
	}
	f.verified[fp] = struct{}{}
	f.mu.Unlock()
	return true
}
