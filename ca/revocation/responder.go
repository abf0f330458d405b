package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/keys"
)

// IssueFunc issues a delegated OCSP responder certificate (RFC 6960 §4.2.2.2: id-kp-OCSPSigning and
// id-pkix-ocsp-nocheck, short-lived) for pub, valid at most until notAfter. The composition root passes the ca
// package's issuance pipeline (profile ocsp-responder): a certificate issued any other way would escape the
// pipeline's intent record, lint and audit events.
type IssueFunc func(ctx context.Context, pub crypto.PublicKey, notBefore, notAfter time.Time) (*x509.Certificate, error)

// Defaults of ResponderConfig.
const (
	DefaultResponderCertLifetime = 4 * 24 * time.Hour
	DefaultResponderRenewBefore  = 2 * 24 * time.Hour
	DefaultOCSPValidity          = 24 * time.Hour
	DefaultOCSPInterval          = 5 * time.Minute
	// refreshPage is how many records the refresh sweep reads per store call.
	refreshPage = 1000
)

// ResponderConfig configures a Responder.
type ResponderConfig struct {
	// Issuer is the CA whose certificates the responder answers for; its Signer issues the delegated
	// responder certificate. Requests whose CertID names another issuer get unauthorized.
	Issuer *ca.Issuer
	Store  ca.Store
	// Key is the delegated responder's key: any crypto.Signer (software, HSM). Every signature it returns
	// is verified before use.
	Key crypto.Signer
	// Issue issues the responder certificate through the ca package's issuance pipeline (the composition root
	// passes a closure over ca.CA.Issue with a CSR made by Key). Required: there is one issuance pipeline.
	Issue IssueFunc
	// Shards is the CRL shard count (for the responder certificate's record). At least 1.
	Shards int
	// CertLifetime of the responder certificate (RFC 6960 §4.2.2.2.1: with ocsp-nocheck, keep it short).
	CertLifetime time.Duration
	// RenewBefore: a new responder certificate is issued once the current one has less than this left.
	RenewBefore time.Duration
	// Validity is nextUpdate - thisUpdate of each response. It must not exceed RenewBefore, so that no
	// response outlives the certificate that signed it.
	Validity time.Duration
	// RefreshBefore: a cached response is re-signed once its nextUpdate is less than this away
	// (RFC 5019 §4: responses are pre-produced and refreshed before they expire). Validity/2 if zero.
	RefreshBefore time.Duration
	// Interval is how often Run renews and refreshes.
	Interval time.Duration
	// PresignSHA1Only pre-signs responses for SHA-1 CertIDs only (RFC 5019 §2.1.1 clients use SHA-1) and
	// signs SHA-256 requests on demand. It about halves the cache (2.4 KB per certificate with both).
	PresignSHA1Only bool
	// SignNonces is the policy that honours request nonces (RFC 8954): a request carrying one gets a response
	// signed for it. Off (the default, and what RFC 5019 §4 and large public responders do), nonces are
	// ignored and the pre-signed response is served: a nonce would otherwise buy a fresh signature with the
	// responder key for anyone who sends one.
	SignNonces bool
	// SignUnknown is the policy that answers serials the responder has no pre-signed response for (never
	// issued, pending, failed or expired) with a "unknown" response signed on demand (RFC 6960 §2.2). Off (the
	// default), they are answered with the unsigned unauthorized error response (RFC 6960 §2.3, RFC 5019 §2.2.3),
	// so random serials cost no signature.
	SignUnknown bool
	// Sink, if not nil, receives every pre-signed response this responder signs or takes from the store,
	// and hears when a certificate's responses are withdrawn (a DirSink for a static web server or CDN).
	Sink Sink
	// OnError, if not nil, hears of failures inside Run (the library does not log).
	OnError func(err error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Response is an answer to one OCSP request.
type Response struct {
	// DER is the OCSPResponse to send, with HTTP status 200 and Content-Type application/ocsp-response
	// (RFC 6960 Appendix A.2), also when it is an error response.
	DER []byte
	// ThisUpdate and NextUpdate of the SingleResponse, zero for error responses.
	ThisUpdate, NextUpdate time.Time
	// Cacheable says HTTP caches may keep DER until NextUpdate (RFC 5019 §6): a good or revoked response
	// without a nonce. Responses carrying a nonce or saying unknown are not.
	Cacheable bool
	headers   *cacheHeaders // precomputed for pre-signed responses
}

// entry holds the pre-signed responses of one certificate. Entries are immutable once installed.
type entry struct {
	seq      uint64    // value of Responder.seq taken before the store read this entry comes from
	valid    bool      // false in a tombstone (Update in progress): not to be served
	der      [2][]byte // responses for SHA-1 and SHA-256 CertIDs; nil in a tombstone
	headers  [2]*cacheHeaders
	s        single
	notAfter time.Time // of the certificate
	gen      uint64    // responder certificate generation that signed der
}

type delegate struct {
	rs   *responseSigner
	cert *x509.Certificate
	gen  uint64
}

// Responder is an OCSP responder (RFC 6960) in the RFC 5019 profile. It keeps pre-signed responses for
// every unexpired issued, revoked or held certificate of its issuer, for SHA-1 and SHA-256 CertIDs, and
// serves them without signing. A request never makes it sign unless a policy says so: nonces are ignored
// (ResponderConfig.SignNonces turns them on) and serials it has no response for get the unsigned unauthorized
// error (ResponderConfig.SignUnknown turns signed "unknown" answers on). The one signature a request can cause
// is the fill of a certificate's entry that is missing (just issued, or withdrawn by Update), once per
// certificate and validity period.
//
// Requests listing several CertIDs are answered for the first only. RFC 5019 §2.1.1 requires clients to
// send exactly one; answering the first, as golang.org/x/crypto/ocsp and Boulder do, keeps such clients
// working with a response they can verify, where malformedRequest would fail them outright, and keeps
// every answer a single pre-signed response.
//
// Consistency: every cache fill takes a sequence number before it reads the store and installs its entry
// only over an entry read earlier, so a slow refresh can never put back a "good" response that a
// revocation (Update) has replaced.
type Responder struct {
	cfg      ResponderConfig
	nameHash [2][]byte // issuer name hash, SHA-1 and SHA-256 (RFC 6960 §4.1.1)
	keyHash  [2][]byte // issuer key hash

	del     atomic.Pointer[delegate]
	renewMu sync.Mutex // one responder certificate issuance at a time

	seq   atomic.Uint64
	mu    sync.RWMutex
	cache map[string]*entry // key: content octets of the serialNumber INTEGER

	signFresh freshState // SignFresh's memory (fresh.go)

	respMu sync.Mutex
	respOK map[[32]byte]bool // responder certificates of stored responses found issued by the CA (persist.go)
}

// NewResponder checks cfg and returns a Responder that answers tryLater until Start succeeds.
func NewResponder(cfg ResponderConfig) (*Responder, error) {
	if cfg.Issuer == nil || cfg.Issuer.Cert == nil || cfg.Issuer.Signer == nil {
		return nil, fmt.Errorf("%w: OCSP issuer and signer required", ErrConfig)
	}
	if cfg.Store == nil || cfg.Key == nil {
		return nil, fmt.Errorf("%w: OCSP store and responder key required", ErrConfig)
	}
	if err := keys.MatchesCertificate(cfg.Issuer.Signer, cfg.Issuer.Cert); err != nil {
		return nil, fmt.Errorf("%w: OCSP issuer signer: %w", ErrConfig, err)
	}
	if cfg.Shards < 1 {
		cfg.Shards = 1
	}
	if cfg.CertLifetime <= 0 {
		cfg.CertLifetime = DefaultResponderCertLifetime
	}
	if cfg.RenewBefore <= 0 {
		cfg.RenewBefore = DefaultResponderRenewBefore
	}
	if cfg.Validity <= 0 {
		cfg.Validity = DefaultOCSPValidity
	}
	if cfg.RefreshBefore <= 0 {
		cfg.RefreshBefore = cfg.Validity / 2
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultOCSPInterval
	}
	if cfg.RenewBefore >= cfg.CertLifetime || cfg.Validity > cfg.RenewBefore || cfg.RefreshBefore >= cfg.Validity {
		return nil, fmt.Errorf("%w: need RefreshBefore < Validity <= RenewBefore < CertLifetime", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Issue == nil {
		return nil, fmt.Errorf("%w: OCSP responder certificate issuer (ResponderConfig.Issue) required", ErrConfig)
	}
	spk, err := subjectPublicKeyBits(cfg.Issuer.Cert.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, err
	}
	r := &Responder{cfg: cfg, cache: make(map[string]*entry)}
	n1, k1 := sha1.Sum(cfg.Issuer.Cert.RawSubject), sha1.Sum(spk)
	n2, k2 := sha256.Sum256(cfg.Issuer.Cert.RawSubject), sha256.Sum256(spk)
	r.nameHash = [2][]byte{n1[:], n2[:]}
	r.keyHash = [2][]byte{k1[:], k2[:]}
	return r, nil
}

// Certificate returns the current delegated responder certificate, nil before Start.
func (r *Responder) Certificate() *x509.Certificate {
	if d := r.del.Load(); d != nil {
		return d.cert
	}
	return nil
}

// Len returns the number of certificates with cached responses.
func (r *Responder) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.cache)
}

// Start obtains the responder certificate and pre-signs responses for every unexpired certificate in the
// store. Run calls it; call it directly to be ready before serving.
//
// On a store that keeps responses (ca.OCSPStore), Start first takes the stored responses that verify and are
// fresh, and signs only the rest: a new node starts warm.
func (r *Responder) Start(ctx context.Context) error {
	if _, err := r.renew(ctx); err != nil {
		return err
	}
	loaded, err := r.warm(ctx, r.del.Load())
	if err != nil {
		r.report(err)
	}
	return r.Refresh(ctx, loaded == 0)
}

// Run starts the responder if needed, then every Interval renews the responder certificate when due
// (re-signing everything under the new one) and refreshes responses whose nextUpdate is near or whose
// status changed in the store. It returns ctx's error when ctx ends; other failures go to OnError.
func (r *Responder) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	r.tick(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			r.tick(ctx)
		}
	}
}

