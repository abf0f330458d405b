package agent

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/offline"
)

// maxPIN bounds what the agent accepts as a PIN (ISO/IEC 7816-4 cards take 4 to 8 bytes; PKCS#11 tokens more).
const maxPIN = 64

// Config configures an Agent. Key and PIN are required.
type Config struct {
	// Key opens the signing key (the card) for a session.
	Key KeyOpener
	// PIN asks the physician for the PIN (a terminal prompt, a PIN pad). It is called once per session and
	// never by the EMR; an error ends the attempt (ErrPINCancelled). It must not log or keep the PIN.
	PIN keys.PINFunc
	// Submitter, if set, sends each signed prescription to the exchange and returns its sealed report.
	Submitter Submitter
	// Audit, if set, records sessions and signatures; a failed write withholds the signature.
	Audit *Audit
	// Metrics, if set, receives stage timings and counters.
	Metrics *Metrics
	// MaxSignatures and MaxDuration bound comfort sessions: 250 and 24 h when zero, and never more.
	MaxSignatures int
	MaxDuration   time.Duration
	// MaxBatch bounds the documents of one batch call; MaxSignatures when zero.
	MaxBatch int
	// SubmitWorkers is how many submissions run while the card signs the next documents; 4 when zero.
	SubmitWorkers int
	// Notify, if set, is told when a session opens and ends (the terminal prompt shows it). It must not block.
	Notify func(SessionEvent)
	// CheckSigner, if set, checks the key's chain (signing certificate first) when a session opens, before
	// the PIN is asked: SignerPolicy.Check. A refusal (ErrSignerRefused) opens no session.
	CheckSigner func(chain []*x509.Certificate, now time.Time) error
	// Now is the clock for session limits, signing-time and the audit file; time.Now when nil. Stage
	// timings always use the monotonic wall clock.
	Now func() time.Time
}

// Agent signs documents with the physician's card, one session at a time. It is safe for concurrent use;
// signatures are serialised at the card.
type Agent struct {
	cfg Config
	now func() time.Time

	promptMu sync.Mutex // one PIN prompt at a time

	mu     sync.Mutex
	cur    *session
	closed bool
	// lastEnd is why the last comfort session ended, until a new one opens: a call that needs a session
	// learns "limit reached" or "time up" rather than a bare "no session".
	lastEnd *SessionEndedError
}

// New checks cfg and returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Key == nil || cfg.PIN == nil {
		return nil, errors.New("agent: Config needs Key and PIN")
	}
	if cfg.MaxSignatures == 0 {
		cfg.MaxSignatures = MaxSessionSignatures
	}
	if cfg.MaxDuration == 0 {
		cfg.MaxDuration = MaxSessionDuration
	}
	if cfg.MaxSignatures < 1 || cfg.MaxSignatures > MaxSessionSignatures || cfg.MaxDuration <= 0 || cfg.MaxDuration > MaxSessionDuration {
		return nil, fmt.Errorf("%w: at most %d signatures and %v", ErrBadLimits, MaxSessionSignatures, MaxSessionDuration)
	}
	if cfg.MaxBatch <= 0 || cfg.MaxBatch > cfg.MaxSignatures {
		cfg.MaxBatch = cfg.MaxSignatures
	}
	if cfg.SubmitWorkers <= 0 {
		cfg.SubmitWorkers = 4
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Agent{cfg: cfg, now: now}, nil
}

// Limits returns the configured session limits.
func (a *Agent) Limits() (maxSignatures int, maxDuration time.Duration) {
	return a.cfg.MaxSignatures, a.cfg.MaxDuration
}

// StartSession opens the card key, asks the physician for the PIN once, presents it to the card once
// (VERIFY) and wipes it, and opens a comfort session with the limits asked (clamped to the configured ones,
// and to the card's comfort-signature counter when it is lower). The session's signatures rely on the
// card's security status; the agent keeps no PIN. A wrong PIN is a *PINError with the tries left; it is not
// retried.
func (a *Agent) StartSession(ctx context.Context, o SessionOptions) (SessionInfo, error) {
	s, err := a.openSession(ctx, o, true)
	if err != nil {
		return SessionInfo{}, err
	}
	return s.info(a.now()), nil
}

