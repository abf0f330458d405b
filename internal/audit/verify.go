package audit

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// BadEntryError reports the first problem Verify found. Seq is the entry at fault: the first entry that is
// missing, out of place or altered. For a checkpoint that is forged, badly signed or disagrees with the log,
// Seq is the last entry the checkpoint covers (its tree size minus one) and Reason names the checkpoint.
type BadEntryError struct {
	Seq    int64
	Reason string
}

func (e *BadEntryError) Error() string {
	return fmt.Sprintf("audit: entry %d: %s", e.Seq, e.Reason)
}

// VerifyResult describes a log that verified.
type VerifyResult struct {
	Size        int64     // number of entries
	Root        tlog.Hash // Merkle tree root of all entries
	Head        [32]byte  // chain hash of the last entry; zero for an empty log
	Checkpoints int       // signed checkpoints checked
	Latest      tlog.Tree // the largest checkpoint; zero if there is none
}

// verifyBatch is how many entries Verify asks the Source for at a time.
const verifyBatch = 1000

// Verify reads every entry of src in order, recomputes the hash chain and the Merkle tree, and checks every
// stored checkpoint: its signature by vkey (a note verifier key), its origin, and that its root equals the
// recomputed tree at its size. It also checks that the store's size and every stored tree hash agree with the
// entries, so that the proofs Prove serves hold. On the first problem, in log order, it returns a
// *BadEntryError; other errors (a failed read) are returned as they are.
//
// Verify keeps O(log n) hashes in memory, whatever the size of the log.
func Verify(ctx context.Context, src Source, vkey string) (*VerifyResult, error) {
	return VerifyKeys(ctx, src, []string{vkey})
}