func (r *Responder) tick(ctx context.Context) {
	renewed, err := r.renew(ctx)
	if err != nil {
		r.report(err)
		if r.del.Load() == nil {
			return
		}
	}
	if err := r.Refresh(ctx, renewed); err != nil && ctx.Err() == nil {
		r.report(err)
	}
}

func (r *Responder) report(err error) {
	if r.cfg.OnError != nil {
		r.cfg.OnError(err)
	}
}

// renew issues a responder certificate when there is none or the current one has less than RenewBefore
// left. It checks what it got: the responder key's certificate, id-kp-OCSPSigning, signed by the issuer.
func (r *Responder) renew(ctx context.Context) (bool, error) {
	r.renewMu.Lock()
	defer r.renewMu.Unlock()
	now := r.cfg.Now()
	old := r.del.Load()
	if old != nil && old.cert.NotAfter.Sub(now) > r.cfg.RenewBefore {
		return false, nil
	}
	// Backdated a minute for clients whose clocks run slightly behind.
	cert, err := r.cfg.Issue(ctx, r.cfg.Key.Public(), now.Add(-time.Minute), now.Add(r.cfg.CertLifetime))
	if err != nil {
		return false, fmt.Errorf("revocation: responder certificate: %w", err)
	}
	if err := keys.MatchesCertificate(r.cfg.Key, cert); err != nil {
		return false, fmt.Errorf("revocation: responder certificate: %w", err)
	}
	hasEKU := false
	for _, u := range cert.ExtKeyUsage {
		hasEKU = hasEKU || u == x509.ExtKeyUsageOCSPSigning
	}
	if !hasEKU {
		return false, fmt.Errorf("%w: responder certificate lacks id-kp-OCSPSigning", ErrConfig)
	}
	if err := cert.CheckSignatureFrom(r.cfg.Issuer.Cert); err != nil {
		return false, fmt.Errorf("revocation: responder certificate not issued by the CA: %w", err)
	}
	rs, err := newResponseSigner(keys.Verifying(r.cfg.Key), cert)
	if err != nil {
		return false, err
	}
	d := &delegate{rs: rs, cert: cert, gen: 1}
	if old != nil {
		d.gen = old.gen + 1
	}
	r.del.Store(d)
	return true, nil
}

