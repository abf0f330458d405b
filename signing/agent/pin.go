package agent

import (
	"sync"
	"syscall"
)

// heldPIN keeps the session's PIN, and nothing else, in memory for as long as the session lasts, because the
// medical-council card's signing key is "PIN always" (every PSO: COMPUTE DIGITAL SIGNATURE needs its own
// VERIFY) and the card offers no multi-signature security environment. The bytes live in a page of their own,
// mlock'ed so they are never swapped, and are overwritten when the session ends. The PIN is never written to
// disk, logged, put in an error or handed to the EMR.
type heldPIN struct {
	mu   sync.Mutex
	page []byte // mmap'ed page; nil after wipe
	n    int
}

// maxPIN bounds what the agent accepts as a PIN (ISO/IEC 7816-4 cards take 4 to 8 bytes; PKCS#11 tokens more).
const maxPIN = 64

func newHeldPIN(pin []byte) (*heldPIN, error) {
	if len(pin) == 0 || len(pin) > maxPIN {
		return nil, ErrPINCancelled
	}
	page, err := syscall.Mmap(-1, 0, syscall.Getpagesize(), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		// No anonymous mapping: fall back to the heap (still wiped at the end).
		page = make([]byte, maxPIN)
	} else {
		_ = syscall.Mlock(page) // best effort: RLIMIT_MEMLOCK may forbid it
	}
	h := &heldPIN{page: page, n: copy(page, pin)}
	return h, nil
}

// copyOut returns a fresh copy of the PIN for one VERIFY; the caller clears it. ok is false after wipe.
func (h *heldPIN) copyOut() ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.page == nil {
		return nil, false
	}
	return append([]byte(nil), h.page[:h.n]...), true
}

// wipe overwrites the PIN and unmaps its page. Safe to call twice.
func (h *heldPIN) wipe() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.page == nil {
		return
	}
	clear(h.page)
	if len(h.page) == syscall.Getpagesize() {
		_ = syscall.Munlock(h.page)
		_ = syscall.Munmap(h.page)
	}
	h.page, h.n = nil, 0
}
