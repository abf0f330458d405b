package revocation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mohr-hix/mohr/ca"
)

// Pre-signed responses kept in the database (a ca.OCSPStore), so that a node starts warm instead of
// re-signing every response, and every node serves the same bytes: a node that learns of a status change
// through the change feed takes the responses the node that made the change signed, when they match the
// certificate record it reads.
//
// Responses read back from the database are not trusted blindly: each must verify against the issuer
// (through the delegated responder certificate it carries, RFC 6960 §4.2.2.2), name the right serial, and
// its responder certificate must outlive its nextUpdate. Anything else is ignored and re-signed.

// ocspStore returns the store's ca.OCSPStore capability, if it has one.
func (r *Responder) ocspStore() (ca.OCSPStore, bool) {
	s, ok := r.cfg.Store.(ca.OCSPStore)
	return s, ok
}

// record is what the store keeps of e, signed from rec by d.
func record(d *delegate, rec ca.CertRecord, e *entry) ca.OCSPRecord {
	return ca.OCSPRecord{Serial: rec.Serial, Status: rec.Status, CertVersion: rec.UpdatedAt, ThisUpdate: e.s.thisUpdate,
		NextUpdate: e.s.nextUpdate, DER: e.der, Responder: sha256.Sum256(d.cert.Raw)}
}

// persist stores recs and hands them to the sink; a failure is reported, not returned: the responses are
// served from memory either way.
func (r *Responder) persist(ctx context.Context, recs []ca.OCSPRecord) {
	r.publish(recs)
	os, ok := r.ocspStore()
	if !ok || len(recs) == 0 {
		return
	}
	if err := os.PutOCSPResponses(ctx, recs); err != nil {
		r.report(fmt.Errorf("revocation: store OCSP responses: %w", err))
	}
}

// publish hands recs to the sink, if there is one.
func (r *Responder) publish(recs []ca.OCSPRecord) {
	if r.cfg.Sink == nil || len(recs) == 0 {
		return
	}
	if err := r.cfg.Sink.Put(recs); err != nil {
		r.report(fmt.Errorf("revocation: OCSP sink: %w", err))
	}
}

// reconciler is a sink that can check what it holds against the database's responses (DirSink.Reconcile).
type reconciler interface {
	Reconcile(recs []ca.OCSPRecord) error
}

// reconcile hands recs, responses read from the store at start, to the sink to check what it holds against
// them (a sink that cannot check is given them as by publish).
func (r *Responder) reconcile(recs []ca.OCSPRecord) {
	rs, ok := r.cfg.Sink.(reconciler)
	if !ok {
		r.publish(recs)
		return
	}
	if len(recs) == 0 {
		return
	}
	if err := rs.Reconcile(recs); err != nil {
		r.report(fmt.Errorf("revocation: OCSP sink: %w", err))
	}
}

// withdraw tells the sink that serial's responses signed from a record version older than olderThan (any,
// if zero) are no longer to be served.
func (r *Responder) withdraw(serial string, olderThan time.Time) {
	if r.cfg.Sink == nil {
		return
	}
	if err := r.cfg.Sink.Remove(serial, olderThan); err != nil {
		r.report(fmt.Errorf("revocation: OCSP sink: %w", err))
	}
}

// loadEntry turns a stored record into a cache entry, or returns an error if it does not verify.
func (r *Responder) loadEntry(d *delegate, o ca.OCSPRecord, seq uint64) (*entry, []byte, error) {
	n, ok := new(big.Int).SetString(o.Serial, 16)
	if !ok || n.Sign() <= 0 {
		return nil, nil, fmt.Errorf("%w: stored serial %q", ErrBadSerial, o.Serial)
	}
	e := &entry{seq: seq, valid: true, gen: d.gen}
	var first *ocsp.Response
	for hi, der := range o.DER {
		if der == nil {
			continue
		}
		// Without the issuer, ParseResponse checks the response's signature against the responder certificate
		// it embeds; that certificate is then checked against the issuer here, once per responder certificate
		// (responderIssued), instead of once per response: every stored response of a node's run shares it.
		resp, err := ocsp.ParseResponse(der, nil)
		if err != nil {
			return nil, nil, err
		}
		if resp.SerialNumber.Cmp(n) != 0 || resp.Certificate == nil || resp.Certificate.NotAfter.Before(resp.NextUpdate) {
			return nil, nil, errors.New("stored OCSP response does not match its record")
		}
		if err := r.responderIssued(d, resp.Certificate); err != nil {
			return nil, nil, err
		}
		if first == nil {
			first = resp
		} else if resp.Status != first.Status || !resp.NextUpdate.Equal(first.NextUpdate) {
			return nil, nil, errors.New("stored OCSP responses disagree")
		}
		e.der[hi] = der
	}
	if first == nil || (e.der[1] == nil && !r.cfg.PresignSHA1Only) {
		return nil, nil, errors.New("stored OCSP responses incomplete")
	}
	e.s = single{thisUpdate: first.ThisUpdate, nextUpdate: first.NextUpdate}
	switch first.Status {
	case ocsp.Good:
		e.s.status = statusGood
	case ocsp.Revoked:
		e.s.status = statusRevoked
		e.s.revokedAt = first.RevokedAt
		e.s.reason = Reason(first.RevocationReason)
	default:
		return nil, nil, errors.New("stored OCSP response says unknown")
	}
	for hi, der := range e.der {
		if der != nil {
			e.headers[hi] = staticHeaders(e.s.thisUpdate, e.s.nextUpdate, der)
		}
	}
	return e, intBytes(n), nil
}