// Respond answers a DER OCSP request (an HTTP POST body, RFC 6960 Appendix A.1) with the DER
// OCSPResponse to send with HTTP 200. Malformed requests, requests for another issuer, store failures and
// requests before Start are answered with the OCSP error responses malformedRequest, unauthorized,
// internalError and tryLater (RFC 6960 §4.2.1, RFC 5019 §2.2.3), not with a Go error: the error result is
// always nil and exists for the api.OCSPResponder interface. Handle says why, for metrics.
func (r *Responder) Respond(ctx context.Context, reqDER []byte) ([]byte, error) {
	resp, _ := r.Handle(ctx, reqDER)
	return resp.DER, nil
}

// RespondGET answers a GET request whose path after the responder's base URL is b64path: the URL-encoded
// base64 of the DER request (RFC 6960 Appendix A.1, RFC 5019 §5). Either the escaped or the already
// URL-decoded path works, with or without a leading "/" and padding. The router must not clean the path
// ("//" occurs in base64). Like Respond, it answers every failure with an OCSP error response.
func (r *Responder) RespondGET(ctx context.Context, b64path string) ([]byte, error) {
	resp, _ := r.HandleGET(ctx, b64path)
	return resp.DER, nil
}

// RespondGETHeaders is RespondGET with the HTTP caching headers of the answer at now (Response.CacheHeaders:
// computed once when a pre-signed response was signed), or nil when the answer must not be cached (an error,
// unknown or nonce-bearing response). The API uses it instead of parsing the response again per request.
func (r *Responder) RespondGETHeaders(ctx context.Context, b64path string, now time.Time) ([]byte, map[string]string) {
	resp, _ := r.HandleGET(ctx, b64path)
	return resp.DER, resp.CacheHeaders(now)
}

