package cardreader_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/cardreader"
	"github.com/mohr-hix/mohr/cardreader/virtualcard"
	"github.com/mohr-hix/mohr/internal/testenv"
)

const (
	vpcdAddr   = "127.0.0.1:35963"
	vpcdReader = "Virtual PCD 00 00"
)

// insert starts vc in-process on vpcd reader 0 and connects to it through pcscd. The card is pulled
// when the test ends.
func insert(t testing.TB, vc *virtualcard.Card) (*cardreader.Context, *cardreader.Card, <-chan error) {
	t.Helper()
	testenv.LockPCSCD(t)
	ctx := context.Background()
	pc, err := cardreader.Establish(ctx)
	if err != nil {
		testenv.Missing(t, "pcscd: "+err.Error())
	}
	t.Cleanup(func() { pc.Release() })
	// A card left by an earlier test must be gone before ours goes in.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pc.WaitForRemoval(wctx, vpcdReader); err != nil {
		if errors.Is(err, cardreader.ErrNoReader) {
			testenv.Missing(t, "vpcd reader "+vpcdReader)
		}
		t.Fatalf("reader not empty: %v", err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- vc.ConnectVPCD(cctx, vpcdAddr); close(done) }()
	t.Cleanup(func() {
		stop()
		<-done
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pc.WaitForRemoval(rctx, vpcdReader)
	})
	if err := pc.WaitForCard(wctx, vpcdReader); err != nil {
		t.Fatalf("card did not appear: %v", err)
	}
	card, err := pc.Connect(ctx, vpcdReader)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { card.Close() })
	return pc, card, done
}

func newVirtual(t testing.TB, cfg virtualcard.Config) *virtualcard.Card {
	t.Helper()
	vc, err := virtualcard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return vc
}