// maxResponderCerts bounds the memory of responder certificates found issued by the CA (one per node and
// renewal, every two days by default).
const maxResponderCerts = 256

// responderIssued checks that cert, the responder certificate a stored response embeds, carries the issuer's
// signature, as ocsp.ParseResponse does when given the issuer. The current delegate's certificate was checked
// by renew; others are checked once and remembered (only those that pass).
func (r *Responder) responderIssued(d *delegate, cert *x509.Certificate) error {
	if d != nil && bytes.Equal(cert.Raw, d.cert.Raw) {
		return nil
	}
	key := sha256.Sum256(cert.Raw)
	r.respMu.Lock()
	ok := r.respOK[key]
	r.respMu.Unlock()
	if ok {
		return nil
	}
	if err := r.cfg.Issuer.Cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return ocsp.ParseError("bad OCSP signature: " + err.Error())
	}
	r.respMu.Lock()
	if r.respOK == nil || len(r.respOK) >= maxResponderCerts {
		r.respOK = map[[32]byte]bool{}
	}
	r.respOK[key] = true
	r.respMu.Unlock()
	return nil
}

// warm fills the cache from the stored responses that verify and are not due for refresh; Refresh then
// re-signs only what is missing, due or whose status the certificate records contradict.
func (r *Responder) warm(ctx context.Context, d *delegate) (int, error) {
	os, ok := r.ocspStore()
	if !ok {
		return 0, nil
	}
	loaded, after := 0, ""
	for {
		seq := r.seq.Add(1)
		recs, err := os.OCSPResponses(ctx, after, refreshPage)
		if err != nil {
			return loaded, fmt.Errorf("revocation: load OCSP responses: %w", err)
		}
		now := r.cfg.Now()
		var installed []ca.OCSPRecord
		for _, o := range recs {
			after = o.Serial
			if o.NextUpdate.Sub(now) <= r.cfg.RefreshBefore {
				continue
			}
			e, raw, err := r.loadEntry(d, o, seq)
			if err != nil {
				continue // re-signed by Refresh
			}
			if r.install(string(raw), e) {
				loaded++
				installed = append(installed, o)
			}
		}
		r.reconcile(installed) // the directory may have lost writes to a crash of the machine (DirSink)
		if len(recs) < refreshPage {
			return loaded, nil
		}
	}
}

// adopt installs the stored responses of rec if they were signed from this very version of the record and
// are fresh, so this node serves what the node that made the change serves. It reports whether it did.
func (r *Responder) adopt(ctx context.Context, d *delegate, rec ca.CertRecord, key string, seq uint64, now time.Time) bool {
	os, ok := r.ocspStore()
	if !ok {
		return false
	}
	o, err := os.OCSPResponse(ctx, rec.Serial)
	if err != nil || !o.CertVersion.Equal(rec.UpdatedAt) || o.NextUpdate.Sub(now) <= r.cfg.RefreshBefore {
		return false
	}
	e, _, err := r.loadEntry(d, o, seq)
	if err != nil {
		return false
	}
	want := r.singleFor(d, rec, true, now)
	if e.s.status != want.status || e.s.reason != want.reason {
		return false
	}
	if r.install(key, e) {
		r.publish([]ca.OCSPRecord{o})
	}
	return true
}

// storeUnavailable reports whether err says the store cannot answer now (unreachable, failing over,
// read-only), as internal/store marks such errors: OCSP then answers tryLater rather than internalError.
func storeUnavailable(err error) bool {
	var u interface{ Unavailable() bool }
	return errors.As(err, &u) && u.Unavailable()
}