func (a *Agent) openSession(ctx context.Context, o SessionOptions, comfort bool) (*session, error) {
	if o.MaxSignatures < 0 || o.Duration < 0 || o.MaxSignatures > a.cfg.MaxSignatures || o.Duration > a.cfg.MaxDuration {
		return nil, fmt.Errorf("%w: at most %d signatures and %v", ErrBadLimits, a.cfg.MaxSignatures, a.cfg.MaxDuration)
	}
	if o.MaxSignatures == 0 {
		o.MaxSignatures = a.cfg.MaxSignatures
	}
	if o.Duration == 0 {
		o.Duration = a.cfg.MaxDuration
	}
	a.promptMu.Lock()
	defer a.promptMu.Unlock()
	if s := a.current(); s != nil {
		return nil, ErrSessionActive
	}
	if a.isClosed() {
		return nil, ErrSessionEnded
	}
	// The key's PIN callback never hands out a PIN: the agent keeps none, so a card that asks for the PIN
	// again in the middle of a session (6982) ends the session instead of being answered.
	pinCB := func(context.Context, string) ([]byte, error) { return nil, ErrPINRequired }
	key, err := a.cfg.Key.OpenKey(ctx, pinCB)
	if err != nil {
		if errors.Is(err, ErrCardRemoved) || errors.Is(err, ErrCard) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrCard, err)
	}
	if key.Signer == nil || len(key.Chain) == 0 {
		closeKey(key)
		return nil, fmt.Errorf("%w: key without signer or certificate", ErrCard)
	}
	if a.cfg.CheckSigner != nil {
		if err := a.cfg.CheckSigner(key.Chain, a.now()); err != nil {
			closeKey(key)
			if !errors.Is(err, ErrSignerRefused) {
				err = &SignerError{Reason: err.Error(), Err: err}
			}
			_ = a.cfg.Audit.Append(AuditRecord{Event: "session-refused", Reason: err.Error()})
			return nil, err
		}
	}
	t0 := time.Now()
	pctx, pinOutcome := pinContext(ctx, o.MaxSignatures, o.Duration, key.Chain[0].Subject.CommonName) // pinrequest.go
	pin, err := a.cfg.PIN(pctx, "PIN of the signing card of "+key.Chain[0].Subject.CommonName)
	a.cfg.Metrics.observe(StagePINEntry, time.Since(t0))
	if err != nil || len(pin) == 0 || len(pin) > maxPIN {
		clear(pin)
		closeKey(key)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%w: %w", ErrPINCancelled, ctxErr)
		}
		switch {
		case errors.Is(err, ErrPINUnavailable):
			return nil, ErrPINUnavailable
		case errors.Is(err, ErrPINTimeout):
			return nil, ErrPINTimeout
		}
		return nil, ErrPINCancelled
	}
	// The PIN goes to the card once (VERIFY) and is wiped at once; the session relies on the card's
	// security status from here on.
	if key.CheckPIN != nil {
		err = key.CheckPIN(ctx, pin)
	}
	clear(pin)
	pinOutcome(err)
	if err == nil && key.ComfortLimit != nil {
		var n int
		if n, err = key.ComfortLimit(ctx); err == nil {
			switch {
			case n <= 0:
				err = ErrNoComfort
			case n < o.MaxSignatures:
				o.MaxSignatures = n // the card's counter is lower than the agent's limit: the card wins
			}
		}
	}
	if err != nil {
		closeKey(key)
		return nil, a.keyFailure(nil, "", err)
	}
	s := newSession(key, comfort, a.now(), o.MaxSignatures, o.Duration)

	a.mu.Lock()
	if a.cur != nil || a.closed {
		a.mu.Unlock()
		s.markEnded(EndShutdown, nil)
		s.closeIfIdle()
		return nil, ErrSessionActive
	}
	a.cur = s
	a.lastEnd = nil
	a.mu.Unlock()

	if err := a.cfg.Audit.Append(AuditRecord{Event: "session-start", Session: s.id, Signer: hex.EncodeToString(s.signerFP[:]), Count: 0,
		Reason: fmt.Sprintf("max %d signatures, %v, comfort=%v", s.max, o.Duration, comfort)}); err != nil {
		a.end(s, EndCardError, err)
		return nil, err
	}
	a.cfg.Metrics.sessionState(s.max)
	if a.cfg.Notify != nil && comfort {
		a.cfg.Notify(SessionEvent{Event: EventSessionOpened, Session: s.id, Max: s.max, Expires: s.expires})
	}
	// The removal watcher and the expiry timer; if the session already ended meanwhile, neither starts.
	s.mu.Lock()
	if s.ended == nil {
		if key.WaitRemoved != nil {
			wctx, stop := context.WithCancel(context.Background())
			s.stopWatch = stop
			go func() {
				if key.WaitRemoved(wctx) == nil {
					a.end(s, EndCardRemoved, ErrCardRemoved)
				}
			}()
		}
		s.timer = time.AfterFunc(o.Duration, func() { a.expireIfDue(s) })
	}
	s.mu.Unlock()
	return s, nil
}

