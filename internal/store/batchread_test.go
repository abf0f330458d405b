package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/ca"
	"github.com/mohr-hix/mohr/internal/audit"
)

// TestCertificatesBySerial reads a page of records in one call on both stores: every existing serial is
// there with its current status, serials the store does not have are absent, and pages longer than one
// query's chunk are read whole.
func TestCertificatesBySerial(t *testing.T) {
	for name, open := range map[string]func(testing.TB) *core{
		"sqlite":   func(tb testing.TB) *core { return &OpenTestSQLite(tb).core },
		"postgres": func(tb testing.TB) *core { return &OpenTestPostgres(tb).core },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			c := open(t)
			var want []string
			for i := 0; i < hashQueryChunk+3; i++ {
				s := fmt.Sprintf("7%031x", i+1)
				rec := ca.CertRecord{Serial: s, Profile: "physician-auth", Subject: "CN=x", NotBefore: time.Now(),
					NotAfter: time.Now().Add(time.Hour), TBSHash: make([]byte, 32)}
				if err := c.AddPending(ctx, rec, audit.Event{Kind: "cert.intent", Actor: "test", Subject: s}); err != nil {
					t.Fatal(err)
				}
				want = append(want, s)
			}
			if err := c.MarkIssued(ctx, want[1], []byte{0x30, 0}, audit.Event{Kind: "cert.issued", Actor: "test", Subject: want[1]}); err != nil {
				t.Fatal(err)
			}
			got, err := c.CertificatesBySerial(ctx, append(want, "7fffffff", want[0]))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d records for %d existing serials", len(got), len(want))
			}
			if _, ok := got["7fffffff"]; ok {
				t.Fatal("a serial the store does not have was returned")
			}
			if got[want[1]].Status != ca.StatusIssued || got[want[0]].Status != ca.StatusPending || got[want[len(want)-1]].Serial != want[len(want)-1] {
				t.Fatalf("records: %+v %+v", got[want[0]], got[want[1]])
			}
		})
	}
}
