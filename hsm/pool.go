package hsm

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/mohr-hix/mohr/keys"
)

// DefaultSessions is the size of a token's session pool when the Opener's MaxSessions is zero.
const DefaultSessions = 2

// maxAttempts bounds how often one operation is tried when the module loses its sessions.
const maxAttempts = 6

// session is one open PKCS#11 session (PKCS#11 v2.40 section 5.6) and the pool generation it
// belongs to. Sessions of an older generation are dropped, never closed: after C_Finalize or a
// token removal their handle numbers may have been given to someone else.
type session struct {
	h   pkcs11.SessionHandle
	gen uint64
}

// tokenFilter selects a token by the RFC 7512 token attributes; the label is required.
type tokenFilter struct {
	label, serial, manufacturer, model string
}

func (f tokenFilter) matches(ti pkcs11.TokenInfo) bool {
	return ti.Label == f.label &&
		(f.serial == "" || ti.SerialNumber == f.serial) &&
		(f.manufacturer == "" || ti.ManufacturerID == f.manufacturer) &&
		(f.model == "" || ti.Model == f.model)
}

// pool holds up to size sessions with one token. PKCS#11 sessions are not safe for concurrent use
// (PKCS#11 v2.40 section 5.1.4: one operation at a time per session), so each goroutine borrows a
// session for one operation. Login state is per application and token (section 5.6), so the pool
// logs in once and again only after the module loses its state.
type pool struct {
	mod  *module
	tok  tokenFilter
	sem  chan struct{} // one token per session in use
	done chan struct{} // closed by close

	mu       sync.Mutex
	idle     []session
	gen      uint64 // sessions from an older generation are dropped
	modGen   uint64 // module generation the sessions were opened under
	slot     uint
	haveSlot bool
	loggedIn bool
	failed   *failedLogin
	closed   bool

	// epoch changes whenever object handles may have become invalid; keys look their objects up again.
	epoch atomic.Uint64

	keygen sync.Mutex // serialises the existence check and the creation of objects

	macKey [32]byte // keys the PIN fingerprint of a refused login; never leaves the process
}

// failedLogin remembers a refused C_Login by a keyed fingerprint of the PIN, so that the same wrong
// PIN is never presented to the token twice.
type failedLogin struct {
	mac [32]byte
	err error
}

func newPool(mod *module, tok tokenFilter, size int) *pool {
	if size <= 0 {
		size = DefaultSessions
	}
	p := &pool{mod: mod, tok: tok, sem: make(chan struct{}, size), done: make(chan struct{}), modGen: mod.gen.Load()}
	rand.Read(p.macKey[:])
	return p
}

// acquire borrows a session, opening one (and logging in, if login is set) when none is idle. It
// waits for a free session until ctx is done.
//
// With check set (on retries after a lost session), an idle session is confirmed with
// C_GetSessionInfo before it is handed out, so that a retry does not land on another dead session.
func (p *pool) acquire(ctx context.Context, u *URI, login, check bool) (session, error) {
	if err := ctx.Err(); err != nil {
		return session{}, err
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return session{}, ctx.Err()
	case <-p.done:
		return session{}, ErrClosed
	}
	s, err := p.take(ctx, u, login, check)
	if err != nil {
		<-p.sem
	}
	return s, err
}

func (p *pool) take(ctx context.Context, u *URI, login, check bool) (session, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return session{}, ErrClosed
	}
	if g := p.mod.gen.Load(); g != p.modGen {
		p.resetLocked()
		p.modGen = g
	}
	var s session
	found := false
	for n := len(p.idle); n > 0 && !found; n-- {
		s = p.idle[n-1]
		p.idle = p.idle[:n-1]
		found = !check
		if check {
			_, err := p.mod.p.GetSessionInfo(s.h)
			found = err == nil
		}
	}
	if !found {
		var err error
		if s, err = p.openLocked(ctx); err != nil {
			return session{}, err
		}
	}
	if login && !p.loggedIn {
		if err := p.loginLocked(ctx, s, u); err != nil {
			p.putLocked(s, err)
			return session{}, err
		}
	}
	return s, nil
}

// release returns a session after one operation; err is the operation's error, which decides whether
// the session is still usable.
func (p *pool) release(s session, err error) {
	p.mu.Lock()
	p.putLocked(s, err)
	p.mu.Unlock()
	<-p.sem
}

func (p *pool) putLocked(s session, err error) {
	r := classifyRV(rv(err))
	if r == recoverLogin {
		p.loggedIn = false
	}
	switch {
	case p.closed || rv(err) == pkcs11.CKR_OPERATION_ACTIVE && s.gen == p.gen:
		// A session left with an operation under way is alive but unusable: close it.
		p.mod.p.CloseSession(s.h)
	case s.gen != p.gen || r >= recoverSession:
		// Dropped without C_CloseSession: the handle is dead or belongs to a past generation.
	default:
		p.idle = append(p.idle, s)
	}
}

// resetLocked forgets every session, the slot and the login state.
func (p *pool) resetLocked() {
	p.gen++
	p.idle = nil
	p.haveSlot = false
	p.loggedIn = false
	p.epoch.Add(1)
}

