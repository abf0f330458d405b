package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mohr-hix/mohr/internal/audit"
)

// memLog is an in-memory audit.Source, built the way the stores build theirs.
type memLog struct {
	entries []audit.Entry
	hashes  []tlog.Hash
	cps     [][]byte
}

func (m *memLog) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(m.hashes)) {
				return nil, fmt.Errorf("no hash %d: %w", x, audit.ErrMissingHash)
			}
			out[i] = m.hashes[x]
		}
		return out, nil
	})
}

func (m *memLog) append(t *testing.T, ev audit.Event) {
	t.Helper()
	var prev *audit.Entry
	if n := len(m.entries); n > 0 {
		prev = &m.entries[n-1]
	}
	e, err := audit.Next(prev, ev)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := audit.StoredHashes(e.Seq, ev, m.reader())
	if err != nil {
		t.Fatal(err)
	}
	if tlog.StoredHashIndex(0, e.Seq) != int64(len(m.hashes)) {
		t.Fatalf("stored hash index %d, have %d", tlog.StoredHashIndex(0, e.Seq), len(m.hashes))
	}
	m.entries = append(m.entries, e)
	m.hashes = append(m.hashes, hs...)
}

func (m *memLog) checkpoint(t *testing.T, cp *audit.Checkpointer) {
	t.Helper()
	n := int64(len(m.entries))
	h, err := tlog.TreeHash(n, m.reader())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cp.Sign(tlog.Tree{N: n, Hash: h})
	if err != nil {
		t.Fatal(err)
	}
	m.cps = append(m.cps, msg)
}

func (m *memLog) AuditSize(context.Context) (int64, error) { return int64(len(m.entries)), nil }