// VerifyKeys is Verify for a log whose checkpoint key changed over its history: vkeys are the verifier keys
// the auditor trusts, and each checkpoint must be signed by one of them that was valid at the checkpoint's
// size according to the log itself. The log records key changes as events: EventKeyActivated (data
// {"vkey": ...}) makes a key valid for the checkpoints that include the event; EventKeyRetired ends it for
// the checkpoints that include that event. A checkpoint signed by a key the log never activated is refused,
// even when the auditor trusts that key, so a stolen retired key, or one smuggled into the trusted list,
// cannot vouch for any of the history. Checkpoints made before the log's first key event (logs written
// before keys were recorded) must be signed by the key of its first activation, the key those logs ran
// with; a log that records no key at all is checked against the trusted keys alone.
func VerifyKeys(ctx context.Context, src Source, vkeys []string) (*VerifyResult, error) {
	if len(vkeys) == 0 {
		return nil, errors.New("audit: no verifier key")
	}
	var vs []note.Verifier
	byHash := map[[2]any]string{} // (name, key hash) -> vkey
	for _, k := range vkeys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, fmt.Errorf("audit: verifier key: %w", err)
		}
		vs = append(vs, v)
		byHash[[2]any{v.Name(), v.KeyHash()}] = k
	}
	msgs, err := src.AuditCheckpoints(ctx)
	if err != nil {
		return nil, err
	}
	// The log's size, read after the checkpoints (so none of them covers more) and before the entries: nodes
	// keep appending while an auditor verifies, and the log as of this size is what is verified.
	size, err := src.AuditSize(ctx)
	if err != nil {
		return nil, err
	}
	type checkpoint struct {
		size int64
		tree tlog.Tree
		key  string // the vkey that signed it
		err  error
	}
	cps := make([]checkpoint, 0, len(msgs))
	for _, m := range msgs {
		tree, key, err := openCheckpointAny(m, vs, byHash)
		if err != nil {
			n, ok := peekCheckpointSize(m)
			if !ok {
				return nil, &BadEntryError{Seq: -1, Reason: fmt.Sprintf("unreadable checkpoint: %v", err)}
			}
			cps = append(cps, checkpoint{size: n, err: err})
			continue
		}
		cps = append(cps, checkpoint{size: tree.N, tree: tree, key: key})
	}
	keys := keyHistory{valid: map[string]bool{}}
	sort.SliceStable(cps, func(i, j int) bool { return cps[i].size < cps[j].size })

	res := &VerifyResult{}
	var early []checkpoint // checkpoints before the first key event
	checkEarly := func() error {
		for _, cp := range early {
			if strings.TrimSpace(cp.key) != keys.first {
				return &BadEntryError{Seq: cp.size - 1, Reason: fmt.Sprintf("checkpoint of size %d: made before the log recorded its keys, "+
					"signed by a key other than the first one the log activated", cp.size)}
			}
		}
		early = nil
		return nil
	}
	var tb treeBuilder
	var prev *Entry
	next := 0 // index of the next checkpoint to check
	checkCheckpoints := func() error {
		for ; next < len(cps) && cps[next].size == tb.n; next++ {
			cp := cps[next]
			bad := &BadEntryError{Seq: cp.size - 1}
			switch {
			case cp.err != nil:
				bad.Reason = fmt.Sprintf("checkpoint of size %d: %v", cp.size, cp.err)
			case cp.tree.Hash != tb.root():
				bad.Reason = fmt.Sprintf("checkpoint of size %d: root %v does not match the log (%v)", cp.size, cp.tree.Hash, tb.root())
			case !keys.allows(cp.key):
				bad.Reason = fmt.Sprintf("checkpoint of size %d: signed by a key the log had not activated or had retired by then", cp.size)
			case !keys.any:
				// Before the first key event: the key is judged once the log names its first key.
				early = append(early, cp)
				res.Checkpoints++
				res.Latest = cp.tree
				continue
			default:
				res.Checkpoints++
				res.Latest = cp.tree
				continue
			}
			return bad
		}
		return nil
	}
	if err := checkCheckpoints(); err != nil {
		return nil, err
	}
	for tb.n < size {
		batch, err := src.AuditEntries(ctx, tb.n, int(min(verifyBatch, size-tb.n)))
		if err != nil {
			return nil, err
		}
		if len(batch) == 0 {
			break
		}
		// The stored tree hashes of the entries this batch should hold, to compare with the recomputed ones.
		lo, hi := tlog.StoredHashIndex(0, tb.n), tlog.StoredHashIndex(0, tb.n+int64(len(batch)))
		indexes := make([]int64, 0, hi-lo)
		for x := lo; x < hi; x++ {
			indexes = append(indexes, x)
		}
		stored, err := src.AuditHashes(ctx, indexes)
		perEntry := errors.Is(err, ErrMissingHash) // find the first entry whose hashes are missing
		if err != nil && !perEntry {
			return nil, err
		}
		for i := range batch {
			e := &batch[i]
			seq := tb.n
			switch {
			case e.Seq > seq:
				return nil, &BadEntryError{Seq: seq, Reason: fmt.Sprintf("entry missing (the next stored entry is %d)", e.Seq)}
			case e.Seq < seq:
				return nil, &BadEntryError{Seq: seq, Reason: fmt.Sprintf("entries out of order (entry %d follows entry %d)", e.Seq, seq-1)}
			}
			calc, err := Next(prev, e.Event)
			if err != nil {
				return nil, &BadEntryError{Seq: seq, Reason: fmt.Sprintf("event cannot be encoded: %v", err)}
			}
			if e.Prev != calc.Prev {
				return nil, &BadEntryError{Seq: seq, Reason: "previous-entry hash does not match: an entry before it was removed, reordered or rewritten"}
			}
			if e.Hash != calc.Hash {
				return nil, &BadEntryError{Seq: seq, Reason: "entry hash does not match its event: the entry was altered"}
			}
			leaf, _ := LeafHash(e.Event) // Next succeeded, so the event encodes
			want := tb.add(leaf)
			off := tlog.StoredHashIndex(0, seq) - lo // where the entry's hashes start in stored
			got := stored
			if perEntry {
				got, err = src.AuditHashes(ctx, indexes[off:off+int64(len(want))])
				if err != nil && !errors.Is(err, ErrMissingHash) {
					return nil, err
				}
				off = 0
			}
			for k, h := range want {
				if x := off + int64(k); x >= int64(len(got)) || got[x] != h {
					return nil, &BadEntryError{Seq: seq, Reason: "the stored Merkle tree hashes of the entry are missing or wrong"}
				}
			}
			prev = &calc
			if keys.see(e.Event) && len(early) > 0 {
				if err := checkEarly(); err != nil {
					return nil, err
				}
			}
			if err := checkCheckpoints(); err != nil {
				return nil, err
			}
		}
	}
	for _, cp := range cps[next:] {
		if cp.err != nil {
			return nil, &BadEntryError{Seq: cp.size - 1, Reason: fmt.Sprintf("checkpoint of size %d: %v", cp.size, cp.err)}
		}
	}
	if next < len(cps) {
		return nil, &BadEntryError{Seq: tb.n, Reason: fmt.Sprintf("entry missing: checkpoint of size %d covers entries beyond the end of the log (size %d)", cps[next].size, tb.n)}
	}
	if size != tb.n {
		return nil, &BadEntryError{Seq: tb.n, Reason: fmt.Sprintf("the store records %d entries but holds %d", size, tb.n)}
	}
	res.Size = tb.n
	res.Root = tb.root()
	if prev != nil {
		res.Head = prev.Hash
	}
	return res, nil
}

