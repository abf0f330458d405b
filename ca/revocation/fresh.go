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
// default), so it can never be that.
//
// A "good" response is shared (micro-batching): every call for the same certificate whose notBefore is not
// after a fresh response's producedAt, while that response is current, gets that response, and calls made
// while it is being signed wait for it (singleflight), so a physician's prescriptions arriving in the same
// second cost one signature. The store is read on every call all the same, and only a call that finds the
// certificate issued gets a shared "good" response: a revocation recorded in the store, by this node or
// another, stops the sharing at once (the call signs a "revoked" response, never shared, and drops the good
// one), so a revoked certificate never gets a good response it could not have got without sharing. The
// responses are kept in memory only and served to no one but SignFresh's callers.
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
	sign := func() ([]byte, error) {
		der, err := d.rs.sign(id, s, at, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInternal, err)
		}
		return der, nil
	}
	fp := sha256.Sum256(cert.Raw)
	if s.status != statusGood {
		r.signFresh.forget(fp)
		return sign()
	}
	return r.signFresh.shareGood(ctx, fp, d, now, notBefore, at, s.nextUpdate, sign)
}

// maxFreshIssued bounds the certificates SignFresh remembers as issued by the responder's CA.
const maxFreshIssued = 1 << 14

// freshState is SignFresh's memory: the certificates (by SHA-256 fingerprint) whose signature by the CA it has
// checked (the check is deterministic, so remembering it changes no answer; it saves one signature
// verification per ingestion), and the latest shared "good" response of each certificate.
type freshState struct {
	mu       sync.Mutex
	verified map[[32]byte]struct{}
	good     map[[32]byte]*freshResponse
}

// freshResponse is a "good" response SignFresh signed (or is signing) for one certificate.
type freshResponse struct {
	done     chan struct{} // closed once der and err are set
	der      []byte
	err      error
	at, next time.Time // producedAt and thisUpdate; nextUpdate
	d        *delegate // the responder certificate that signs it
}

// maxFreshShared bounds the certificates with a shared response kept.
const maxFreshShared = 1 << 14

// shareGood returns the current good response of fp when one produced at or after notBefore, by the delegate
// d, not yet past its nextUpdate at now, exists or is being signed; else it signs one with sign (dated at) and
// makes it the current one.
func (f *freshState) shareGood(ctx context.Context, fp [32]byte, d *delegate, now, notBefore, at, next time.Time, sign func() ([]byte, error)) ([]byte, error) {
	f.mu.Lock()
	if e := f.good[fp]; e != nil && e.d == d && !e.at.Before(notBefore) && now.Before(e.next) {
		f.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrInternal, ctx.Err())
		}
		if e.err == nil {
			return e.der, nil
		}
		return sign() // the shared signing failed: try on our own
	}
	e := &freshResponse{done: make(chan struct{}), at: at, next: next, d: d}
	if f.good == nil || len(f.good) >= maxFreshShared {
		f.good = map[[32]byte]*freshResponse{}
	}
	f.good[fp] = e
	f.mu.Unlock()
	e.der, e.err = sign()
	close(e.done)
	if e.err != nil {
		f.forgetIf(fp, e)
	}
	return e.der, e.err
}

// forget drops the shared good response of fp (the store no longer says the certificate is good).
func (f *freshState) forget(fp [32]byte) { f.forgetIf(fp, nil) }

// forgetIf drops the shared response of fp when it is e (any when e is nil).
func (f *freshState) forgetIf(fp [32]byte, e *freshResponse) {
	f.mu.Lock()
	if cur := f.good[fp]; cur != nil && (e == nil || cur == e) {
		delete(f.good, fp)
	}
	f.mu.Unlock()
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