// keyFailure turns a key error into the agent's error kinds, ending s for PIN failures and removal.
func (a *Agent) keyFailure(s *session, stage string, err error) error {
	if pe := pinError(err); pe != nil {
		a.cfg.Metrics.pinFailed()
		rec := AuditRecord{Event: "pin-failed", Reason: stage}
		if pe.Retries >= 0 {
			r := pe.Retries
			rec.RetriesLeft = &r
		}
		if s != nil {
			rec.Session = s.id
		}
		_ = a.cfg.Audit.Append(rec)
		if s != nil {
			a.end(s, EndPIN, pe)
		}
		return pe
	}
	if errors.Is(err, ErrCardRemoved) {
		if s != nil {
			a.end(s, EndCardRemoved, ErrCardRemoved)
		}
		return err
	}
	if errors.Is(err, ErrPINRequired) {
		// The card's security status is gone (counter out, reset, another card): end the session, never
		// ask or replay the PIN.
		if s != nil {
			a.end(s, EndCardStatus, ErrPINRequired)
			return &SessionEndedError{Reason: EndCardStatus, Cause: ErrPINRequired}
		}
		return err
	}
	if errors.Is(err, ErrSessionEnded) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, ErrCard) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrCard, err)
}

func (a *Agent) current() *session {
	a.mu.Lock()
	s := a.cur
	a.mu.Unlock()
	if s == nil {
		return nil
	}
	if a.expireIfDue(s) {
		return nil
	}
	s.mu.Lock()
	ended := s.ended != nil
	s.mu.Unlock()
	if ended {
		return nil
	}
	return s
}

func (a *Agent) isClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

// expireIfDue ends s if its time is up by the agent's clock, and reports whether it did or s had ended.
func (a *Agent) expireIfDue(s *session) bool {
	if !a.now().Before(s.expires) {
		a.end(s, EndExpired, ErrSessionExpired)
		return true
	}
	return false
}

// end ends s for reason: the key is closed (which logs the card out) as soon as no signature is running.
func (a *Agent) end(s *session, reason string, cause error) {
	if !s.markEnded(reason, cause) {
		return
	}
	a.mu.Lock()
	if a.cur == s {
		a.cur = nil
		if s.comfort && reason != EndByPhysician {
			s.mu.Lock()
			a.lastEnd = s.ended
			s.mu.Unlock()
		}
	}
	a.mu.Unlock()
	s.mu.Lock()
	used := s.used
	s.mu.Unlock()
	_ = a.cfg.Audit.Append(AuditRecord{Event: "session-end", Session: s.id, Signer: hex.EncodeToString(s.signerFP[:]), Count: used, Reason: reason})
	a.cfg.Metrics.sessionEnded(reason)
	if a.cfg.Notify != nil && s.comfort {
		a.cfg.Notify(SessionEvent{Event: EventSessionEnded, Session: s.id, Reason: reason, Used: used, Max: s.max, Expires: s.expires})
	}
	s.closeIfIdle()
}

