package audit

import (
	"context"
	"errors"

	"golang.org/x/mod/sumdb/tlog"
)

// Source is a stored audit log, as Verify, Prove and ProveConsistency read it. internal/store implements it.
type Source interface {
	// AuditSize returns the number of entries the store says the log holds.
	AuditSize(ctx context.Context) (int64, error)
	// AuditEntries returns at most limit entries with Seq >= start, in Seq order. A stored entry that cannot be
	// decoded is reported as a *BadEntryError.
	AuditEntries(ctx context.Context, start int64, limit int) ([]Entry, error)
	// AuditCheckpoints returns every stored signed checkpoint, ordered by tree size.
	AuditCheckpoints(ctx context.Context) ([][]byte, error)
	// AuditHashes returns the stored Merkle tree hashes at indexes (see tlog.StoredHashIndex), in that order.
	// If one is not stored, the error wraps ErrMissingHash.
	AuditHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
}

// ErrMissingHash is wrapped by a Source's AuditHashes when a requested hash is not stored.
var ErrMissingHash = errors.New("audit: stored hash missing")

// hashReader adapts a Source to tlog.HashReader, which has no context.
type hashReader struct {
	ctx context.Context
	src Source
}

func (r hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	return r.src.AuditHashes(r.ctx, indexes)
}

// HashReader returns a tlog.HashReader over src's stored hashes that uses ctx for every read.
func HashReader(ctx context.Context, src Source) tlog.HashReader { return hashReader{ctx, src} }
