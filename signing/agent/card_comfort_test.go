package agent_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/signing/agent"
)

const insVerify = 0x20

// TestCardComfortOneVerify: a comfort session signs N documents with one PIN prompt and exactly one VERIFY
// APDU on the wire; ending the session logs the card out (VERIFY P1 = 'FF'), so no comfort signature is
// left open behind it.
func TestCardComfortOneVerify(t *testing.T) {
	const n = 12
	e, vc := cardEnv(t, nil)
	vc.ResetStats()
	inf := e.startSession(20, time.Hour)
	if inf.MaxSignatures != 20 {
		t.Fatalf("session limit %d, want 20", inf.MaxSignatures)
	}
	var docs [][]byte
	for i := 0; i < n; i++ {
		docs = append(docs, e.rx())
	}
	for i := 0; i < 2; i++ {
		if code, l, p := e.sign(docs[i], map[string]any{"requireSession": true}); code != 200 || l.Indication != "TOTAL_PASSED" {
			t.Fatalf("sign %d: %d %+v %+v", i, code, l, p)
		}
	}
	code, lines, end, p := e.batch(docs[2:], map[string]any{"requireSession": true}, nil)
	if code != 200 || end.Signed != n-2 || end.Passed != n-2 || len(lines) != n-2 {
		t.Fatalf("batch: %d %+v %+v", code, end, p)
	}
	st := vc.Stats()
	if st[insVerify].Count != 1 || st[0x2A].Count != n || e.pad.count() != 1 {
		t.Fatalf("%d signatures: %d VERIFY APDUs, %d PSO, %d PIN prompts; want 1, %d, 1", n, st[insVerify].Count, st[0x2A].Count, e.pad.count(), n)
	}
	if left := vc.ComfortLeft(); left != agent.MaxSessionSignatures-n {
		t.Fatalf("card comfort counter %d, want %d", left, agent.MaxSessionSignatures-n)
	}
	if resp, b := e.call("DELETE", "/v1/session", nil); resp.StatusCode != 200 {
		t.Fatalf("end: %d %s", resp.StatusCode, b)
	}
	if left := vc.ComfortLeft(); left != 0 || vc.Stats()[insVerify].Count != 2 {
		t.Fatalf("after the session: card comfort counter %d, %d VERIFY APDUs (want 0 and VERIFY + logout)", left, vc.Stats()[insVerify].Count)
	}
	e.checkAudit(docs...)
}

// TestCardComfortCounterWins: the card allows fewer comfort signatures than the agent's limit, so the
// session's limit is the card's; one-off batches larger than the card's counter are refused.
func TestCardComfortCounterWins(t *testing.T) {
	e, vc := cardEnvComfort(t, 3, nil)
	inf := e.startSession(10, time.Hour)
	if inf.MaxSignatures != 3 || inf.Remaining != 3 {
		t.Fatalf("session %+v, want the card's 3 signatures", inf)
	}
	for i := 0; i < 3; i++ {
		if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true, "submit": false}); code != 200 {
			t.Fatalf("sign %d: %d %+v", i, code, p)
		}
	}
	if _, ok := e.agent.Session(); ok {
		t.Fatal("session open after the card's counter was used")
	}
	if code, _, _, p := e.batch([][]byte{e.rx(), e.rx(), e.rx(), e.rx()}, map[string]any{"submit": false}, nil); code != http.StatusConflict || p.Code != "limit_reached" {
		t.Fatalf("one-off batch of 4 on a card allowing 3: %d %+v", code, p)
	}
	if n := vc.Stats()[0x2A].Count; n != 3 {
		t.Fatalf("card signed %d times", n)
	}
}