// Session returns the open session, if any.
func (a *Agent) Session() (SessionInfo, bool) {
	s := a.current()
	if s == nil {
		return SessionInfo{}, false
	}
	return s.info(a.now()), true
}

// EndSession ends the open session (the physician's choice). ErrNoSession if none is open.
func (a *Agent) EndSession(ctx context.Context) (SessionInfo, error) {
	s := a.current()
	if s == nil {
		return SessionInfo{}, ErrNoSession
	}
	a.end(s, EndByPhysician, nil)
	return s.info(a.now()), nil
}

// Close ends any session and refuses new ones.
func (a *Agent) Close() error {
	a.mu.Lock()
	a.closed = true
	s := a.cur
	a.mu.Unlock()
	if s != nil {
		a.end(s, EndShutdown, nil)
		s.signMu.Lock()
		s.closeLocked()
		s.signMu.Unlock()
	}
	return nil
}

// Document is one prescription to sign: its bytes (a FHIR R4 Bundle in JSON) and the EMR's reference.
type Document struct {
	ID      string
	Content []byte
}

// Timings are the stages of one document (see the Stage constants).
type Timings struct {
	CardIO    time.Duration
	CardSign  time.Duration
	CMSBuild  time.Duration
	Submit    time.Duration
	Network   time.Duration
	Ingestion time.Duration
	Total     time.Duration
}

// Result is the outcome of one document.
type Result struct {
	Index int
	ID    string
	// Signature is the HIX-Rx-CAdES B-B (CMS SignedData, DER); nil if the document was not signed.
	Signature     []byte
	ContentSHA256 string
	// QR is the offline QR code's text (RX1:..., signing/offline) when SignOptions.QR asked for it: a COSE
	// payload signed on the card in the same session, naming the CAdES signature. QRErr says why it is
	// missing when asked for and the document is signed.
	QR    string
	QRErr error
	// Submission is the exchange's answer; nil when not submitted.
	Submission *Submission
	// Err says why the document was not signed (Signature nil) or not submitted (Signature set).
	Err     error
	Timings Timings
}

// SignOptions modify a signing call.
type SignOptions struct {
	// RequireSession refuses to ask for a PIN: without an open comfort session the call fails with
	// ErrNoSession.
	RequireSession bool
	// NoSubmit skips the submission to the exchange.
	NoSubmit bool
	// QR also signs the offline QR payload of each prescription on the card (one more card signature per
	// document, counted against the session: issue 17) and returns its text in Result.QR.
	QR bool
}

// signaturesPer is how many card signatures one document takes.
func (o SignOptions) signaturesPer() int {
	if o.QR {
		return 2
	}
	return 1
}

// Summary counts a batch's outcomes.
type Summary struct {
	Signed    int `json:"signed"`
	Submitted int `json:"submitted"` // stored at the exchange (2xx)
	Refused   int `json:"refused"`   // signed, refused by the exchange (4xx); not stored
	Unsent    int `json:"unsent"`    // signed, not stored: the exchange failed or could not be reached
	Failed    int `json:"failed"`    // not signed
	Passed    int `json:"passed"`
}

// Sign signs one document; see SignBatch.
func (a *Agent) Sign(ctx context.Context, doc Document, o SignOptions) (Result, error) {
	var res Result
	_, err := a.SignBatch(ctx, []Document{doc}, o, func(r Result) { res = r })
	if err != nil {
		return Result{}, err
	}
	return res, res.Err
}

