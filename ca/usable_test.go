package ca

import (
	"context"
	"crypto/elliptic"
	"errors"
	"testing"
	"time"
)

// TestIssuerUsable: a CA whose issuer key the shared state says may no longer issue (superseded by a key
// rollover, or retired) refuses every request with ErrSuspended and the reason, before it reserves a serial
// or signs; and issues again when the key is usable.
func TestIssuerUsable(t *testing.T) {
	h := newHierarchy(t, elliptic.P256())
	st := newMemStore()
	var why error
	c, err := New(h.issuer, st, DefaultConfig(), Options{Now: func() time.Time { return testNow },
		IssuerUsable: func(context.Context) error { return why }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Issue(context.Background(), validRequests(t)[ProfileTSA]); err != nil {
		t.Fatalf("usable key: %v", err)
	}
	why = errors.New("the intermediate key was superseded by a rollover")
	_, n := st.snapshot()
	if _, err := c.Issue(context.Background(), validRequests(t)[ProfileTSA]); !errors.Is(err, ErrSuspended) || !errors.Is(err, why) {
		t.Fatalf("Issue with a superseded key = %v, want ErrSuspended wrapping the reason", err)
	}
	if _, n2 := st.snapshot(); n2 != n {
		t.Fatal("a CA with a superseded key wrote to the store")
	}
}
