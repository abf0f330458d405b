package main

import (
	"context"
	"errors"

	"github.com/mohr-hix/mohr/api"
	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/ca/revocation"
	"github.com/mohr-hix/mohr/internal/audit"
)

// feedPage is how many audit entries one page of the revocation feed reads.
const feedPage = 500

// feedStore is what the revocation feed reads: the audit log (the one ordered record of every state change,
// shared by every node) and the certificate records.
type feedStore interface {
	AuditSize(ctx context.Context) (int64, error)
	AuditEntries(ctx context.Context, start int64, limit int) ([]audit.Entry, error)
	Certificate(ctx context.Context, serial string) (ca.CertRecord, error)
}

// revocationFeed implements api.RevocationFeed over the audit log: every issuance, revocation, hold and release
// is an audit event appended in the same transaction as the change, so the log's order is the order of the changes
// and a follower that polls it misses none.
type revocationFeed struct{ st feedStore }

// RevocationChanges implements api.RevocationFeed.
func (f revocationFeed) RevocationChanges(ctx context.Context, from int64, profile string) (api.RevocationChanges, error) {
	size, err := f.st.AuditSize(ctx)
	if err != nil {
		return api.RevocationChanges{}, err
	}
	if from < 0 || from >= size {
		return api.RevocationChanges{Next: max(size, from)}, nil
	}
	es, err := f.st.AuditEntries(ctx, from, feedPage)
	if err != nil {
		return api.RevocationChanges{}, err
	}
	page := api.RevocationChanges{Next: from}
	for _, e := range es {
		page.Next = e.Seq + 1
		switch e.Event.Kind {
		case "cert.issued", revocation.EventRevoked, revocation.EventHeld, revocation.EventReleased:
		default:
			continue
		}
		rec, err := f.st.Certificate(ctx, e.Event.Subject)
		if errors.Is(err, ca.ErrNotFound) {
			continue
		}
		if err != nil {
			return api.RevocationChanges{}, err
		}
		if profile != "" && rec.Profile != profile {
			continue
		}
		// The record's current state, not the event's: a follower that reads an old change gets today's
		// answer, which is the one it must act on.
		c := api.RevocationChange{Seq: e.Seq, Serial: rec.Serial, Status: string(rec.Status), NotAfter: rec.NotAfter}
		if rec.Status == ca.StatusRevoked || rec.Status == ca.StatusHeld {
			c.Reason, c.RevokedAt = rec.RevocationReason, rec.RevokedAt
		}
		page.Changes = append(page.Changes, c)
	}
	return page, nil
}
