package main

import (
	"context"
	"encoding/pem"
	"testing"
	"time"
)

// TestChangeFeedFromBeforeStart: a change another node commits while this node starts (after it read the
// shared state, before its change feed runs) is applied all the same. The feed used to start at the log's
// size when its goroutine first ran, so on a loaded machine a restarted node could skip a trust-anchor change
// for good (the flaky TestClusterTwoNodes).
func TestChangeFeedFromBeforeStart(t *testing.T) {
	n := clockNode(t, &fakeClock{t: time.Now()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := n.vs.Load()

	// Another node's change, committed with its event after this node loaded the anchors.
	other, _ := foreignSigned(t)
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Raw})
	if err := n.st.PutBlob(ctx, trustAnchorsBlob, pemData, newEvent(eventTrustAnchors, "op1+op2", "", nil)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.changeFeed(ctx) }()
	if !waitFor(clusterWait, func() bool { return n.vs.Load() != before }) {
		t.Fatal("the change feed skipped a trust-anchor change committed while the node started")
	}
	roots, err := loadTrustAnchors(ctx, n.cfg, n.st, n.ca.Issuer().Root())
	if err != nil || len(roots) != 1 || !roots[0].Equal(other) {
		t.Fatalf("anchors in the database: %v %v", roots, err)
	}
	cancel()
	<-done
}
