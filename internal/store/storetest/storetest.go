// Package storetest is the conformance suite every store.Store implementation passes: the ca.Store contract,
// blobs, and an audit log that verifies, proves and survives concurrent writers.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
	"github.com/mohr-hix/mohr/internal/store"
)

// Run runs the suite. open returns a new, empty store for each subtest and arranges for it to be closed (and
// its database removed) when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"AddPending", testAddPending},
		{"DuplicateSerial", testDuplicateSerial},
		{"NotFound", testNotFound},
		{"StateConflicts", testStateConflicts},
		{"Revoke", testRevoke},
		{"HoldRelease", testHoldRelease},
		{"Certificates", testCertificates},
		{"RevokedInShard", testRevokedInShard},
		{"CRLNumbers", testCRLNumbers},
		{"CRLNumbersConcurrent", testCRLNumbersConcurrent},
		{"Blobs", testBlobs},
		{"AuditLog", testAuditLog},
		{"AuditConcurrent", testAuditConcurrent},
		{"GroupCommit", testGroupCommit},
		{"Rollback", testRollback},
		{"Leases", testLeases},
		{"Approvals", testApprovals},
		{"SignCRL", testSignCRL},
		{"OCSPResponses", testOCSPResponses},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func ev(kind, subject string) audit.Event {
	return audit.Event{Time: time.Now().UTC(), Kind: kind, Actor: "test", Subject: subject, Data: json.RawMessage(`{"k": 1}`)}
}

// badEvent cannot be encoded, so appending it fails inside the store's transaction.
var badEvent = audit.Event{Time: t0, Kind: "cert.intent", Actor: "test", Data: json.RawMessage(`{"broken":`)}

func rec(serial string, shard int) ca.CertRecord {
	h := sha256.Sum256([]byte(serial))
	return ca.CertRecord{
		Serial:    serial,
		Profile:   "physician-signing",
		Subject:   "CN=Dr " + serial + ",serialNumber=IDCIR-0499370899",
		Subject2:  "IDCIR-" + serial,
		NotBefore: t0.Add(123456789 * time.Nanosecond),
		NotAfter:  t0.AddDate(2, 0, 0),
		TBSHash:   h[:],
		Shard:     shard,
	}
}

func ctxT(t *testing.T) context.Context { return t.Context() }

func mustIssue(t *testing.T, s store.Store, r ca.CertRecord) {
	t.Helper()
	ctx := ctxT(t)
	if err := s.AddPending(ctx, r, ev("cert.intent", r.Serial)); err != nil {
		t.Fatalf("AddPending(%s): %v", r.Serial, err)
	}
	if err := s.MarkIssued(ctx, r.Serial, []byte("DER "+r.Serial), ev("cert.issued", r.Serial)); err != nil {
		t.Fatalf("MarkIssued(%s): %v", r.Serial, err)
	}
}

func auditSize(t *testing.T, s store.Store) int64 {
	t.Helper()
	n, err := s.AuditSize(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: %v, want %v", what, err, target)
	}
}

func get(t *testing.T, s store.Store, serial string) ca.CertRecord {
	t.Helper()
	r, err := s.Certificate(ctxT(t), serial)
	if err != nil {
		t.Fatalf("Certificate(%s): %v", serial, err)
	}
	return r
}

// verify checks the whole audit log with a fresh checkpoint key and returns its size.
func verify(t *testing.T, s store.Store) *audit.VerifyResult {
	t.Helper()
	res, err := audit.Verify(ctxT(t), s, newKey(t).vkey)
	if err != nil {
		t.Fatalf("audit.Verify: %v", err)
	}
	return res
}

type key struct {
	cp   *audit.Checkpointer
	vkey string
}

func newKey(t *testing.T) key {
	t.Helper()
	skey, vkey, err := audit.GenerateKey("storetest")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.NewCheckpointer("storetest", signer)
	if err != nil {
		t.Fatal(err)
	}
	return key{cp, vkey}
}

