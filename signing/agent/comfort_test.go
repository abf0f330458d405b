package agent_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/signing/agent"
)

// TestComfortLostEndsSession: when the key loses its comfort state mid-session and asks for the PIN, the
// agent's callback refuses (ErrPINRequired): the signature fails, the session ends, and neither the
// physician nor the card is asked for the PIN again.
func TestComfortLostEndsSession(t *testing.T) {
	e, c := softEnv(t)
	ctx := context.Background()
	if _, err := e.agent.StartSession(ctx, agent.SessionOptions{MaxSignatures: 5, Duration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.agent.Sign(ctx, agent.Document{ID: "a", Content: e.rx()}, agent.SignOptions{RequireSession: true, NoSubmit: true}); err != nil {
		t.Fatal(err)
	}
	c.lose()
	_, err := e.agent.Sign(ctx, agent.Document{ID: "b", Content: e.rx()}, agent.SignOptions{RequireSession: true, NoSubmit: true})
	var se *agent.SessionEndedError
	if !errors.As(err, &se) || se.Reason != agent.EndCardStatus || !errors.Is(err, agent.ErrPINRequired) {
		t.Fatalf("Sign after the comfort state was lost: %v", err)
	}
	if _, ok := e.agent.Session(); ok {
		t.Fatal("session still open")
	}
	c.mu.Lock()
	verifies := c.verifies
	c.mu.Unlock()
	if e.pad.count() != 1 || verifies != 1 {
		t.Fatalf("%d PIN prompts, %d VERIFYs; want 1 and 1", e.pad.count(), verifies)
	}
}

// TestComfortCounterClampsSession: a key allowing fewer signatures than asked sets the session's limit.
func TestComfortCounterClampsSession(t *testing.T) {
	e, c := softEnv(t)
	c.comfortMax = 2
	inf, err := e.agent.StartSession(context.Background(), agent.SessionOptions{MaxSignatures: 10})
	if err != nil {
		t.Fatal(err)
	}
	if inf.MaxSignatures != 2 {
		t.Fatalf("session limit %d, want the card's 2", inf.MaxSignatures)
	}
}