// TestCardComfortRunsOutMidSession: the card's counter runs out under the agent (here another
// application used one of the comfort signatures), so the card answers 6982. The signature fails with
// session_ended, the session ends, and the PIN is neither asked again nor replayed (no VERIFY APDU).
func TestCardComfortRunsOutMidSession(t *testing.T) {
	e, vc := cardEnvComfort(t, 3, nil)
	e.startSession(3, time.Hour)
	if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true, "submit": false}); code != 200 {
		t.Fatalf("sign: %d %+v", code, p)
	}
	// Another application on the same card spends a comfort signature.
	if r := vc.Process([]byte{0x00, 0x22, 0x41, 0xB6, 0x06, 0x84, 0x01, 0x82, 0x80, 0x01, 0x11}); r[len(r)-2] != 0x90 {
		t.Fatalf("MSE: %X", r)
	}
	pso := append([]byte{0x00, 0x2A, 0x9E, 0x9A, 0x20}, make([]byte, 32)...)
	if r := vc.Process(append(pso, 0x00)); r[len(r)-2] != 0x90 {
		t.Fatalf("PSO: %X", r)
	}
	vc.ResetStats()
	if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true, "submit": false}); code != 200 {
		t.Fatalf("last comfort signature: %d %+v", code, p)
	}
	code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true, "submit": false})
	if code != http.StatusConflict || p.Code != "session_ended" {
		t.Fatalf("signature after the card's counter ran out: %d %+v", code, p)
	}
	if _, ok := e.agent.Session(); ok {
		t.Fatal("session survived the card's 6982")
	}
	if n := vc.Stats()[insVerify].Count; n != 1 { // the logout only
		t.Fatalf("%d VERIFY APDUs after the counter ran out, want only the logout", n)
	}
	if e.pad.count() != 1 {
		t.Fatalf("%d PIN prompts", e.pad.count())
	}
	recs := e.checkAudit()
	var reasons []string
	for _, r := range recs {
		if r.Event == "session-end" {
			reasons = append(reasons, r.Reason)
		}
	}
	if len(reasons) != 1 || reasons[0] != agent.EndCardStatus {
		t.Fatalf("session ends %q", reasons)
	}
}

// TestCardResetEndsComfort: a card reset (power cycle) clears the card's comfort state; the agent's next
// signature ends the session without asking or replaying the PIN, through the Go API as well.
func TestCardResetEndsComfort(t *testing.T) {
	e, vc := cardEnv(t, nil)
	if _, err := e.agent.StartSession(context.Background(), agent.SessionOptions{MaxSignatures: 10, Duration: time.Hour}); err != nil {
		t.Fatal(err)
	}
	doc := agent.Document{ID: "rx", Content: e.rx()}
	if _, err := e.agent.Sign(context.Background(), doc, agent.SignOptions{RequireSession: true, NoSubmit: true}); err != nil {
		t.Fatal(err)
	}
	vc.Reset()
	if vc.ComfortLeft() != 0 {
		t.Fatal("reset kept the comfort state")
	}
	vc.ResetStats()
	_, err := e.agent.Sign(context.Background(), agent.Document{ID: "rx2", Content: e.rx()}, agent.SignOptions{RequireSession: true, NoSubmit: true})
	if !errors.Is(err, agent.ErrSessionEnded) || !errors.Is(err, agent.ErrPINRequired) {
		t.Fatalf("Sign after a card reset: %v, want ErrSessionEnded and ErrPINRequired", err)
	}
	if strings.Contains(err.Error(), goodPIN) {
		t.Fatal("PIN in the error")
	}
	if n := vc.Stats()[insVerify].Count; n > 1 { // at most the logout when the key closes
		t.Fatalf("%d VERIFY APDUs after the reset", n)
	}
	if e.pad.count() != 1 {
		t.Fatalf("%d PIN prompts", e.pad.count())
	}
}

// TestCardRemovalClearsComfort: pulling the card ends the session and the card's comfort state; the
// card's Stats show no PIN presented after the one VERIFY.
func TestCardRemovalClearsComfort(t *testing.T) {
	e, vc := cardEnv(t, nil)
	vc.ResetStats()
	e.startSession(10, time.Hour)
	if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true, "submit": false}); code != 200 {
		t.Fatalf("sign: %d %+v", code, p)
	}
	if vc.ComfortLeft() != agent.MaxSessionSignatures-1 {
		t.Fatalf("comfort counter %d", vc.ComfortLeft())
	}
	vc.Remove()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := e.agent.Session(); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("session still open 5 s after the card was pulled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if vc.ComfortLeft() != 0 {
		t.Fatalf("comfort counter %d after removal", vc.ComfortLeft())
	}
	if n := vc.Stats()[insVerify].Count; n != 1 || e.pad.count() != 1 {
		t.Fatalf("%d VERIFY APDUs, %d prompts", n, e.pad.count())
	}
}

// TestCardWithoutComfortRefused: a "PIN always" card cannot serve a session without the agent keeping the
// PIN, so the agent refuses it (after one VERIFY) rather than keep the PIN.
func TestCardWithoutComfortRefused(t *testing.T) {
	e, vc := cardEnvComfort(t, 0, nil)
	resp, b := e.call("POST", "/v1/session", map[string]any{})
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "card_unavailable") {
		t.Fatalf("session on a PIN-always card: %d %s", resp.StatusCode, b)
	}
	_, err := e.agent.StartSession(context.Background(), agent.SessionOptions{})
	if !errors.Is(err, agent.ErrNoComfort) || !errors.Is(err, agent.ErrCard) {
		t.Fatalf("StartSession: %v, want ErrNoComfort", err)
	}
	if vc.Stats()[0x2A].Count != 0 {
		t.Fatal("the card signed")
	}
}