// HandleGET is RespondGET with the response's validity, for caching headers.
func (r *Responder) HandleGET(ctx context.Context, b64path string) (Response, error) {
	der, err := decodeGETPath(b64path)
	if err != nil {
		return Response{DER: malformedResponse}, err
	}
	return r.Handle(ctx, der)
}

func decodeGETPath(p string) ([]byte, error) {
	if len(p) > MaxGETPathSize {
		return nil, fmt.Errorf("%w: GET path of %d bytes", ErrMalformedRequest, len(p))
	}
	u := strings.TrimLeft(p, "/")
	if strings.IndexByte(u, '%') >= 0 { // '%' is not in any base64 alphabet: the path is still escaped
		var err error
		if u, err = url.PathUnescape(u); err != nil {
			return nil, fmt.Errorf("%w: GET path escaping", ErrMalformedRequest)
		}
	}
	// A '+' that went through form decoding arrives as a space.
	u = strings.ReplaceAll(u, " ", "+")
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if der, err := enc.DecodeString(u); err == nil {
			return der, nil
		}
	}
	return nil, fmt.Errorf("%w: GET path is not base64", ErrMalformedRequest)
}

func hashIndex(h crypto.Hash) int {
	switch h {
	case crypto.SHA1:
		return 0
	case crypto.SHA256:
		return 1
	}
	return -1
}