// SignBatch signs docs in order, each with its own signature on the card, and submits each as soon as it is
// signed (while the card signs the next). It calls emit once per document, serially, as each finishes (not
// necessarily in order; Result.Index says which). With an open comfort session the documents count against
// it, and the batch is refused (ErrLimitReached) if fewer signatures are left than documents; without one the
// physician is asked for the PIN once for the whole batch, unless o.RequireSession. A card removed mid-batch
// ends the session: the documents already signed stay signed (and submitted), the rest fail with
// ErrSessionEnded. The error is for the call as a whole (nothing was signed).
func (a *Agent) SignBatch(ctx context.Context, docs []Document, o SignOptions, emit func(Result)) (Summary, error) {
	var sum Summary
	if len(docs) == 0 || len(docs) > a.cfg.MaxBatch {
		return sum, fmt.Errorf("%w: 1 to %d documents", ErrBadRequest, a.cfg.MaxBatch)
	}
	for i, d := range docs {
		if len(d.Content) == 0 {
			return sum, fmt.Errorf("%w: document %d is empty", ErrBadRequest, i)
		}
	}
	need := len(docs) * o.signaturesPer()
	s := a.current()
	ephemeral := false
	if s != nil && !s.comfort {
		// Another call's one-off session: its PIN entry is for its own documents only.
		return sum, fmt.Errorf("%w: another signing call is running", ErrSessionActive)
	}
	if s == nil {
		if o.RequireSession {
			a.mu.Lock()
			last := a.lastEnd
			a.mu.Unlock()
			if last != nil {
				return sum, last
			}
			return sum, ErrNoSession
		}
		var err error
		if need > a.cfg.MaxSignatures {
			return sum, fmt.Errorf("%w: %d card signatures needed, at most %d per PIN entry", ErrLimitReached, need, a.cfg.MaxSignatures)
		}
		if s, err = a.openSession(withDocuments(ctx, docs), SessionOptions{MaxSignatures: need}, false); err != nil {
			return sum, err
		}
		ephemeral = true
		if s.max < need {
			// The card allows fewer signatures after one VERIFY than the batch needs.
			a.end(s, EndLimit, ErrLimitReached)
			return sum, fmt.Errorf("%w: the card allows %d signatures per PIN entry, %d needed for %d documents", ErrLimitReached, s.max, need, len(docs))
		}
	} else {
		s.mu.Lock()
		left := s.max - s.used
		s.mu.Unlock()
		if left < need {
			return sum, fmt.Errorf("%w: %d signatures left in the session, %d needed for %d documents", ErrLimitReached, left, need, len(docs))
		}
	}
	if ephemeral {
		defer a.end(s, EndBatchDone, nil)
	}

	var emitMu sync.Mutex
	out := func(r Result) {
		emitMu.Lock()
		defer emitMu.Unlock()
		switch {
		case r.Signature == nil:
			sum.Failed++
			a.cfg.Metrics.result("failed")
		case r.Submission != nil:
			sum.Signed++
			sum.Submitted++
			if r.Submission.Indication == string(signing.TotalPassed) {
				sum.Passed++
			}
			a.cfg.Metrics.result("submitted")
		case errors.Is(r.Err, ErrRefused):
			sum.Signed++
			sum.Refused++
			a.cfg.Metrics.result("refused")
		case errors.Is(r.Err, ErrSubmit):
			sum.Signed++
			sum.Unsent++
			a.cfg.Metrics.result("unsent")
		default:
			sum.Signed++
			a.cfg.Metrics.result("signed")
		}
		a.cfg.Metrics.observe(StageTotal, r.Timings.Total)
		if emit != nil {
			emit(r)
		}
	}
	submit := a.cfg.Submitter != nil && !o.NoSubmit
	sem := make(chan struct{}, a.cfg.SubmitWorkers)
	var wg sync.WaitGroup
	for i, d := range docs {
		start := time.Now()
		r := Result{Index: i, ID: d.ID}
		dg := sha256.Sum256(d.Content)
		r.ContentSHA256 = hex.EncodeToString(dg[:])
		var seq uint64
		r.Signature, r.QR, r.QRErr, seq, r.Err = a.signOne(ctx, s, d.Content, dg, o.QR, &r.Timings)
		if r.Err != nil {
			r.Timings.Total = time.Since(start)
			out(r)
			continue
		}
		// The audit record is synced, and the document submitted, while the card signs the next one.
		sem <- struct{}{}
		wg.Add(1)
		go func(r Result) {
			defer func() { <-sem; wg.Done() }()
			t0 := time.Now()
			if err := a.cfg.Audit.SyncTo(seq); err != nil {
				a.end(s, EndCardError, err)
				r.Signature, r.Err = nil, err
			} else if submit {
				r.Timings.CMSBuild += time.Since(t0)
				a.submitOne(ctx, s, &r)
			} else {
				r.Timings.CMSBuild += time.Since(t0)
			}
			a.cfg.Metrics.observe(StageCMSBuild, r.Timings.CMSBuild)
			r.Timings.Total = time.Since(start)
			out(r)
		}(r)
	}
	wg.Wait()
	return sum, nil
}

