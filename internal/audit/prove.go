package audit

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

func checkSize(ctx context.Context, src Source, treeSize int64) error {
	size, err := src.AuditSize(ctx)
	if err != nil {
		return err
	}
	if treeSize < 0 || treeSize > size {
		return fmt.Errorf("audit: tree size %d out of range (log size %d)", treeSize, size)
	}
	return nil
}

// TreeHash returns the root hash of the first treeSize entries of src (RFC 6962 §2.1).
func TreeHash(ctx context.Context, src Source, treeSize int64) (tlog.Hash, error) {
	if err := checkSize(ctx, src, treeSize); err != nil {
		return tlog.Hash{}, err
	}
	h, err := tlog.TreeHash(treeSize, HashReader(ctx, src))
	if err != nil {
		return tlog.Hash{}, fmt.Errorf("audit: tree hash: %w", err)
	}
	return h, nil
}

// Prove returns the inclusion proof (RFC 6962 §2.1.1) of entry seq in the tree of size treeSize. An auditor
// checks it with tlog.CheckRecord(proof, treeSize, root, seq, leaf), where root comes from a checkpoint of size
// treeSize and leaf is tlog.RecordHash of the entry's canonical encoding (LeafHash).
func Prove(ctx context.Context, src Source, seq, treeSize int64) (tlog.RecordProof, error) {
	if seq < 0 || seq >= treeSize {
		return nil, fmt.Errorf("audit: entry %d is not in a tree of size %d", seq, treeSize)
	}
	if err := checkSize(ctx, src, treeSize); err != nil {
		return nil, err
	}
	p, err := tlog.ProveRecord(treeSize, seq, HashReader(ctx, src))
	if err != nil {
		return nil, fmt.Errorf("audit: inclusion proof: %w", err)
	}
	return p, nil
}

// ProveConsistency returns the consistency proof (RFC 6962 §2.1.2) that the tree of size oldSize is a prefix of
// the tree of size newSize. An auditor checks it with tlog.CheckTree(proof, newSize, newRoot, oldSize, oldRoot),
// the roots taken from two checkpoints.
func ProveConsistency(ctx context.Context, src Source, oldSize, newSize int64) (tlog.TreeProof, error) {
	if oldSize < 1 || oldSize > newSize {
		return nil, fmt.Errorf("audit: no consistency proof from size %d to %d", oldSize, newSize)
	}
	if err := checkSize(ctx, src, newSize); err != nil {
		return nil, err
	}
	p, err := tlog.ProveTree(newSize, oldSize, HashReader(ctx, src))
	if err != nil {
		return nil, fmt.Errorf("audit: consistency proof: %w", err)
	}
	return p, nil
}