// Handle is Respond with the response's validity and cacheability, for caching headers, and the reason for
// an error response: ErrMalformedRequest, ErrUnauthorized, ErrInternal or ErrNotReady. Resp.DER is the
// answer to send in every case.
func (r *Responder) Handle(ctx context.Context, reqDER []byte) (Response, error) {
	var req Request
	if err := parseRequest(reqDER, &req); err != nil {
		return Response{DER: malformedResponse}, err
	}
	id := req.CertID
	hi := hashIndex(id.Hash)
	// RFC 6960 §4.1.1: match both the issuer name hash and the issuer key hash. A CertID under another
	// hash (SHA-384, SHA-512) cannot be matched by this responder, which therefore is not authoritative.
	if hi < 0 || !bytes.Equal(id.IssuerNameHash, r.nameHash[hi]) || !bytes.Equal(id.IssuerKeyHash, r.keyHash[hi]) {
		return Response{DER: unauthorizedResponse}, fmt.Errorf("%w: serial %x", ErrUnauthorized, id.Serial())
	}
	d := r.del.Load()
	if d == nil {
		return Response{DER: tryLaterResponse}, ErrNotReady
	}
	now := r.cfg.Now()

	nonce := req.Nonce
	if !r.cfg.SignNonces {
		nonce = nil // RFC 5019 §4: the pre-produced response, without the nonce
	}

	r.mu.RLock()
	e := r.cache[string(id.rawSerial)]
	r.mu.RUnlock()
	live := e != nil && e.valid && now.Before(e.s.nextUpdate)
	if live && nonce == nil && e.der[hi] != nil {
		return Response{DER: e.der[hi], ThisUpdate: e.s.thisUpdate, NextUpdate: e.s.nextUpdate, Cacheable: true, headers: e.headers[hi]}, nil
	}
	if live && nonce == nil {
		// A CertID hash not pre-signed (PresignSHA1Only): signed once, then kept with the entry.
		ne, err := r.addVariant(d, e, hi, id.rawSerial)
		if err != nil {
			return Response{DER: internalResponse}, fmt.Errorf("%w: %w", ErrInternal, err)
		}
		return Response{DER: ne.der[hi], ThisUpdate: ne.s.thisUpdate, NextUpdate: ne.s.nextUpdate, Cacheable: true, headers: ne.headers[hi]}, nil
	}

	var s single
	if live {
		s = e.s // a nonce the policy honours: same status, signed now
	} else {
		seq := r.seq.Add(1)
		rec, found, err := r.lookup(ctx, id)
		if err != nil {
			if storeUnavailable(err) { // the database is failing over: ask the client to retry (RFC 6960 §4.2.1)
				return Response{DER: tryLaterResponse}, fmt.Errorf("%w: %w", ErrNotReady, err)
			}
			return Response{DER: internalResponse}, fmt.Errorf("%w: %w", ErrInternal, err)
		}
		if !r.cfg.SignUnknown && (!found || !cacheable(rec, now)) {
			return Response{DER: unauthorizedResponse}, fmt.Errorf("%w: no response for serial %x", ErrUnauthorized, id.Serial())
		}
		if found && cacheable(rec, now) && nonce == nil {
			e, err := r.fill(d, rec, seq, now)
			if err != nil {
				return Response{DER: internalResponse}, fmt.Errorf("%w: %w", ErrInternal, err)
			}
			r.persist(ctx, []ca.OCSPRecord{record(d, rec, e)})
			if e.der[hi] != nil {
				return Response{DER: e.der[hi], ThisUpdate: e.s.thisUpdate, NextUpdate: e.s.nextUpdate, Cacheable: true, headers: e.headers[hi]}, nil
			}
			s = e.s
		} else {
			s = r.singleFor(d, rec, found, now)
		}
	}
	der, err := d.rs.sign(id, s, now, nonce)
	if err != nil {
		return Response{DER: internalResponse}, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	return Response{DER: der, ThisUpdate: s.thisUpdate, NextUpdate: s.nextUpdate,
		Cacheable: nonce == nil && s.status != statusUnknown}, nil
}

// addVariant signs the response of e for CertID hash index hi and installs a copy of e holding it (entries
// are immutable), unless a later store read replaced e meanwhile.
func (r *Responder) addVariant(d *delegate, e *entry, hi int, raw []byte) (*entry, error) {
	hs := []crypto.Hash{crypto.SHA1, crypto.SHA256}[hi]
	id := CertID{Hash: hs, IssuerNameHash: r.nameHash[hi], IssuerKeyHash: r.keyHash[hi], rawSerial: raw}
	der, err := d.rs.sign(id, e.s, e.s.thisUpdate, nil)
	if err != nil {
		return nil, err
	}
	ne := *e
	ne.der[hi] = der
	ne.headers[hi] = staticHeaders(ne.s.thisUpdate, ne.s.nextUpdate, der)
	r.mu.Lock()
	if cur := r.cache[string(raw)]; cur == e {
		r.cache[string(raw)] = &ne
	}
	r.mu.Unlock()
	return &ne, nil
}

// lookup reads the record of id's serial; found is false for serials the store does not have.
func (r *Responder) lookup(ctx context.Context, id CertID) (ca.CertRecord, bool, error) {
	n := id.Serial()
	if n.Sign() <= 0 {
		return ca.CertRecord{}, false, nil
	}
	rec, err := r.cfg.Store.Certificate(ctx, ca.SerialHex(n))
	if errors.Is(err, ca.ErrNotFound) {
		return ca.CertRecord{}, false, nil
	}
	if err != nil {
		return ca.CertRecord{}, false, err
	}
	return rec, true, nil
}

// cacheable reports whether rec gets pre-signed responses: a certificate that was handed out and has not
// expired. Pending and failed serials are unknown (RFC 6960 §2.2: the responder does not know of a
// certificate that was never issued).
func cacheable(rec ca.CertRecord, now time.Time) bool {
	switch rec.Status {
	case ca.StatusIssued, ca.StatusRevoked, ca.StatusHeld:
		return rec.NotAfter.After(now)
	}
	return false
}

// singleFor says what OCSP says about rec at now: good, revoked (certificateHold for a hold, RFC 6960
// §2.2) or unknown.
func (r *Responder) singleFor(d *delegate, rec ca.CertRecord, found bool, now time.Time) single {
	next := now.Add(r.cfg.Validity)
	if next.After(d.cert.NotAfter) {
		next = d.cert.NotAfter // never outlive the responder certificate
	}
	s := single{status: statusUnknown, thisUpdate: now, nextUpdate: next}
	if !found {
		return s
	}
	switch rec.Status {
	case ca.StatusIssued:
		s.status = statusGood
	case ca.StatusRevoked, ca.StatusHeld:
		s.status = statusRevoked
		s.revokedAt = rec.RevokedAt
		s.reason = Reason(rec.RevocationReason)
		if rec.Status == ca.StatusHeld {
			s.reason = CertificateHold
		}
	}
	return s
}

// sign pre-signs the CertID variants of rec: SHA-1 and, unless PresignSHA1Only, SHA-256.
func (r *Responder) sign(d *delegate, rec ca.CertRecord, seq uint64, now time.Time) (*entry, []byte, error) {
	n, ok := new(big.Int).SetString(rec.Serial, 16)
	if !ok || n.Sign() <= 0 {
		return nil, nil, fmt.Errorf("%w: store serial %q", ErrBadSerial, rec.Serial)
	}
	raw := intBytes(n)
	e := &entry{seq: seq, valid: true, s: r.singleFor(d, rec, true, now), notAfter: rec.NotAfter, gen: d.gen}
	for hi, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		if h == crypto.SHA256 && r.cfg.PresignSHA1Only {
			continue
		}
		id := CertID{Hash: h, IssuerNameHash: r.nameHash[hi], IssuerKeyHash: r.keyHash[hi], rawSerial: raw}
		der, err := d.rs.sign(id, e.s, now, nil)
		if err != nil {
			return nil, nil, err
		}
		e.der[hi] = der
		e.headers[hi] = staticHeaders(e.s.thisUpdate, e.s.nextUpdate, der)
	}
	return e, raw, nil
}