func testAddPending(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r := rec("1a2b", 3)
	r.Status = ca.StatusIssued // ignored: a new record is pending
	r.DER = []byte("ignored")
	e := ev("cert.intent", r.Serial)
	if err := s.AddPending(ctx, r, e); err != nil {
		t.Fatal(err)
	}
	got := get(t, s, "1a2b")
	if got.Serial != r.Serial || got.Profile != r.Profile || got.Subject != r.Subject || got.Subject2 != r.Subject2 ||
		!got.NotBefore.Equal(r.NotBefore.Truncate(time.Microsecond)) || !got.NotAfter.Equal(r.NotAfter) ||
		!bytes.Equal(got.TBSHash, r.TBSHash) || got.Shard != 3 {
		t.Fatalf("Certificate = %+v, want %+v", got, r)
	}
	if got.Status != ca.StatusPending || got.DER != nil || !got.RevokedAt.IsZero() {
		t.Fatalf("new record: status %s, DER %q, revoked %v", got.Status, got.DER, got.RevokedAt)
	}
	if got.CreatedAt.IsZero() || got.UpdatedAt.Before(got.CreatedAt) || got.NotAfter.Location() != time.UTC {
		t.Fatalf("timestamps: %+v", got)
	}

	entries, err := s.AuditEntries(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Seq != 0 || entries[0].Event.Kind != "cert.intent" ||
		entries[0].Event.Subject != "1a2b" || !entries[0].Event.Time.Equal(e.Time) || string(entries[0].Event.Data) != `{"k":1}` {
		t.Fatalf("audit entries: %+v", entries)
	}

	// The store fills a zero event time.
	if err := s.AppendAudit(ctx, audit.Event{Kind: "ca.start", Actor: "system"}); err != nil {
		t.Fatal(err)
	}
	entries, _ = s.AuditEntries(ctx, 1, 10)
	if len(entries) != 1 || entries[0].Event.Time.IsZero() {
		t.Fatalf("zero event time not filled: %+v", entries)
	}

	if err := s.AddPending(ctx, ca.CertRecord{Serial: "ff"}, ev("cert.intent", "ff")); err == nil {
		t.Fatal("AddPending accepted a record without TBS hash")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func testDuplicateSerial(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssue(t, s, rec("0a", 0))
	if err := s.AddPending(ctx, rec("0b", 0), ev("cert.intent", "0b")); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFailed(ctx, "0b", ev("cert.failed", "0b")); err != nil {
		t.Fatal(err)
	}
	before := auditSize(t, s)
	for _, serial := range []string{"0a", "0b"} {
		r := rec(serial, 1)
		r.Profile = "other"
		wantErr(t, "AddPending duplicate "+serial, s.AddPending(ctx, r, ev("cert.intent", serial)), ca.ErrDuplicateSerial)
	}
	if got := get(t, s, "0a"); got.Status != ca.StatusIssued || got.Profile != "physician-signing" {
		t.Fatalf("duplicate changed the record: %+v", got)
	}
	if n := auditSize(t, s); n != before {
		t.Fatalf("a refused duplicate appended audit entries: %d -> %d", before, n)
	}
	verify(t, s)
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	_, err := s.Certificate(ctx, "404")
	wantErr(t, "Certificate", err, ca.ErrNotFound)
	wantErr(t, "MarkIssued", s.MarkIssued(ctx, "404", []byte("x"), ev("cert.issued", "404")), ca.ErrNotFound)
	wantErr(t, "MarkFailed", s.MarkFailed(ctx, "404", ev("cert.failed", "404")), ca.ErrNotFound)
	_, err = s.Revoke(ctx, "404", 1, t0, ev("cert.revoked", "404"))
	wantErr(t, "Revoke", err, ca.ErrNotFound)
	wantErr(t, "Release", s.Release(ctx, "404", ev("cert.released", "404")), ca.ErrNotFound)
	_, err = s.GetBlob(ctx, "nothing")
	wantErr(t, "GetBlob", err, ca.ErrNotFound)
	if n := auditSize(t, s); n != 0 {
		t.Fatalf("failed calls appended %d audit entries", n)
	}
}

func testStateConflicts(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssue(t, s, rec("01", 0))
	if err := s.AddPending(ctx, rec("02", 0), ev("cert.intent", "02")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddPending(ctx, rec("03", 0), ev("cert.intent", "03")); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFailed(ctx, "03", ev("cert.failed", "03")); err != nil {
		t.Fatal(err)
	}
	before := auditSize(t, s)
	wantErr(t, "MarkIssued issued", s.MarkIssued(ctx, "01", []byte("again"), ev("cert.issued", "01")), ca.ErrConflict)
	wantErr(t, "MarkFailed issued", s.MarkFailed(ctx, "01", ev("cert.failed", "01")), ca.ErrConflict)
	wantErr(t, "MarkIssued failed", s.MarkIssued(ctx, "03", []byte("x"), ev("cert.issued", "03")), ca.ErrConflict)
	wantErr(t, "MarkFailed failed", s.MarkFailed(ctx, "03", ev("cert.failed", "03")), ca.ErrConflict)
	_, err := s.Revoke(ctx, "02", 1, t0, ev("cert.revoked", "02"))
	wantErr(t, "Revoke pending", err, ca.ErrConflict)
	_, err = s.Revoke(ctx, "03", 1, t0, ev("cert.revoked", "03"))
	wantErr(t, "Revoke failed", err, ca.ErrConflict)
	wantErr(t, "Release issued", s.Release(ctx, "01", ev("cert.released", "01")), ca.ErrConflict)
	wantErr(t, "Release pending", s.Release(ctx, "02", ev("cert.released", "02")), ca.ErrConflict)
	if err := s.MarkIssued(ctx, "02", nil, ev("cert.issued", "02")); err == nil {
		t.Fatal("MarkIssued accepted an empty certificate")
	}
	if n := auditSize(t, s); n != before {
		t.Fatalf("refused changes appended audit entries: %d -> %d", before, n)
	}
	if got := get(t, s, "01"); got.Status != ca.StatusIssued || string(got.DER) != "DER 01" {
		t.Fatalf("record 01 changed: %+v", got)
	}
	if got := get(t, s, "03"); got.Status != ca.StatusFailed || got.DER != nil {
		t.Fatalf("record 03: %+v", got)
	}
	if err := s.MarkIssued(ctx, "02", []byte("DER 02"), ev("cert.issued", "02")); err != nil {
		t.Fatal(err)
	}
	verify(t, s)
}

func testRevoke(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssue(t, s, rec("0c", 2))
	at := t0.Add(time.Hour + 7*time.Microsecond)
	changed, err := s.Revoke(ctx, "0c", 1, at, ev("cert.revoked", "0c"))
	if err != nil || !changed {
		t.Fatalf("Revoke: %v, %v", changed, err)
	}
	got := get(t, s, "0c")
	if got.Status != ca.StatusRevoked || got.RevocationReason != 1 || !got.RevokedAt.Equal(at) || got.DER == nil {
		t.Fatalf("revoked record: %+v", got)
	}
	before := auditSize(t, s)
	changed, err = s.Revoke(ctx, "0c", 1, at.Add(time.Hour), ev("cert.revoked", "0c"))
	if err != nil || changed {
		t.Fatalf("second Revoke with the same reason: %v, %v; want a no-op", changed, err)
	}
	if n := auditSize(t, s); n != before {
		t.Fatalf("idempotent revoke appended an audit entry")
	}
	if got := get(t, s, "0c"); !got.RevokedAt.Equal(at) {
		t.Fatalf("idempotent revoke moved the revocation time to %v", got.RevokedAt)
	}
	_, err = s.Revoke(ctx, "0c", 4, at, ev("cert.revoked", "0c"))
	wantErr(t, "Revoke revoked with another reason", err, ca.ErrConflict)
	_, err = s.Revoke(ctx, "0c", 6, at, ev("cert.revoked", "0c"))
	wantErr(t, "hold a revoked certificate", err, ca.ErrConflict)
	for _, reason := range []int{-1, 7, 8, 11} {
		if _, err := s.Revoke(ctx, "0c", reason, at, ev("cert.revoked", "0c")); err == nil {
			t.Fatalf("Revoke accepted reason %d", reason)
		}
	}

	// Concurrent revocations of one certificate: exactly one changes it.
	mustIssue(t, s, rec("0d", 2))
	var wg sync.WaitGroup
	var mu sync.Mutex
	changes := 0
	for range 4 {
		wg.Go(func() {
			ch, err := s.Revoke(ctx, "0d", 1, at, ev("cert.revoked", "0d"))
			if err != nil {
				t.Errorf("concurrent Revoke: %v", err)
			}
			if ch {
				mu.Lock()
				changes++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if changes != 1 {
		t.Fatalf("%d concurrent revocations changed the certificate, want 1", changes)
	}
	verify(t, s)
}

func testHoldRelease(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssue(t, s, rec("0e", 1))
	changed, err := s.Revoke(ctx, "0e", 6, t0, ev("cert.hold", "0e"))
	if err != nil || !changed {
		t.Fatalf("hold: %v, %v", changed, err)
	}
	if got := get(t, s, "0e"); got.Status != ca.StatusHeld || got.RevocationReason != 6 || !got.RevokedAt.Equal(t0) {
		t.Fatalf("held record: %+v", got)
	}
	if changed, err := s.Revoke(ctx, "0e", 6, t0, ev("cert.hold", "0e")); err != nil || changed {
		t.Fatalf("second hold: %v, %v; want a no-op", changed, err)
	}
	if err := s.Release(ctx, "0e", ev("cert.released", "0e")); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "0e"); got.Status != ca.StatusIssued || !got.RevokedAt.IsZero() || got.RevocationReason != 0 {
		t.Fatalf("released record: %+v", got)
	}
	wantErr(t, "second Release", s.Release(ctx, "0e", ev("cert.released", "0e")), ca.ErrConflict)

	// Hold, then revoke for good with another reason.
	if _, err := s.Revoke(ctx, "0e", 6, t0, ev("cert.hold", "0e")); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	changed, err = s.Revoke(ctx, "0e", 1, at, ev("cert.revoked", "0e"))
	if err != nil || !changed {
		t.Fatalf("revoke a held certificate: %v, %v", changed, err)
	}
	if got := get(t, s, "0e"); got.Status != ca.StatusRevoked || got.RevocationReason != 1 || !got.RevokedAt.Equal(at) {
		t.Fatalf("revoked after hold: %+v", got)
	}
	wantErr(t, "Release revoked", s.Release(ctx, "0e", ev("cert.released", "0e")), ca.ErrConflict)
	if res := verify(t, s); res.Size != 6 {
		t.Fatalf("audit size %d, want 6", res.Size)
	}
}

func testCertificates(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	serials := []string{"0f", "10", "1", "a0", "ab", "b", "c3", "d4", "ff", "ffff"}
	for i, serial := range serials {
		r := rec(serial, i%3)
		if i%2 == 1 {
			r.Profile = "facility-adapter"
			r.Subject2 = "SIAM-42"
		}
		if i < 7 {
			mustIssue(t, s, r)
		} else if err := s.AddPending(ctx, r, ev("cert.intent", serial)); err != nil {
			t.Fatal(err)
		}
	}
	sorted := slices.Clone(serials)
	slices.Sort(sorted)
	list := func(f ca.CertFilter) []string {
		t.Helper()
		recs, err := s.Certificates(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range recs {
			out = append(out, r.Serial)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    ca.CertFilter
		want []string
	}{
		{"all", ca.CertFilter{}, sorted},
		{"profile", ca.CertFilter{Profile: "facility-adapter"}, []string{"10", "a0", "b", "d4", "ffff"}},
		{"status", ca.CertFilter{Status: ca.StatusPending}, []string{"d4", "ff", "ffff"}},
		{"subject2", ca.CertFilter{Subject2: "SIAM-42", Status: ca.StatusIssued}, []string{"10", "a0", "b"}},
		{"limit", ca.CertFilter{Limit: 3}, sorted[:3]},
		{"after", ca.CertFilter{After: "b", Limit: 2}, []string{"c3", "d4"}},
		{"after last", ca.CertFilter{After: "ffff"}, nil},
		{"none", ca.CertFilter{Profile: "nope"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := list(tc.f); !slices.Equal(got, tc.want) {
				t.Fatalf("Certificates(%+v) = %v, want %v", tc.f, got, tc.want)
			}
		})
	}
	// Paging visits every record once.
	var paged []string
	for after := ""; ; {
		page := list(ca.CertFilter{After: after, Limit: 4})
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[len(page)-1]
	}
	if !slices.Equal(paged, sorted) {
		t.Fatalf("paging: %v, want %v", paged, sorted)
	}
	recs, _ := s.Certificates(ctx, ca.CertFilter{Status: ca.StatusIssued, Limit: 1})
	if len(recs) != 1 || recs[0].DER == nil || recs[0].CreatedAt.IsZero() {
		t.Fatalf("listed record: %+v", recs)
	}
}

func testRevokedInShard(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	// shard 0: 01 revoked, 02 held, 03 issued, 04 revoked but expired; shard 1: 05 revoked.
	for i, serial := range []string{"01", "02", "03", "04", "05"} {
		r := rec(serial, 0)
		if serial == "05" {
			r.Shard = 1
		}
		if serial == "04" {
			r.NotAfter = t0.Add(-time.Hour)
		}
		mustIssue(t, s, r)
		reason := map[string]int{"01": 1, "02": 6, "04": 3, "05": 5}[serial]
		if serial != "03" {
			if _, err := s.Revoke(ctx, serial, reason, t0.Add(time.Duration(i)*time.Minute), ev("cert.revoked", serial)); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := s.RevokedInShard(ctx, 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	want := []ca.RevokedEntry{{Serial: "01", RevokedAt: t0, Reason: 1}, {Serial: "02", RevokedAt: t0.Add(time.Minute), Reason: 6}}
	if len(got) != len(want) {
		t.Fatalf("RevokedInShard(0) = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Serial != want[i].Serial || got[i].Reason != want[i].Reason || !got[i].RevokedAt.Equal(want[i].RevokedAt) {
			t.Fatalf("RevokedInShard(0)[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got, _ := s.RevokedInShard(ctx, 0, t0.Add(-2*time.Hour)); len(got) != 3 {
		t.Fatalf("with expired: %+v", got)
	}
	if got, _ := s.RevokedInShard(ctx, 1, t0); len(got) != 1 || got[0].Serial != "05" {
		t.Fatalf("shard 1: %+v", got)
	}
	if got, _ := s.RevokedInShard(ctx, 9, t0); len(got) != 0 {
		t.Fatalf("empty shard: %+v", got)
	}
	if err := s.Release(ctx, "02", ev("cert.released", "02")); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.RevokedInShard(ctx, 0, t0); len(got) != 1 {
		t.Fatalf("after release: %+v", got)
	}
}

func testCRLNumbers(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var last int64
	for i := range 5 {
		n, err := s.NextCRLNumber(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n <= last {
			t.Fatalf("CRL number %d after %d", n, last)
		}
		if i == 0 && n < 1 {
			t.Fatalf("first CRL number %d", n)
		}
		last = n
	}
	if n, err := s.NextCRLNumber(ctx, 7); err != nil || n < 1 {
		t.Fatalf("other shard: %d, %v", n, err)
	}
	if n, _ := s.NextCRLNumber(ctx, 0); n <= last {
		t.Fatalf("shard 0 went back to %d after %d", n, last)
	}
}

func testCRLNumbersConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const workers, each = 4, 10
	got := make([][]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				n, err := s.NextCRLNumber(ctx, 3)
				if err != nil {
					t.Errorf("NextCRLNumber: %v", err)
					return
				}
				got[w] = append(got[w], n)
			}
		})
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, ns := range got {
		for i, n := range ns {
			if seen[n] {
				t.Fatalf("CRL number %d returned twice", n)
			}
			seen[n] = true
			if i > 0 && n <= ns[i-1] {
				t.Fatalf("CRL numbers not increasing: %v", ns)
			}
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d numbers, want %d", len(seen), workers*each)
	}
}

func testBlobs(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if err := s.PutBlob(ctx, "issuer/state", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob(ctx, "crl/0", []byte{0x30, 0x00, 0xff}, ev("crl.published", "0"), ev("crl.published2", "0")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob(ctx, "issuer/state", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"issuer/state": []byte("v2"), "crl/0": {0x30, 0x00, 0xff}, "empty": {}} {
		got, err := s.GetBlob(ctx, name)
		if err != nil || !bytes.Equal(got, want) || got == nil {
			t.Fatalf("GetBlob(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
	if err := s.PutBlob(ctx, "", []byte("x")); err == nil {
		t.Fatal("PutBlob accepted an empty name")
	}
	entries, err := s.AuditEntries(ctx, 0, 10)
	if err != nil || len(entries) != 2 || entries[0].Event.Kind != "crl.published" || entries[1].Event.Kind != "crl.published2" {
		t.Fatalf("blob events: %+v, %v", entries, err)
	}
}

func testAuditLog(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	k := newKey(t)
	if err := s.Checkpoint(ctx, k.cp); err == nil {
		t.Fatal("checkpoint of an empty log")
	}
	res, err := audit.Verify(ctx, s, k.vkey)
	if err != nil || res.Size != 0 {
		t.Fatalf("Verify empty log: %+v, %v", res, err)
	}
	var events []audit.Event
	for i := range 13 {
		e := ev("test.event", fmt.Sprint(i))
		e.Time = t0.Add(time.Duration(i)*time.Second + 1) // nanoseconds survive: the canonical event is stored
		events = append(events, e)
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
		if i == 4 || i == 12 {
			if err := s.Checkpoint(ctx, k.cp); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Checkpoint(ctx, k.cp); err != nil { // same size again: kept once
		t.Fatal(err)
	}
	cps, err := s.AuditCheckpoints(ctx)
	if err != nil || len(cps) != 2 {
		t.Fatalf("checkpoints: %d, %v", len(cps), err)
	}
	res, err = audit.Verify(ctx, s, k.vkey)
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != 13 || res.Checkpoints != 2 || res.Latest.N != 13 {
		t.Fatalf("Verify: %+v", res)
	}

	// Entries come back in order, in pages, equal to what was appended.
	var all []audit.Entry
	for start := int64(0); ; {
		page, err := s.AuditEntries(ctx, start, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		start = page[len(page)-1].Seq + 1
	}
	if len(all) != 13 {
		t.Fatalf("%d entries", len(all))
	}
	for i, e := range all {
		a, _ := audit.CanonicalJSON(e.Event)
		b, _ := audit.CanonicalJSON(events[i])
		if e.Seq != int64(i) || !bytes.Equal(a, b) {
			t.Fatalf("entry %d: %s, want %s", i, a, b)
		}
	}
	if res.Head != all[12].Hash {
		t.Fatal("Verify head is not the last entry's hash")
	}

	// An auditor checks inclusion and consistency with tlog and note alone.
	older, err := audit.OpenCheckpoint(cps[0], k.vkey)
	if err != nil {
		t.Fatal(err)
	}
	newer, err := audit.OpenCheckpoint(cps[1], k.vkey)
	if err != nil {
		t.Fatal(err)
	}
	if older.N != 5 || newer.N != 13 {
		t.Fatalf("checkpoint sizes %d, %d", older.N, newer.N)
	}
	for seq := int64(0); seq < 13; seq++ {
		p, err := audit.Prove(ctx, s, seq, newer.N)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := audit.CanonicalJSON(all[seq].Event)
		if err := tlog.CheckRecord(p, newer.N, newer.Hash, seq, tlog.RecordHash(c)); err != nil {
			t.Fatalf("inclusion of %d: %v", seq, err)
		}
	}
	tp, err := audit.ProveConsistency(ctx, s, older.N, newer.N)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(tp, newer.N, newer.Hash, older.N, older.Hash); err != nil {
		t.Fatalf("consistency: %v", err)
	}
	if _, err := audit.Prove(ctx, s, 0, 14); err == nil {
		t.Fatal("proof in a tree beyond the log")
	}
	if _, err := s.AuditHashes(ctx, []int64{1 << 40}); !errors.Is(err, audit.ErrMissingHash) {
		t.Fatalf("AuditHashes of a missing index: %v", err)
	}
}

func testAuditConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const workers, each = 6, 8
	if err := s.AppendAudit(ctx, ev("test.start", "")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				serial := fmt.Sprintf("%x%02x", w+1, i)
				r := rec(serial, w%2)
				if err := s.AddPending(ctx, r, ev("cert.intent", serial)); err != nil {
					t.Errorf("AddPending: %v", err)
					return
				}
				if err := s.AppendAudit(ctx, ev("test.note", serial)); err != nil {
					t.Errorf("AppendAudit: %v", err)
					return
				}
				if err := s.MarkIssued(ctx, serial, []byte("DER"), ev("cert.issued", serial)); err != nil {
					t.Errorf("MarkIssued: %v", err)
					return
				}
			}
		})
	}
	// A checkpointer running alongside the writers.
	k := newKey(t)
	wg.Go(func() {
		for range 5 {
			if err := s.Checkpoint(ctx, k.cp); err != nil {
				t.Errorf("Checkpoint: %v", err)
			}
		}
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	res, err := audit.Verify(ctx, s, k.vkey)
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != workers*each*3+1 {
		t.Fatalf("audit size %d, want %d", res.Size, workers*each*3+1)
	}
	// Each certificate's intent precedes its issuance in the log.
	entries, err := s.AuditEntries(ctx, 0, workers*each*3+1)
	if err != nil {
		t.Fatal(err)
	}
	intent := map[string]int64{}
	for _, e := range entries {
		switch e.Event.Kind {
		case "cert.intent":
			intent[e.Event.Subject] = e.Seq
		case "cert.issued":
			if s, ok := intent[e.Event.Subject]; !ok || s > e.Seq {
				t.Fatalf("issuance of %s at %d before its intent", e.Event.Subject, e.Seq)
			}
		}
	}
}

func testRollback(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssue(t, s, rec("aa", 0))
	if err := s.PutBlob(ctx, "state", []byte("old")); err != nil {
		t.Fatal(err)
	}
	before := auditSize(t, s)

	if err := s.AddPending(ctx, rec("bb", 0), badEvent); err == nil {
		t.Fatal("AddPending with a bad event succeeded")
	}
	_, err := s.Certificate(ctx, "bb")
	wantErr(t, "Certificate after a failed AddPending", err, ca.ErrNotFound)

	if err := s.AddPending(ctx, rec("cc", 0), ev("cert.intent", "cc")); err != nil {
		t.Fatal(err)
	}
	before++
	if err := s.MarkIssued(ctx, "cc", []byte("DER"), badEvent); err == nil {
		t.Fatal("MarkIssued with a bad event succeeded")
	}
	if got := get(t, s, "cc"); got.Status != ca.StatusPending || got.DER != nil {
		t.Fatalf("failed MarkIssued left %+v", got)
	}
	if err := s.MarkFailed(ctx, "cc", badEvent); err == nil {
		t.Fatal("MarkFailed with a bad event succeeded")
	}
	if changed, err := s.Revoke(ctx, "aa", 1, t0, badEvent); err == nil || changed {
		t.Fatalf("Revoke with a bad event: %v, %v", changed, err)
	}
	if got := get(t, s, "aa"); got.Status != ca.StatusIssued || !got.RevokedAt.IsZero() {
		t.Fatalf("failed Revoke left %+v", got)
	}
	if err := s.PutBlob(ctx, "state", []byte("new"), ev("ok", ""), badEvent); err == nil {
		t.Fatal("PutBlob with a bad event succeeded")
	}
	if got, _ := s.GetBlob(ctx, "state"); string(got) != "old" {
		t.Fatalf("failed PutBlob left %q", got)
	}
	if err := s.AppendAudit(ctx, badEvent); err == nil {
		t.Fatal("AppendAudit with a bad event succeeded")
	}

	// A cancelled context changes nothing either.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.AddPending(cctx, rec("dd", 0), ev("cert.intent", "dd")); err == nil {
		t.Fatal("AddPending with a cancelled context succeeded")
	}
	_, err = s.Certificate(ctx, "dd")
	wantErr(t, "Certificate after a cancelled AddPending", err, ca.ErrNotFound)

	if n := auditSize(t, s); n != before {
		t.Fatalf("failed writes changed the audit size: %d -> %d", before, n)
	}
	if res := verify(t, s); res.Size != before {
		t.Fatalf("Verify size %d, want %d", res.Size, before)
	}
	// The log continues cleanly after the failures.
	if err := s.MarkIssued(ctx, "cc", []byte("DER"), ev("cert.issued", "cc")); err != nil {
		t.Fatal(err)
	}
	verify(t, s)
}