func (m *memLog) AuditEntries(_ context.Context, start int64, limit int) ([]audit.Entry, error) {
	var out []audit.Entry
	for _, e := range m.entries {
		if e.Seq >= start && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (m *memLog) AuditCheckpoints(context.Context) ([][]byte, error) { return m.cps, nil }

func (m *memLog) AuditHashes(_ context.Context, idx []int64) ([]tlog.Hash, error) {
	return m.reader().ReadHashes(idx)
}

var t0 = time.Date(2026, 11, 25, 21, 0, 0, 123456789, time.UTC)

func event(i int) audit.Event {
	return audit.Event{
		Time:    t0.Add(time.Duration(i) * time.Second),
		Kind:    "cert.issued",
		Actor:   "system",
		Subject: fmt.Sprintf("%x", 1000+i),
		Data:    json.RawMessage(fmt.Sprintf(`{ "n": %d }`, i)),
	}
}

func newCheckpointer(t *testing.T, name string) (*audit.Checkpointer, string) {
	t.Helper()
	skey, vkey, err := audit.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.NewCheckpointer(name, s)
	if err != nil {
		t.Fatal(err)
	}
	return cp, vkey
}

func TestCanonicalJSON(t *testing.T) {
	tehran := time.FixedZone("IRST", 3*3600+1800)
	ev := audit.Event{
		Time:    t0.In(tehran),
		Kind:    "cert.revoked",
		Actor:   "cli:root",
		Subject: "<1a>",
		Data:    json.RawMessage("{\n  \"reason\": 1,\n  \"note\": \"x y\"\n}"),
	}
	got, err := audit.CanonicalJSON(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-11-25T21:00:00.123456789Z","kind":"cert.revoked","actor":"cli:root","subject":"\u003c1a\u003e","data":{"reason":1,"note":"x y"}}`
	if string(got) != want {
		t.Fatalf("CanonicalJSON:\n got %s\nwant %s", got, want)
	}
	back, err := audit.ParseEvent(got)
	if err != nil {
		t.Fatal(err)
	}
	again, err := audit.CanonicalJSON(back)
	if err != nil || !bytes.Equal(again, got) {
		t.Fatalf("round trip: %s, %v", again, err)
	}

	noData := audit.Event{Time: t0, Kind: "ca.start"}
	c1, _ := audit.CanonicalJSON(noData)
	noData.Data = json.RawMessage("null")
	c2, _ := audit.CanonicalJSON(noData)
	if !bytes.Equal(c1, c2) || !strings.HasSuffix(string(c1), `"subject":"","data":null}`) {
		t.Fatalf("nil and null data: %s, %s", c1, c2)
	}
	back, err = audit.ParseEvent(c1)
	if err != nil || back.Data != nil {
		t.Fatalf("ParseEvent null data: %q, %v", back.Data, err)
	}

	for _, tc := range []struct {
		name string
		ev   audit.Event
	}{
		{"no kind", audit.Event{Time: t0}},
		{"no time", audit.Event{Kind: "k"}},
		{"bad data", audit.Event{Time: t0, Kind: "k", Data: json.RawMessage(`{"a":`)}},
		{"bad utf8", audit.Event{Time: t0, Kind: "k", Actor: "\xff"}},
		{"year", audit.Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Kind: "k"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := audit.CanonicalJSON(tc.ev); err == nil {
				t.Fatal("no error")
			}
			if _, err := audit.Next(nil, tc.ev); err == nil {
				t.Fatal("Next: no error")
			}
		})
	}
	if _, err := audit.ParseEvent([]byte(`{"time":"2026-01-01T00:00:00Z","kind":"k","extra":1}`)); err == nil {
		t.Fatal("ParseEvent accepted an unknown field")
	}
}

func TestChain(t *testing.T) {
	e0, err := audit.Next(nil, event(0))
	if err != nil {
		t.Fatal(err)
	}
	if e0.Seq != 0 || e0.Prev != [32]byte{} {
		t.Fatalf("first entry: %+v", e0)
	}
	e1, _ := audit.Next(&e0, event(1))
	if e1.Seq != 1 || e1.Prev != e0.Hash || e1.Hash == e0.Hash {
		t.Fatalf("second entry: %+v", e1)
	}
	c, _ := audit.CanonicalJSON(event(1))
	if audit.EntryHash(1, e0.Hash, c) != e1.Hash || audit.EntryHash(2, e0.Hash, c) == e1.Hash {
		t.Fatal("EntryHash does not bind seq and prev")
	}
}

func TestTreeMatchesTlog(t *testing.T) {
	// Verify's incremental tree must agree with tlog at every size; checkpoints at every size exercise it.
	cp, vkey := newCheckpointer(t, "test")
	m := &memLog{}
	m.checkpoint(t, cp)
	for i := 0; i < 70; i++ {
		m.append(t, event(i))
		m.checkpoint(t, cp)
	}
	res, err := audit.Verify(context.Background(), m, vkey)
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != 70 || res.Checkpoints != 71 || res.Latest.N != 70 || res.Head != m.entries[69].Hash {
		t.Fatalf("result: %+v", res)
	}
	want, _ := tlog.TreeHash(70, m.reader())
	if res.Root != want {
		t.Fatal("root differs from tlog.TreeHash")
	}
}

func TestCheckpointSigners(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := audit.NewSigner("hix", priv)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := note.NewEd25519VerifierKey(audit.Origin("hix"), pub)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(vkey)
	if s.Name() != "mohr.audit/hix" || s.KeyHash() != v.KeyHash() {
		t.Fatalf("signer %s %08x, verifier %s %08x", s.Name(), s.KeyHash(), v.Name(), v.KeyHash())
	}
	cp, err := audit.NewCheckpointer("hix", s)
	if err != nil {
		t.Fatal(err)
	}
	tree := tlog.Tree{N: 5, Hash: tlog.RecordHash([]byte("x"))}
	msg, err := cp.Sign(tree)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(msg), "mohr.audit/hix\n5\n"+tree.Hash.String()+"\n\n— mohr.audit/hix ") {
		t.Fatalf("checkpoint:\n%s", msg)
	}
	got, err := audit.OpenCheckpoint(msg, vkey)
	if err != nil || got != tree {
		t.Fatalf("OpenCheckpoint: %+v, %v", got, err)
	}

	// Another key, another name, a wrong origin.
	_, other := newCheckpointer(t, "hix")
	if _, err := audit.OpenCheckpoint(msg, other); err == nil {
		t.Fatal("verified with another key")
	}
	if _, err := audit.NewCheckpointer("other", s); err == nil {
		t.Fatal("NewCheckpointer accepted a key with another name")
	}
	for _, bad := range []string{"", "a b", "a+b"} {
		if _, err := audit.NewSigner(bad, priv); err == nil {
			t.Fatalf("NewSigner accepted name %q", bad)
		}
	}
	if _, _, err := audit.GenerateKey("a b"); err == nil {
		t.Fatal("GenerateKey accepted a bad name")
	}
}

func TestProofs(t *testing.T) {
	ctx := context.Background()
	m := &memLog{}
	for i := 0; i < 37; i++ {
		m.append(t, event(i))
	}
	for _, size := range []int64{1, 2, 7, 8, 9, 36, 37} {
		root, err := audit.TreeHash(ctx, m, size)
		if err != nil {
			t.Fatal(err)
		}
		for seq := int64(0); seq < size; seq++ {
			p, err := audit.Prove(ctx, m, seq, size)
			if err != nil {
				t.Fatal(err)
			}
			leaf, _ := audit.LeafHash(m.entries[seq].Event)
			if err := tlog.CheckRecord(p, size, root, seq, leaf); err != nil {
				t.Fatalf("CheckRecord(%d in %d): %v", seq, size, err)
			}
			other, _ := audit.LeafHash(event(1000))
			if tlog.CheckRecord(p, size, root, seq, other) == nil {
				t.Fatal("CheckRecord accepted another leaf")
			}
		}
		for old := int64(1); old <= size; old++ {
			oldRoot, _ := audit.TreeHash(ctx, m, old)
			p, err := audit.ProveConsistency(ctx, m, old, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckTree(p, size, root, old, oldRoot); err != nil {
				t.Fatalf("CheckTree(%d -> %d): %v", old, size, err)
			}
		}
	}
	if _, err := audit.Prove(ctx, m, 37, 37); err == nil {
		t.Fatal("proved an entry outside the tree")
	}
	if _, err := audit.Prove(ctx, m, 0, 38); err == nil {
		t.Fatal("proved in a tree larger than the log")
	}
	if _, err := audit.ProveConsistency(ctx, m, 5, 4); err == nil {
		t.Fatal("proved consistency backwards")
	}
}

func TestVerifyTamper(t *testing.T) {
	ctx := context.Background()
	cp, vkey := newCheckpointer(t, "hix")
	build := func() *memLog {
		m := &memLog{}
		for i := 0; i < 10; i++ {
			m.append(t, event(i))
			if i == 4 || i == 9 {
				m.checkpoint(t, cp)
			}
		}
		return m
	}
	if _, err := audit.Verify(ctx, build(), vkey); err != nil {
		t.Fatalf("untouched log: %v", err)
	}
	forger, _ := newCheckpointer(t, "hix")

	for _, tc := range []struct {
		name   string
		tamper func(m *memLog)
		seq    int64
		reason string
	}{
		{"altered event", func(m *memLog) { m.entries[3].Event.Actor = "mallory" }, 3, "altered"},
		{"altered data", func(m *memLog) { m.entries[6].Event.Data = json.RawMessage(`{"n":7}`) }, 6, "altered"},
		{"removed", func(m *memLog) { m.entries = append(m.entries[:2], m.entries[3:]...) }, 2, "missing"},
		{"swapped", func(m *memLog) {
			m.entries[2], m.entries[5] = m.entries[5], m.entries[2]
			m.entries[2].Seq, m.entries[5].Seq = 2, 5
		}, 2, "previous-entry hash"},
		{"rewritten chain", func(m *memLog) {
			// The forger recomputes every chain hash from entry 7 on, but not the tree.
			m.entries[7].Event.Actor = "mallory"
			for i := 7; i < 10; i++ {
				e, _ := audit.Next(&m.entries[i-1], m.entries[i].Event)
				m.entries[i] = e
			}
		}, 7, "stored Merkle"},
		{"rewritten chain and tree", func(m *memLog) {
			// The forger rebuilds the chain and the tree from entry 7 on; only the checkpoint at size 10 notices.
			evs := make([]audit.Event, 10)
			for i := range evs {
				evs[i] = m.entries[i].Event
			}
			evs[7].Actor = "mallory"
			m.entries, m.hashes = nil, nil
			for _, ev := range evs {
				m.append(t, ev)
			}
		}, 9, "does not match the log"},
		{"truncated", func(m *memLog) { m.entries = m.entries[:8] }, 8, "beyond the end"},
		{"forged checkpoint", func(m *memLog) {
			h, _ := tlog.TreeHash(8, m.reader())
			msg, _ := forger.Sign(tlog.Tree{N: 8, Hash: h})
			m.cps = append(m.cps, msg)
		}, 7, "checkpoint of size 8"},
		{"edited checkpoint", func(m *memLog) {
			m.cps[0] = bytes.Replace(m.cps[0], []byte("\n5\n"), []byte("\n4\n"), 1)
		}, 3, "checkpoint of size 4"},
		{"stored hash", func(m *memLog) { m.hashes[3][0] ^= 1 }, 2, "stored Merkle"},
		{"stored hash missing", func(m *memLog) { m.hashes = m.hashes[:10] }, 6, "stored Merkle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := build()
			tc.tamper(m)
			_, err := audit.Verify(ctx, m, vkey)
			var bad *audit.BadEntryError
			if !errors.As(err, &bad) {
				t.Fatalf("Verify: %v, want *BadEntryError", err)
			}
			if bad.Seq != tc.seq || !strings.Contains(bad.Reason, tc.reason) {
				t.Fatalf("Verify: %v, want entry %d (%s)", bad, tc.seq, tc.reason)
			}
		})
	}
}

func TestVerifyBatches(t *testing.T) {
	// More entries than Verify reads at once, with problems beyond the first batch.
	ctx := context.Background()
	cp, vkey := newCheckpointer(t, "hix")
	m := &memLog{}
	for i := 0; i < 2345; i++ {
		m.append(t, event(i))
		if i == 999 || i == 1000 || i == 2344 {
			m.checkpoint(t, cp)
		}
	}
	res, err := audit.Verify(ctx, m, vkey)
	if err != nil || res.Size != 2345 || res.Checkpoints != 3 {
		t.Fatalf("Verify: %+v, %v", res, err)
	}
	hashes := slices.Clone(m.hashes)
	m.hashes = m.hashes[:tlog.StoredHashIndex(0, 1500)]
	var bad *audit.BadEntryError
	if _, err := audit.Verify(ctx, m, vkey); !errors.As(err, &bad) || bad.Seq != 1500 {
		t.Fatalf("missing hashes from 1500: %v", err)
	}
	m.hashes = hashes
	m.entries[2001].Event.Kind = "x"
	if _, err := audit.Verify(ctx, m, vkey); !errors.As(err, &bad) || bad.Seq != 2001 {
		t.Fatalf("altered 2001: %v", err)
	}
}

// growingLog appends entries (and a checkpoint) each time Verify reads a batch: nodes keep writing while an
// auditor verifies.
type growingLog struct {
	*memLog
	t     *testing.T
	cp    *audit.Checkpointer
	reads *int
}

func (g growingLog) AuditEntries(ctx context.Context, start int64, limit int) ([]audit.Entry, error) {
	es, err := g.memLog.AuditEntries(ctx, start, limit)
	if *g.reads++; *g.reads <= 3 {
		for i := 0; i < 7; i++ {
			g.append(g.t, event(len(g.entries)))
		}
		g.checkpoint(g.t, g.cp)
	}
	return es, err
}

// TestVerifyWhileAppending: a log that grows during verification verifies as of the size read at the start
// (before, Verify compared the entries it had read with the size at the end and called the log broken).
func TestVerifyWhileAppending(t *testing.T) {
	ctx := context.Background()
	cp, vkey := newCheckpointer(t, "hix")
	m := &memLog{}
	for i := 0; i < 2100; i++ {
		m.append(t, event(i))
		if i == 999 {
			m.checkpoint(t, cp)
		}
	}
	res, err := audit.Verify(ctx, growingLog{m, t, cp, new(int)}, vkey)
	if err != nil || res.Size != 2100 || res.Checkpoints != 1 {
		t.Fatalf("Verify of a growing log: %+v, %v", res, err)
	}
	// Still fail closed: a head that records more entries than the log holds is a truncation.
	m.entries = m.entries[:2000]
	var bad *audit.BadEntryError
	if _, err := audit.Verify(ctx, truncated{m, 2100}, vkey); !errors.As(err, &bad) || bad.Seq != 2000 {
		t.Fatalf("truncated log: %v", err)
	}
}

type truncated struct {
	*memLog
	size int64
}

func (x truncated) AuditSize(context.Context) (int64, error) { return x.size, nil }