// fill signs and installs the entry of rec, read from the store after seq was taken.
func (r *Responder) fill(d *delegate, rec ca.CertRecord, seq uint64, now time.Time) (*entry, error) {
	e, raw, err := r.sign(d, rec, seq, now)
	if err != nil {
		return nil, err
	}
	r.install(string(raw), e)
	return e, nil
}

// install puts e in the cache unless the entry there comes from a later store read.
func (r *Responder) install(key string, e *entry) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.cache[key]; cur != nil && cur.seq > e.seq {
		return false
	}
	r.cache[key] = e
	return true
}

// Update re-signs the responses of serial from its current record in the store. Service calls it after
// a revocation, hold or release; the issuance pipeline should call it after issuing. Until the new
// responses are in place the old ones are withdrawn, so a failure here leaves the responder signing on
// demand from the store, never serving the previous status.
func (r *Responder) Update(ctx context.Context, serial string) error {
	return r.UpdateMany(ctx, []string{serial})
}

// UpdateMany is Update for many serials at once (the change feed's page of revocations, holds and releases):
// the old responses of all of them are withdrawn first, the records are read, the responses are signed over
// GOMAXPROCS goroutines and stored in one transaction (one durable write per page instead of one per
// certificate). A serial named twice is updated once, from its current record. Errors of single serials are
// joined; the others are updated.
func (r *Responder) UpdateMany(ctx context.Context, serials []string) error {
	_, err := r.update(ctx, serials, true)
	return err
}

// UpdateIssued makes sure certificates just issued have pre-signed responses, and stores them (the change
// feed's page of issuances, on every node). Nothing is withdrawn first: a serial that was pending had no
// response to withdraw. A response already in the cache for the record's current status (Presign, in the
// issuing request) is stored as it is, without signing again; others are adopted from the store or signed
// as UpdateMany does. It returns how many were already pre-signed.
func (r *Responder) UpdateIssued(ctx context.Context, serials []string) (cached int, err error) {
	return r.update(ctx, serials, false)
}

