package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/ca/revocation"
	"github.com/mohr-hix/mohr/internal/audit"
)

// The certificate table and the audit log must tell the same story: every change of a certificate's state is
// written with its audit event in one transaction (ca.Store). A row changed behind Mohr's back (an UPDATE in
// the database, a restored backup) breaks that, and a hash chain over the log alone cannot see it. certState
// replays the log's certificate events into the state each serial must have now; crossCheckCertificates compares
// that with the table (WebTrust/ETSI EN 319 401 REQ-7.10: the records of issuance and revocation must be
// complete and tamper-evident, which for a table means reconciled against the signed log).

// certState is what the log says of one serial.
type certState struct {
	status ca.Status
	reason int    // for revoked and hold
	sha256 string // hex SHA-256 of the DER, from cert.issued
	seq    int64  // last event
}

// replayCertEvents applies the certificate events of entries to states.
func replayCertEvents(states map[string]*certState, entries []audit.Entry) {
	for _, e := range entries {
		ev := e.Event
		if !strings.HasPrefix(ev.Kind, "cert.") || ev.Subject == "" {
			continue
		}
		st := states[ev.Subject]
		if st == nil {
			st = &certState{}
		}
		var d struct {
			SHA256 string `json:"sha256"`
			Reason int    `json:"reason"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		switch ev.Kind {
		case "cert.intent":
			st.status = ca.StatusPending
		case "cert.issued":
			st.status, st.sha256 = ca.StatusIssued, d.SHA256
		case "cert.failed", "cert.abandoned":
			st.status = ca.StatusFailed
		case revocation.EventRevoked:
			st.status, st.reason = ca.StatusRevoked, d.Reason
		case revocation.EventHeld:
			st.status, st.reason = ca.StatusHeld, int(revocation.CertificateHold)
		case revocation.EventReleased:
			st.status, st.reason = ca.StatusIssued, 0
		default:
			continue
		}
		st.seq = e.Seq
		states[ev.Subject] = st
	}
}

// certMismatch says how a row differs from the log; "" when it does not.
func certMismatch(rec ca.CertRecord, want *certState) string {
	if want == nil {
		return fmt.Sprintf("certificate %s (%s) is in the table but no audit event records it", rec.Serial, rec.Status)
	}
	if rec.Status != want.status {
		return fmt.Sprintf("certificate %s is %s in the table, the audit log says %s (entry %d)", rec.Serial, rec.Status, want.status, want.seq)
	}
	if (rec.Status == ca.StatusRevoked || rec.Status == ca.StatusHeld) && rec.RevocationReason != want.reason {
		return fmt.Sprintf("certificate %s has revocation reason %d in the table, the audit log says %d (entry %d)", rec.Serial,
			rec.RevocationReason, want.reason, want.seq)
	}
	if want.sha256 != "" && rec.DER != nil {
		if sum := sha256.Sum256(rec.DER); hex.EncodeToString(sum[:]) != want.sha256 {
			return fmt.Sprintf("certificate %s in the table is not the certificate the audit log recorded (entry %d)", rec.Serial, want.seq)
		}
	}
	return ""
}

// crossCheckCertificates compares every row of the certificate table with the state the audit log gives it.
// It returns the number of rows checked and the mismatches found. Rows changed by a legitimate transaction
// while it runs are re-read with the log's newer entries before they count as mismatches.
func crossCheckCertificates(ctx context.Context, st appStore) (int, []string, error) {
	states := map[string]*certState{}
	var next int64
	readLog := func() error {
		for {
			es, err := st.AuditEntries(ctx, next, 1000)
			if err != nil {
				return err
			}
			if len(es) == 0 {
				return nil
			}
			replayCertEvents(states, es)
			next = es[len(es)-1].Seq + 1
		}
	}
	if err := readLog(); err != nil {
		return 0, nil, err
	}
	seen := map[string]bool{}
	suspect := map[string]bool{}
	n := 0
	after := ""
	for {
		recs, err := st.Certificates(ctx, ca.CertFilter{After: after, Limit: 1000})
		if err != nil {
			return n, nil, err
		}
		for _, rec := range recs {
			after = rec.Serial
			seen[rec.Serial] = true
			n++
			if certMismatch(rec, states[rec.Serial]) != "" {
				suspect[rec.Serial] = true
			}
		}
		if len(recs) < 1000 {
			break
		}
	}
	for serial := range states {
		if !seen[serial] {
			suspect[serial] = true
		}
	}
	if len(suspect) == 0 {
		return n, nil, nil
	}
	// A transaction may have committed between reading the log and reading the table: take the log's newer
	// entries and re-read the suspect rows. On PostgreSQL a change's event may still wait in the audit queue
	// for its chain (milliseconds; internal/store/groupcommit.go): chain what is queued first, so every
	// change committed before the table was read has its entry in the log.
	if q, ok := st.(interface{ ChainAuditQueue(context.Context) error }); ok {
		if err := q.ChainAuditQueue(ctx); err != nil {
			return n, nil, err
		}
	}
	if err := readLog(); err != nil {
		return n, nil, err
	}
	var bad []string
	for serial := range suspect {
		rec, err := st.Certificate(ctx, serial)
		switch {
		case err == nil:
			if m := certMismatch(rec, states[serial]); m != "" {
				bad = append(bad, m)
			}
		case errors.Is(err, ca.ErrNotFound):
			if s := states[serial]; s != nil {
				bad = append(bad, fmt.Sprintf("certificate %s (%s in the audit log, entry %d) is missing from the table", serial, s.status, s.seq))
			}
		default:
			return n, nil, err
		}
	}
	sort.Strings(bad)
	return n, bad, nil
}