// openLocked opens a read/write session with the token, finding its slot by label first.
func (p *pool) openLocked(ctx context.Context) (session, error) {
	if err := ctx.Err(); err != nil {
		return session{}, err
	}
	if !p.haveSlot {
		slot, err := p.findSlotLocked()
		if err != nil {
			return session{}, err
		}
		p.slot, p.haveSlot = slot, true
	}
	h, err := p.mod.p.OpenSession(p.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if rv(err) == pkcs11.CKR_TOKEN_WRITE_PROTECTED {
		h, err = p.mod.p.OpenSession(p.slot, pkcs11.CKF_SERIAL_SESSION)
	}
	if err != nil {
		return session{}, rvError("C_OpenSession", err)
	}
	return session{h: h, gen: p.gen}, nil
}

// findSlotLocked finds the one slot whose token matches the filter (PKCS#11 v2.40 section 5.5
// C_GetSlotList with tokenPresent, then C_GetTokenInfo).
func (p *pool) findSlotLocked() (uint, error) {
	slots, err := p.mod.p.GetSlotList(true)
	if err != nil {
		return 0, rvError("C_GetSlotList", err)
	}
	var found []uint
	for _, sl := range slots {
		ti, err := p.mod.p.GetTokenInfo(sl)
		if err != nil {
			continue // the token went away between the two calls
		}
		if p.tok.matches(ti) {
			found = append(found, sl)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("%w: no token labelled %q in %s", ErrTokenNotFound, p.tok.label, p.mod.path)
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("%w: %d tokens labelled %q", ErrAmbiguous, len(found), p.tok.label)
}

// loginLocked logs the user in (C_Login with CKU_USER) with the PIN u names. A PIN the token refused
// once is not presented again until the PIN source yields a different PIN.
func (p *pool) loginLocked(ctx context.Context, s session, u *URI) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if u == nil || !u.HasPIN() {
		return fmt.Errorf("%w: the key URI has no pin-source", ErrPINSource)
	}
	pin, err := u.readPIN()
	if err != nil {
		return err
	}
	m := hmac.New(sha256.New, p.macKey[:])
	m.Write(pin)
	var mac [32]byte
	m.Sum(mac[:0])
	if p.failed != nil && hmac.Equal(p.failed.mac[:], mac[:]) {
		clear(pin)
		return p.failed.err
	}
	err = p.mod.p.Login(s.h, pkcs11.CKU_USER, string(pin))
	clear(pin)
	var le *LoginError
	switch rv(err) {
	case pkcs11.CKR_OK, pkcs11.CKR_USER_ALREADY_LOGGED_IN:
		if err == nil || rv(err) == pkcs11.CKR_USER_ALREADY_LOGGED_IN {
			p.loggedIn, p.failed = true, nil
			return nil
		}
		return rvError("C_Login", err)
	case pkcs11.CKR_PIN_INCORRECT:
		le = &LoginError{Token: p.tok.label, Err: fmt.Errorf("%w (%w)", keys.ErrPINIncorrect, err)}
	case pkcs11.CKR_PIN_LOCKED:
		le = &LoginError{Token: p.tok.label, Err: fmt.Errorf("%w (%w)", keys.ErrPINBlocked, err)}
	default:
		if classify(err) != recoverNone {
			// The session or the module went away; that says nothing about the PIN.
			return rvError("C_Login", err)
		}
		le = &LoginError{Token: p.tok.label, Err: err}
	}
	p.failed = &failedLogin{mac: mac, err: le}
	return le
}

// recover prepares the pool for another attempt after err, and reports whether one is worth making.
// It never retries a refused login. attempt counts from zero; later attempts wait a little, so that a
// token being re-inserted has time to appear.
func (p *pool) recover(ctx context.Context, err error, attempt int) bool {
	r := classify(err)
	if r == recoverNone || attempt+1 >= maxAttempts {
		return false
	}
	switch r {
	case recoverHandle:
		p.epoch.Add(1)
	case recoverSession:
		p.mu.Lock()
		p.loggedIn = false
		p.epoch.Add(1)
		p.probeIdleLocked()
		p.mu.Unlock()
	case recoverSlot:
		p.mu.Lock()
		p.resetLocked()
		p.mu.Unlock()
	case recoverModule:
		p.mu.Lock()
		seen := p.modGen
		p.mu.Unlock()
		if err := p.mod.reinit(seen); err != nil {
			return false
		}
	}
	if r < recoverSlot || attempt == 0 {
		// Lost sessions, login state or handles are rebuilt at once; only a token or module that
		// went away deserves a pause before the next attempt.
		return ctx.Err() == nil
	}
	t := time.NewTimer(min(time.Duration(attempt*attempt)*25*time.Millisecond, 250*time.Millisecond))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// probeIdleLocked keeps the idle sessions that C_GetSessionInfo still knows and drops the rest.
func (p *pool) probeIdleLocked() {
	kept := p.idle[:0]
	for _, s := range p.idle {
		if _, err := p.mod.p.GetSessionInfo(s.h); err == nil {
			kept = append(kept, s)
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
}

// close waits for the operations under way, then closes the pool's sessions. Later operations fail
// with ErrClosed.
func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	for range cap(p.sem) {
		p.sem <- struct{}{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.idle {
		if s.gen == p.gen {
			p.mod.p.CloseSession(s.h)
		}
	}
	p.idle = nil
}

// do runs op with a borrowed session, recovering from lost sessions and retrying up to maxAttempts
// times. op must be safe to repeat.
func (p *pool) do(ctx context.Context, u *URI, login bool, op func(s session) error) error {
	for attempt := 0; ; attempt++ {
		s, err := p.acquire(ctx, u, login, attempt > 0)
		if err == nil {
			err = op(s)
			p.release(s, err)
			if err == nil {
				return nil
			}
		}
		if !p.recover(ctx, err, attempt) {
			return err
		}
	}
}
