package audit

import (
	"crypto/sha256"
	"encoding/binary"

	"golang.org/x/mod/sumdb/tlog"
)

// Entry is one event in the log, at position Seq (0-based), chained to the entry before it.
type Entry struct {
	Seq   int64
	Event Event
	Prev  [32]byte // Hash of entry Seq-1; zero for entry 0
	Hash  [32]byte // EntryHash(Seq, Prev, CanonicalJSON(Event))
}

// entryDomain separates entry hashes from every other SHA-256 use, including the Merkle tree's leaf (0x00) and
// node (0x01) prefixes of RFC 6962 §2.1.
const entryDomain = "mohr.audit.entry.v1\x00"

// EntryHash is the chain hash of an entry: SHA-256 over the domain string "mohr.audit.entry.v1" and a zero
// byte, seq as 8 bytes big-endian, prev, then the canonical event bytes. Everything before the event has a
// fixed length, so the encoding is unambiguous.
func EntryHash(seq int64, prev [32]byte, canonical []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(entryDomain))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(seq))
	h.Write(n[:])
	h.Write(prev[:])
	h.Write(canonical)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Next returns the entry that follows prev (nil for the first entry of the log) and records ev.
func Next(prev *Entry, ev Event) (Entry, error) {
	c, err := CanonicalJSON(ev)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Event: ev}
	if prev != nil {
		e.Seq = prev.Seq + 1
		e.Prev = prev.Hash
	}
	e.Hash = EntryHash(e.Seq, e.Prev, c)
	return e, nil
}

// LeafHash is the Merkle tree leaf hash of ev: tlog.RecordHash of its canonical encoding (RFC 6962 §2.1,
// SHA-256(0x00 || data)). An auditor holding an event's canonical bytes checks an inclusion proof against it.
func LeafHash(ev Event) (tlog.Hash, error) {
	c, err := CanonicalJSON(ev)
	if err != nil {
		return tlog.Hash{}, err
	}
	return tlog.RecordHash(c), nil
}

// StoredHashes returns the hashes a store must keep, at indexes tlog.StoredHashIndex(0, seq) onwards, when ev
// becomes entry seq; r reads hashes stored for earlier entries (inside the same transaction).
func StoredHashes(seq int64, ev Event, r tlog.HashReader) ([]tlog.Hash, error) {
	h, err := LeafHash(ev)
	if err != nil {
		return nil, err
	}
	return tlog.StoredHashesForRecordHash(seq, h, r)
}