// Ticket orders a store read against cache updates: take it before the read, and pass it with what the read
// returned (Presign). A later Update of the same serial (a revocation) wins over it.
type Ticket uint64

// Ticket returns a ticket for a store read about to happen.
func (r *Responder) Ticket() Ticket { return Ticket(r.seq.Add(1)) }

// Presign signs and installs the responses of rec, a certificate the issuance pipeline has just recorded
// as issued (the record it returned), with t taken before the issuance began. The issuing request calls it
// (in its own goroutine, so that pre-signing keeps pace with issuance however loaded the node is); the
// change feed then stores the responses (UpdateIssued). A revocation of the serial after t wins.
func (r *Responder) Presign(rec ca.CertRecord, t Ticket) error {
	d := r.del.Load()
	if d == nil || !cacheable(rec, r.cfg.Now()) {
		return nil
	}
	_, err := r.fill(d, rec, uint64(t), r.cfg.Now())
	return err
}

// batchReader is a store that reads many certificate records in one query (internal/store).
type batchReader interface {
	CertificatesBySerial(ctx context.Context, serials []string) (map[string]ca.CertRecord, error)
}

func (r *Responder) update(ctx context.Context, serials []string, withdraw bool) (int, error) {
	type item struct {
		hex, key string
		seq      uint64
		rec      ca.CertRecord
	}
	var errs []error
	items := make([]item, 0, len(serials))
	seen := make(map[string]bool, len(serials))
	for _, serial := range serials {
		hexSerial, err := NormalizeSerial(serial)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[hexSerial] {
			continue
		}
		seen[hexSerial] = true
		n, _ := new(big.Int).SetString(hexSerial, 16)
		key := string(intBytes(n))
		seq := r.seq.Add(1)
		if withdraw {
			r.install(key, &entry{seq: seq}) // tombstone: no longer served from the cache
		}
		items = append(items, item{hex: hexSerial, key: key, seq: seq})
	}
	d := r.del.Load()
	if d == nil {
		return 0, errors.Join(errs...) // not started: Start will read the store
	}
	// One read for the page where the store can (a page of the change feed under issuance load would
	// otherwise queue hundreds of reads behind the requests'); else one per serial.
	var batch map[string]ca.CertRecord
	if bs, ok := r.cfg.Store.(batchReader); ok && len(items) > 1 {
		hexes := make([]string, len(items))
		for i, it := range items {
			hexes[i] = it.hex
		}
		var err error
		if batch, err = bs.CertificatesBySerial(ctx, hexes); err != nil {
			return 0, errors.Join(append(errs, fmt.Errorf("revocation: OCSP update: %w", err))...)
		}
	}
	var keep []ca.OCSPRecord // responses already in the cache, to store
	todo := items[:0]
	for _, it := range items {
		var rec ca.CertRecord
		var err error
		if batch != nil {
			var ok bool
			if rec, ok = batch[it.hex]; !ok {
				err = ca.ErrNotFound
			}
		} else {
			rec, err = r.cfg.Store.Certificate(ctx, it.hex)
		}
		if errors.Is(err, ca.ErrNotFound) {
			r.remove(it.key, it.seq)
			r.withdraw(it.hex, time.Time{})
			continue
		}
		if err != nil {
			// The sink keeps what it has: this node cannot tell whether it is out of date (another node that
			// read the record may already have written the new responses there). The caller retries.
			errs = append(errs, fmt.Errorf("revocation: OCSP update %s: %w", it.hex, err))
			continue
		}
		now := r.cfg.Now()
		if !cacheable(rec, now) {
			r.remove(it.key, it.seq)
			r.withdraw(it.hex, time.Time{})
			continue
		}
		if withdraw {
			// Responses of an older version of the record leave the sink before the new ones are signed: if
			// signing fails, a static server answers nothing rather than the previous status.
			r.withdraw(it.hex, rec.UpdatedAt)
		}
		if !withdraw && r.fresh(d, rec, now) {
			r.mu.RLock()
			e := r.cache[it.key]
			r.mu.RUnlock()
			if e != nil && e.valid && e.gen == d.gen {
				keep = append(keep, record(d, rec, e))
				continue
			}
		}
		if r.adopt(ctx, d, rec, it.key, it.seq, now) {
			continue // the responses another node signed for this change
		}
		it.rec = rec
		todo = append(todo, it)
	}
	now := r.cfg.Now()
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	out := make([]ca.OCSPRecord, len(todo))
	werrs := make([]error, len(todo))
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(todo) {
					return
				}
				e, err := r.fill(d, todo[i].rec, todo[i].seq, now)
				if err != nil {
					werrs[i] = fmt.Errorf("revocation: OCSP update %s: %w", todo[i].hex, err)
					continue
				}
				out[i] = record(d, todo[i].rec, e)
			}
		}()
	}
	wg.Wait()
	done := keep
	for i, o := range out {
		if werrs[i] != nil {
			errs = append(errs, werrs[i])
		} else {
			done = append(done, o)
		}
	}
	r.persist(ctx, done)
	return len(keep), errors.Join(errs...)
}

