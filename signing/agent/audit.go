package agent

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// AuditRecord is one line of the agent's local audit file. It holds digests and outcomes only: never a PIN,
// never document content. Prev is the hex SHA-256 of the previous line's bytes (without its newline), so
// removing, reordering or editing a line breaks the chain (VerifyAudit finds it).
type AuditRecord struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Prev string    `json:"prev"`
	// Event: session-start, session-end, session-refused, sign, sign-failed, submit (stored at the exchange), submit-refused
	// (the exchange refused it: nothing stored), submit-failed (no answer or a 5xx after retries), pin-failed.
	Event   string `json:"event"`
	Session string `json:"session,omitempty"`
	// Signer is the hex SHA-256 of the signing certificate.
	Signer string `json:"signer,omitempty"`
	// DocumentSHA256 is the digest of the signed content; SignatureSHA256 of the CMS SignedData.
	DocumentSHA256  string `json:"documentSha256,omitempty"`
	SignatureSHA256 string `json:"signatureSha256,omitempty"`
	Count           int    `json:"count,omitempty"` // signatures made in the session so far
	Indication      string `json:"indication,omitempty"`
	Reason          string `json:"reason,omitempty"`
	RetriesLeft     *int   `json:"retriesLeft,omitempty"`
	// HTTPStatus is the exchange's answer to a submission (0: none came); Attempts how often it was sent.
	HTTPStatus int `json:"httpStatus,omitempty"`
	Attempts   int `json:"attempts,omitempty"`
}

// Audit appends records to a JSON-lines file opened for append only; each record is written and synced
// before the operation it records is reported done. It is safe for concurrent use.
type Audit struct {
	mu   sync.Mutex
	f    *os.File
	seq  uint64
	prev [32]byte
	now  func() time.Time
	sync bool

	syncMu sync.Mutex
	synced uint64 // records known to be on disk; guarded by syncMu
}

// OpenAudit opens (creating, mode 0600) the audit file at path and continues its chain. It fails if the
// existing file's chain does not verify. now is the clock; time.Now when nil.
func OpenAudit(path string, now func() time.Time) (*Audit, error) {
	if now == nil {
		now = time.Now
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAudit, err)
	}
	a := &Audit{f: f, now: now, sync: true}
	n, last, err := verifyChain(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	a.seq, a.prev = n, last
	return a, nil
}

// SetSync turns the fsync after each record on (the default) or off (for benchmarks of the rest).
func (a *Audit) SetSync(on bool) { a.mu.Lock(); a.sync = on; a.mu.Unlock() }

// Close closes the file.
func (a *Audit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}

// Append writes r (Seq, Time and Prev are set here) and syncs the file.
func (a *Audit) Append(r AuditRecord) error {
	seq, err := a.write(r)
	if err != nil {
		return err
	}
	return a.SyncTo(seq)
}

// write appends r without syncing and returns its sequence number. A caller must SyncTo it before it reports
// the recorded operation done; the agent does so while the card makes the next signature (group commit).
func (a *Audit) write(r AuditRecord) (uint64, error) {
	if a == nil {
		return 0, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	r.Seq = a.seq + 1
	r.Time = a.now().UTC()
	r.Prev = hex.EncodeToString(a.prev[:])
	line, err := json.Marshal(&r)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrAudit, err)
	}
	if _, err := a.f.Write(append(line, '\n')); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrAudit, err)
	}
	a.seq, a.prev = r.Seq, sha256.Sum256(line)
	return r.Seq, nil
}

// SyncTo makes sure record seq and all before it are on disk (one fsync covers every record written so far).
func (a *Audit) SyncTo(seq uint64) error {
	if a == nil {
		return nil
	}
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	if a.synced >= seq {
		return nil
	}
	a.mu.Lock()
	cur, on := a.seq, a.sync
	a.mu.Unlock()
	if on {
		if err := a.f.Sync(); err != nil {
			return fmt.Errorf("%w: %w", ErrAudit, err)
		}
	}
	a.synced = cur
	return nil
}

// ErrAuditChain: the audit file's hash chain or numbering is broken.
var ErrAuditChain = errors.New("agent: audit chain broken")

// VerifyAudit checks the hash chain and numbering of an audit file and returns the number of records.
func VerifyAudit(r io.Reader) (uint64, error) {
	n, _, err := verifyChain(r)
	return n, err
}

func verifyChain(r io.Reader) (uint64, [32]byte, error) {
	var prev [32]byte
	var n uint64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			return n, prev, fmt.Errorf("%w: empty line after record %d", ErrAuditChain, n)
		}
		var rec AuditRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			return n, prev, fmt.Errorf("%w: record %d: %v", ErrAuditChain, n+1, err)
		}
		if rec.Seq != n+1 || rec.Prev != hex.EncodeToString(prev[:]) {
			return n, prev, fmt.Errorf("%w at record %d", ErrAuditChain, n+1)
		}
		n, prev = rec.Seq, sha256.Sum256(line)
	}
	if err := sc.Err(); err != nil {
		return n, prev, fmt.Errorf("%w: %w", ErrAudit, err)
	}
	return n, prev, nil
}
