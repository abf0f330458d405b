package ca

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/mohr-hix/mohr/internal/audit"
)

// This file holds the optional store capabilities several nodes on one database need: CRLs and pre-signed
// OCSP responses kept in the database, so that every node serves the same bytes. internal/store implements
// them; the in-memory fakes of tests need not.

// CRLRecord is one signed CRL of one shard as the store keeps it.
type CRLRecord struct {
	Shard      int
	Number     int64
	DER        []byte
	ThisUpdate time.Time
	NextUpdate time.Time
	// EntriesHash is SHA-256 over the revoked entries the CRL lists, so a node can tell whether a new CRL
	// would say anything the newest one does not.
	EntriesHash [32]byte
}

// CRLSignFunc signs shard's next CRL. latest is the newest stored CRL of the shard (nil for none), number
// the number the new CRL must carry and entries the shard's revoked entries, read in the same transaction.
// It returns the new CRL and the audit event recording it, or rec nil to keep latest (nothing is written).
type CRLSignFunc func(latest *CRLRecord, number int64, entries []RevokedEntry) (rec *CRLRecord, ev audit.Event, err error)

// CRLStore keeps CRLs in the database, for a CRL publisher shared by several nodes.
type CRLStore interface {
	// SignCRL, in one transaction, locks shard's CRL number, reads the shard's revoked entries whose NotAfter
	// is after notAfter, calls sign, and stores what it returns with its audit event. Concurrent calls for a
	// shard (from any node) run one after the other, so numbers strictly increase with what the CRLs list.
	// It returns the shard's CRL now current.
	SignCRL(ctx context.Context, shard int, notAfter time.Time, sign CRLSignFunc) (CRLRecord, error)
	// LatestCRL returns the newest stored CRL of shard, or ErrNotFound.
	LatestCRL(ctx context.Context, shard int) (CRLRecord, error)
}

// OCSPRecord holds the pre-signed OCSP responses of one certificate.
type OCSPRecord struct {
	Serial string
	Status Status
	// CertVersion is the UpdatedAt of the certificate record the responses were signed from: a store never
	// replaces responses with ones signed from an older version of the record.
	CertVersion time.Time
	ThisUpdate  time.Time
	NextUpdate  time.Time
	// DER holds the OCSPResponse for a SHA-1 CertID and for a SHA-256 CertID (nil if not pre-signed).
	DER [2][]byte
	// Responder is the SHA-256 of the responder certificate that signed them.
	Responder [32]byte
}

// OCSPStore keeps pre-signed OCSP responses in the database.
type OCSPStore interface {
	// PutOCSPResponses stores recs; a record whose CertVersion (then ThisUpdate) is older than the stored
	// one of its serial is skipped.
	PutOCSPResponses(ctx context.Context, recs []OCSPRecord) error
	// OCSPResponse returns the stored responses of serial, or ErrNotFound.
	OCSPResponse(ctx context.Context, serial string) (OCSPRecord, error)
	// OCSPResponses lists stored responses ordered by serial, after the serial after, at most limit.
	OCSPResponses(ctx context.Context, after string, limit int) ([]OCSPRecord, error)
	// DeleteOCSPResponse drops the stored responses of serial (an expired certificate).
	DeleteOCSPResponse(ctx context.Context, serial string) error
}

// CRLEntriesHash is what CRLRecord.EntriesHash holds: SHA-256 over each entry's serial, revocation time
// (microseconds) and reason, in order.
func CRLEntriesHash(entries []RevokedEntry) [32]byte {
	h := sha256.New()
	for _, e := range entries {
		var us int64
		if !e.RevokedAt.IsZero() {
			us = e.RevokedAt.UnixMicro()
		}
		fmt.Fprintf(h, "%s %d %d\n", e.Serial, us, e.Reason)
	}
	return [32]byte(h.Sum(nil))
}