// Refresh walks every certificate in the store and (re-)signs the responses that are missing, whose
// nextUpdate is less than RefreshBefore away, that an older responder certificate signed, or whose status
// differs from the store's (a revocation recorded by another instance); with force, all of them. Entries
// of expired certificates are dropped. Signing is spread over GOMAXPROCS goroutines.
func (r *Responder) Refresh(ctx context.Context, force bool) error {
	d := r.del.Load()
	if d == nil {
		return ErrNotReady
	}
	workers := runtime.GOMAXPROCS(0)
	after := ""
	for {
		seq := r.seq.Add(1)
		recs, err := r.cfg.Store.Certificates(ctx, ca.CertFilter{Limit: refreshPage, After: after})
		if err != nil {
			return fmt.Errorf("revocation: OCSP refresh: %w", err)
		}
		now := r.cfg.Now()
		var todo []ca.CertRecord
		for _, rec := range recs {
			after = rec.Serial
			if !cacheable(rec, now) {
				if rec.Status != ca.StatusPending {
					r.dropExpired(rec, seq)
				}
				continue
			}
			if !force && r.fresh(d, rec, now) {
				continue
			}
			todo = append(todo, rec)
		}
		if err := r.signAll(ctx, d, todo, seq, now, workers); err != nil {
			return err
		}
		if len(recs) < refreshPage {
			return nil
		}
	}
}

func (r *Responder) signAll(ctx context.Context, d *delegate, recs []ca.CertRecord, seq uint64, now time.Time, workers int) error {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		errs = make([]error, workers)
		out  = make([]ca.OCSPRecord, len(recs))
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(recs) || ctx.Err() != nil {
					return
				}
				e, err := r.fill(d, recs[i], seq, now)
				if err != nil {
					if errs[w] == nil {
						errs[w] = fmt.Errorf("revocation: OCSP refresh %s: %w", recs[i].Serial, err)
					}
					continue
				}
				out[i] = record(d, recs[i], e)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	done := out[:0]
	for _, o := range out {
		if o.Serial != "" {
			done = append(done, o)
		}
	}
	r.persist(ctx, done)
	return errors.Join(errs...)
}

// fresh reports whether rec's cached responses can stay as they are.
func (r *Responder) fresh(d *delegate, rec ca.CertRecord, now time.Time) bool {
	n, ok := new(big.Int).SetString(rec.Serial, 16)
	if !ok {
		return false
	}
	r.mu.RLock()
	e := r.cache[string(intBytes(n))]
	r.mu.RUnlock()
	if e == nil || !e.valid || e.gen != d.gen || e.s.nextUpdate.Sub(now) <= r.cfg.RefreshBefore {
		return false
	}
	want := r.singleFor(d, rec, true, now)
	// revocationTime is a GeneralizedTime in seconds: compare at that precision (responses loaded from the
	// database carry it so).
	return e.s.status == want.status && e.s.reason == want.reason &&
		e.s.revokedAt.Truncate(time.Second).Equal(want.revokedAt.Truncate(time.Second))
}

func (r *Responder) dropExpired(rec ca.CertRecord, seq uint64) {
	n, ok := new(big.Int).SetString(rec.Serial, 16)
	if !ok {
		return
	}
	if r.remove(string(intBytes(n)), seq) {
		r.withdraw(rec.Serial, time.Time{})
	}
}

// remove deletes the entry of key unless it comes from a store read later than seq, and reports whether it
// did.
func (r *Responder) remove(key string, seq uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.cache[key]; cur != nil && cur.seq <= seq {
		delete(r.cache, key)
		return true
	}
	return false
}
