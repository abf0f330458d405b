// Package audit is Mohr's tamper-evident audit log: an append-only sequence of events, each hash-chained to the
// one before it and each a leaf of an RFC 6962 Merkle tree (golang.org/x/mod/sumdb/tlog), with checkpoints in
// the signed-note format (golang.org/x/mod/sumdb/note) so an auditor outside Mohr can check inclusion and
// consistency.
package audit

import (
	"encoding/json"
	"time"
)

// Event is one thing that happened: an issuance, a revocation, a CA operation, a signature.
type Event struct {
	Time    time.Time       `json:"time"`              // UTC
	Kind    string          `json:"kind"`              // e.g. "cert.intent", "cert.issued", "cert.revoked"
	Actor   string          `json:"actor"`             // who asked: "cli:root", "api:operator:<serial>", "system"
	Subject string          `json:"subject,omitempty"` // what it is about: a serial, a SIAM ID
	Data    json.RawMessage `json:"data,omitempty"`    // kind-specific details; never a secret
}