// timedSigner measures the key's Sign call (the card I/O of one signature).
type timedSigner struct {
	crypto.Signer
	d time.Duration
}

func (t *timedSigner) Sign(r io.Reader, digest []byte, o crypto.SignerOpts) ([]byte, error) {
	t0 := time.Now()
	sig, err := t.Signer.Sign(r, digest, o)
	t.d += time.Since(t0)
	return sig, err
}

// signOne makes one signature in s: checks the limits, signs on the card, writes the audit record and ends
// the session when its limit is reached. The caller syncs the record (Audit.SyncTo(seq)) before it releases
// the signature; the signature is withheld if the record cannot be written or synced.
func (a *Agent) signOne(ctx context.Context, s *session, content []byte, digest [32]byte, withQR bool, t *Timings) (cms []byte, qr string, qrErr error, seq uint64, err error) {
	cms, qr, qrErr, seq, err = a.signOneQR(ctx, s, content, digest, withQR, t)
	return
}

func (a *Agent) signOneQR(ctx context.Context, s *session, content []byte, digest [32]byte, withQR bool, t *Timings) ([]byte, string, error, uint64, error) {
	per := 1
	if withQR {
		per = 2
	}
	if err := ctx.Err(); err != nil {
		return nil, "", nil, 0, err
	}
	s.signMu.Lock()
	defer func() {
		s.closeLocked()
		s.signMu.Unlock()
	}()
	if a.expireIfDue(s) {
		s.mu.Lock()
		e := s.ended
		s.mu.Unlock()
		return nil, "", nil, 0, e
	}
	s.mu.Lock()
	if s.ended != nil {
		e := s.ended
		s.mu.Unlock()
		return nil, "", nil, 0, e
	}
	if s.used+per > s.max {
		s.mu.Unlock()
		a.end(s, EndLimit, ErrLimitReached)
		return nil, "", nil, 0, &SessionEndedError{Reason: EndLimit, Cause: ErrLimitReached}
	}
	s.mu.Unlock()

	ts := &timedSigner{Signer: s.key.Signer}
	t0 := time.Now()
	now := a.now
	if s.key.SigningTime != nil { // a remote key whose activation covers data to be signed made at that time
		now = s.key.SigningTime
	}
	cms, err := signing.Sign(ctx, content, signing.SignOptions{Signer: ts, Chain: s.key.Chain, Now: now})
	build := time.Since(t0)
	t.CardIO = ts.d
	if s.key.CardTime != nil {
		t.CardSign = s.key.CardTime()
	}
	if err != nil {
		return nil, "", nil, 0, a.keyFailure(s, "sign", err)
	}
	s.mu.Lock()
	s.used++
	s.mu.Unlock()
	var qr string
	var qrErr error
	if withQR {
		// The offline QR payload names this CAdES signature (its content and signature digests) and is signed
		// on the card in the same session: the second card signature of this prescription (issue 17).
		var p *offline.Payload
		if p, qrErr = offline.FromPrescription(content, cms); qrErr == nil {
			t0 := time.Now()
			d0 := ts.d
			qr, qrErr = offline.Encode(ctx, p, ts, s.key.Chain)
			t.CardIO += ts.d - d0
			build += time.Since(t0) - (ts.d - d0)
			if s.key.CardTime != nil {
				t.CardSign += s.key.CardTime()
			}
			if qrErr != nil {
				if kerr := a.keyFailure(s, "sign-qr", qrErr); errors.Is(kerr, ErrSessionEnded) || errors.Is(kerr, ErrCardRemoved) || pinError(qrErr) != nil {
					qrErr = kerr
				}
			} else {
				s.mu.Lock()
				s.used++
				s.mu.Unlock()
			}
		}
	}
	sigSum := sha256.Sum256(cms)
	s.mu.Lock()
	used, left := s.used, s.max-s.used
	s.mu.Unlock()
	t1 := time.Now()
	seq, aerr := a.cfg.Audit.write(AuditRecord{Event: "sign", Session: s.id, Signer: hex.EncodeToString(s.signerFP[:]),
		DocumentSHA256: hex.EncodeToString(digest[:]), SignatureSHA256: hex.EncodeToString(sigSum[:]), Count: used})
	t.CMSBuild = build - ts.d + time.Since(t1)
	a.cfg.Metrics.observe(StageCardIO, t.CardIO)
	a.cfg.Metrics.observe(StageCardSign, t.CardSign)
	if aerr != nil {
		a.end(s, EndCardError, aerr)
		return nil, "", nil, 0, aerr
	}
	if left == 0 && s.comfort {
		a.end(s, EndLimit, ErrLimitReached)
	} else if s.comfort {
		a.cfg.Metrics.sessionState(left)
	}
	return cms, qr, qrErr, seq, nil
}