// treeBuilder computes RFC 6962 tree hashes incrementally, keeping only the roots of the complete subtrees
// (at most log2(n)+1 hashes) instead of every stored hash.
type treeBuilder struct {
	n     int64
	nodes []tlog.Hash // roots of the complete subtrees, largest first
}

// add appends a leaf and returns the hashes tlog.StoredHashes returns for it: the leaf, then the root of each
// complete subtree the leaf closes.
func (b *treeBuilder) add(leaf tlog.Hash) []tlog.Hash {
	h := leaf
	stored := []tlog.Hash{h}
	// Entry n closes one complete subtree per trailing one bit of n.
	for k := b.n; k&1 == 1; k >>= 1 {
		last := len(b.nodes) - 1
		h = tlog.NodeHash(b.nodes[last], h)
		b.nodes = b.nodes[:last]
		stored = append(stored, h)
	}
	b.nodes = append(b.nodes, h)
	b.n++
	return stored
}

// root returns the tree hash of the entries added so far; for none, SHA-256 of the empty string, as
// RFC 6962 §2.1 and tlog.TreeHash define it.
func (b *treeBuilder) root() tlog.Hash {
	if len(b.nodes) == 0 {
		return sha256.Sum256(nil)
	}
	h := b.nodes[len(b.nodes)-1]
	for i := len(b.nodes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(b.nodes[i], h)
	}
	return h
}

// Audit events that record the checkpoint key's history (VerifyKeys).
const (
	EventKeyActivated = "audit.key.activated"
	EventKeyRetired   = "audit.key.retired"
)

// KeyEventData is the data of EventKeyActivated and EventKeyRetired.
type KeyEventData struct {
	VKey string `json:"vkey"`
}

// keyHistory follows the key events of the entries read so far.
type keyHistory struct {
	any   bool   // a key event was seen
	first string // the key of the first activation; "" if the first key event was a retirement
	valid map[string]bool
}

// see follows ev and reports whether it was the log's first key event.
func (h *keyHistory) see(ev Event) bool {
	if ev.Kind != EventKeyActivated && ev.Kind != EventKeyRetired {
		return false
	}
	var d KeyEventData
	if json.Unmarshal(ev.Data, &d) != nil || d.VKey == "" {
		return false
	}
	k := strings.TrimSpace(d.VKey)
	wasFirst := !h.any
	if wasFirst && ev.Kind == EventKeyActivated {
		h.first = k
	}
	h.any = true
	h.valid[k] = ev.Kind == EventKeyActivated
	return wasFirst
}

func (h *keyHistory) allows(vkey string) bool {
	return !h.any || h.valid[strings.TrimSpace(vkey)]
}

// openCheckpointAny verifies msg with any of vs and returns its tree and the vkey that signed it.
func openCheckpointAny(msg []byte, vs []note.Verifier, byHash map[[2]any]string) (tlog.Tree, string, error) {
	n, err := note.Open(msg, note.VerifierList(vs...))
	if err != nil {
		return tlog.Tree{}, "", fmt.Errorf("audit: checkpoint signature: %w", err)
	}
	for _, sig := range n.Sigs {
		k, ok := byHash[[2]any{sig.Name, sig.Hash}]
		if !ok {
			continue
		}
		tree, err := parseCheckpoint(n.Text, sig.Name)
		if err != nil {
			return tlog.Tree{}, "", err
		}
		return tree, k, nil
	}
	return tlog.Tree{}, "", errors.New("audit: checkpoint signature: no trusted signature")
}