// submitOne sends r's signature to the exchange and records the outcome, with the exchange's HTTP status, in
// the audit file. Only a prescription the exchange stored becomes r.Submission; a refusal or a failure is
// r.Err (a *SubmitError), so nothing is reported as submitted that the exchange did not store.
func (a *Agent) submitOne(ctx context.Context, s *session, r *Result) {
	t0 := time.Now()
	sub, err := a.cfg.Submitter.Submit(ctx, r.Signature)
	r.Timings.Submit = time.Since(t0)
	sigSum := sha256.Sum256(r.Signature)
	rec := AuditRecord{Session: s.id, DocumentSHA256: r.ContentSHA256, SignatureSHA256: hex.EncodeToString(sigSum[:])}
	if err == nil && sub == nil {
		err = &SubmitError{Reason: "the submitter returned no answer"}
	}
	if err != nil {
		var se *SubmitError
		if !errors.As(err, &se) {
			se = &SubmitError{Reason: "the exchange could not be reached", cause: err}
			err = se
		}
		r.Err = err
		rec.Event, rec.Reason, rec.HTTPStatus, rec.Attempts = "submit-failed", clip(se.Error(), 200), se.Status, se.Attempts
		if se.Refused {
			rec.Event, rec.Indication = "submit-refused", se.Indication
		}
		_ = a.cfg.Audit.Append(rec)
		return
	}
	r.Submission = sub
	r.Timings.Ingestion = sub.Ingestion
	r.Timings.Network = r.Timings.Submit - sub.Ingestion
	a.cfg.Metrics.observe(StageNetwork, r.Timings.Network)
	a.cfg.Metrics.observe(StageIngestion, r.Timings.Ingestion)
	rec.Event, rec.Indication, rec.HTTPStatus, rec.Attempts = "submit", sub.Indication, sub.Status, sub.Attempts
	_ = a.cfg.Audit.Append(rec)
}

// MarshalJSON writes durations in milliseconds.
func (t Timings) MarshalJSON() ([]byte, error) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return json.Marshal(map[string]float64{
		"cardIoMs": ms(t.CardIO), "cardSignMs": ms(t.CardSign), "cmsBuildMs": ms(t.CMSBuild),
		"submitMs": ms(t.Submit), "networkMs": ms(t.Network), "ingestionMs": ms(t.Ingestion), "totalMs": ms(t.Total),
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (t *Timings) UnmarshalJSON(b []byte) error {
	var m map[string]float64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	d := func(k string) time.Duration { return time.Duration(m[k] * float64(time.Millisecond)) }
	*t = Timings{CardIO: d("cardIoMs"), CardSign: d("cardSignMs"), CMSBuild: d("cmsBuildMs"), Submit: d("submitMs"),
		Network: d("networkMs"), Ingestion: d("ingestionMs"), Total: d("totalMs")}
	return nil
}

// Session events for Config.Notify.
const (
	EventSessionOpened = "opened"
	EventSessionEnded  = "ended"
)

// SessionEvent is a comfort session opening or ending.
type SessionEvent struct {
	Event   string // EventSessionOpened or EventSessionEnded
	Session string
	Reason  string // why it ended (the End* reasons)
	Used    int
	Max     int
	Expires time.Time
}
