package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mohr-hix/mohr/internal/testpki"
	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing"
	"github.com/mohr-hix/mohr/signing/agent"
)

func softEnv(t *testing.T, opts ...envOpt) (*env, *softCard) {
	var c *softCard
	e := newEnv(t, func(p *testpki.PKI) agent.KeyOpener { c = newSoftCard(t, p); return c.opener() }, opts...)
	return e, c
}

func TestSignSubmitPassed(t *testing.T) {
	e, c := softEnv(t)
	doc := e.rx()
	inf := e.startSession(0, 0)
	if inf.MaxSignatures != 250 || inf.Expires.Sub(inf.Started) != 24*time.Hour || !inf.Comfort {
		t.Fatalf("default session %+v", inf)
	}
	code, l, p := e.sign(doc, nil)
	if code != http.StatusOK {
		t.Fatalf("sign: %d %+v", code, p)
	}
	if l.Status != "submitted" || l.Indication != string(signing.TotalPassed) || len(l.SealedReport) == 0 || len(l.Signature) == 0 {
		t.Fatalf("result %+v", l)
	}
	var rep signing.Report
	if err := json.Unmarshal(l.Report, &rep); err != nil || rep.Level != "B-LT" || rep.Prescriber.CouncilNumber != physician.CouncilNumber {
		t.Fatalf("report %s (%v)", l.Report, err)
	}
	// The B-B the agent returned verifies by itself, and holds the document.
	if got, err := signing.Content(l.Signature); err != nil || !bytes.Equal(got, doc) {
		t.Fatalf("content: %v", err)
	}
	if e.x.stored.Load() != 1 || c.signs != 1 || e.pad.count() != 1 {
		t.Fatalf("stored %d, card signatures %d, PIN prompts %d", e.x.stored.Load(), c.signs, e.pad.count())
	}
	recs := e.checkAudit(doc)
	if countEvents(recs, "sign") != 1 || countEvents(recs, "submit") != 1 || countEvents(recs, "session-start") != 1 {
		t.Fatalf("audit %+v", recs)
	}
}

func TestComfortSessionSignsWithoutPrompt(t *testing.T) {
	e, c := softEnv(t)
	e.startSession(5, time.Hour)
	var docs [][]byte
	for i := 0; i < 4; i++ {
		d := e.rx()
		docs = append(docs, d)
		if code, l, p := e.sign(d, map[string]any{"requireSession": true}); code != 200 || l.Indication != "TOTAL_PASSED" {
			t.Fatalf("sign %d: %d %+v %+v", i, code, l, p)
		}
	}
	if e.pad.count() != 1 || c.signs != 4 {
		t.Fatalf("%d prompts, %d card signatures", e.pad.count(), c.signs)
	}
	resp, b := e.call("GET", "/v1/session", nil)
	var inf agent.SessionInfo
	json.Unmarshal(b, &inf)
	if resp.StatusCode != 200 || inf.Used != 4 || inf.Remaining != 1 {
		t.Fatalf("session %d %s", resp.StatusCode, b)
	}
	// The physician ends it.
	if resp, b := e.call("DELETE", "/v1/session", nil); resp.StatusCode != 200 {
		t.Fatalf("end: %d %s", resp.StatusCode, b)
	}
	if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true}); code != http.StatusConflict || p.Code != "no_session" {
		t.Fatalf("after end: %d %+v", code, p)
	}
	e.checkAudit(docs...)
}

func TestSessionLimitN(t *testing.T) {
	e, c := softEnv(t)
	e.startSession(3, time.Hour)
	// A batch larger than what is left is refused whole.
	if code, _, _, p := e.batch([][]byte{e.rx(), e.rx(), e.rx(), e.rx()}, map[string]any{"requireSession": true}, nil); code != http.StatusConflict || p.Code != "limit_reached" {
		t.Fatalf("oversized batch: %d %+v", code, p)
	}
	for i := 0; i < 3; i++ {
		if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true}); code != 200 {
			t.Fatalf("sign %d: %d %+v", i, code, p)
		}
	}
	// The third signature used the session up: it is over, and the card was not asked again.
	if _, ok := e.agent.Session(); ok {
		t.Fatal("session still open after its limit")
	}
	if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true}); code != http.StatusConflict || p.Code != "limit_reached" {
		t.Fatalf("4th: %d %+v", code, p)
	}
	if c.signs != 3 {
		t.Fatalf("card signed %d times", c.signs)
	}
	// Without requireSession the next signature asks the PIN again (a one-off session).
	if code, _, p := e.sign(e.rx(), nil); code != 200 || e.pad.count() != 2 {
		t.Fatalf("one-off: %d %+v, %d prompts", code, p, e.pad.count())
	}
	recs := e.checkAudit()
	var reasons []string
	for _, r := range recs {
		if r.Event == "session-end" {
			reasons = append(reasons, r.Reason)
		}
	}
	if len(reasons) != 2 || reasons[0] != agent.EndLimit || reasons[1] != agent.EndBatchDone {
		t.Fatalf("session ends %q", reasons)
	}
	// Limits beyond the configured ones are refused.
	if resp, b := e.call("POST", "/v1/session", map[string]any{"maxSignatures": 251}); resp.StatusCode != 400 {
		t.Fatalf("251: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.call("POST", "/v1/session", map[string]any{"durationSeconds": 25 * 3600}); resp.StatusCode != 400 {
		t.Fatalf("25h: %d %s", resp.StatusCode, b)
	}
}

func TestSessionLimitT(t *testing.T) {
	e, _ := softEnv(t, func(c *agent.Config) { c.MaxDuration = 8 * time.Hour })
	if resp, _ := e.call("POST", "/v1/session", map[string]any{"durationSeconds": 9 * 3600}); resp.StatusCode != 400 {
		t.Fatalf("beyond configured T: %d", resp.StatusCode)
	}
	e.startSession(0, 0)
	e.clock.Advance(8*time.Hour - time.Second)
	if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true, "submit": false}); code != 200 {
		t.Fatalf("just inside T: %d %+v", code, p)
	}
	e.clock.Advance(time.Second)
	if code, _, p := e.sign(e.rx(), map[string]any{"requireSession": true}); code != http.StatusConflict || p.Code != "session_expired" {
		t.Fatalf("at T: %d %+v", code, p)
	}
	recs := e.checkAudit()
	if last := recs[len(recs)-1]; last.Event != "session-end" || last.Reason != agent.EndExpired {
		t.Fatalf("last audit %+v", last)
	}
}

func TestWrongPINToBlocked(t *testing.T) {
	e, c := softEnv(t)
	e.pad.set("00000000")
	for _, want := range []int{2, 1, 0} {
		resp, b := e.call("POST", "/v1/session", map[string]any{})
		var p agent.Problem
		json.Unmarshal(b, &p)
		wantCode, wantStatus := "pin_incorrect", http.StatusForbidden
		if want == 0 {
			wantCode, wantStatus = "pin_blocked", http.StatusLocked
		}
		if resp.StatusCode != wantStatus || p.Code != wantCode || p.RetriesLeft == nil || *p.RetriesLeft != want {
			t.Fatalf("want %d tries left: %d %s", want, resp.StatusCode, b)
		}
		if strings.Contains(string(b), "00000000") {
			t.Fatal("answer echoes the PIN")
		}
	}
	// Blocked: even the right PIN no longer opens a session, and the agent never retried on its own.
	e.pad.set(goodPIN)
	if resp, b := e.call("POST", "/v1/session", map[string]any{}); resp.StatusCode != http.StatusLocked {
		t.Fatalf("after block: %d %s", resp.StatusCode, b)
	}
	if e.pad.count() != 4 || c.signs != 0 {
		t.Fatalf("%d prompts, %d signatures", e.pad.count(), c.signs)
	}
	recs := e.checkAudit()
	if countEvents(recs, "pin-failed") != 4 {
		t.Fatalf("audit %+v", recs)
	}
	// The Go API says the same with errors.Is.
	_, err := e.agent.StartSession(context.Background(), agent.SessionOptions{})
	if !errors.Is(err, keys.ErrPINBlocked) {
		t.Fatalf("StartSession: %v", err)
	}
	// A cancelled prompt is not a PIN failure.
	e.pad.set("")
	if _, err := e.agent.StartSession(context.Background(), agent.SessionOptions{}); !errors.Is(err, agent.ErrPINCancelled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestBatchNDJSON(t *testing.T) {
	e, c := softEnv(t)
	var docs [][]byte
	for i := 0; i < 12; i++ {
		docs = append(docs, e.rx())
	}
	code, lines, end, p := e.batch(docs, nil, nil)
	if code != 200 {
		t.Fatalf("batch: %d %+v", code, p)
	}
	seen := map[int]bool{}
	for _, l := range lines {
		if l.Status != "submitted" || l.Indication != "TOTAL_PASSED" || seen[l.Index] {
			t.Fatalf("line %+v", l)
		}
		seen[l.Index] = true
	}
	if len(lines) != 12 || end.Signed != 12 || end.Passed != 12 || end.Failed != 0 {
		t.Fatalf("%d lines, end %+v", len(lines), end)
	}
	if e.pad.count() != 1 || c.signs != 12 {
		t.Fatalf("%d PIN prompts, %d card signatures", e.pad.count(), c.signs)
	}
	// The one-off batch session is over.
	if _, ok := e.agent.Session(); ok {
		t.Fatal("batch session left open")
	}
	e.checkAudit(docs...)
}

func TestCardRemovedMidBatchSoft(t *testing.T) {
	e, c := softEnv(t)
	var docs [][]byte
	for i := 0; i < 10; i++ {
		docs = append(docs, e.rx())
	}
	c.removeAt = 4
	_, lines, end, _ := e.batch(docs, nil, nil)
	checkRemovedBatch(t, lines, end, 3)
	for _, l := range lines {
		if l.Index < 3 && l.Indication != "TOTAL_PASSED" {
			t.Fatalf("document %d signed before the removal: %+v", l.Index, l)
		}
	}
	if e.x.stored.Load() != 3 {
		t.Fatalf("exchange stored %d", e.x.stored.Load())
	}
	recs := e.checkAudit(docs...)
	if last := recs[len(recs)-1]; countEvents(recs, "sign") != 3 {
		t.Fatalf("audit: %d signatures, last %+v", countEvents(recs, "sign"), last)
	}
}

// checkRemovedBatch: every document has a line; those signed carry a signature; after the first failure
// every later document failed cleanly with card_removed or session_ended.
func checkRemovedBatch(t *testing.T, lines []agent.ResultLine, end agent.BatchEnd, firstFailed int) {
	t.Helper()
	byIndex := map[int]agent.ResultLine{}
	for _, l := range lines {
		byIndex[l.Index] = l
	}
	if len(byIndex) != 10 {
		t.Fatalf("%d distinct lines", len(byIndex))
	}
	failedFrom := -1
	for i := 0; i < 10; i++ {
		l := byIndex[i]
		switch {
		case l.Status == "failed":
			if failedFrom < 0 {
				failedFrom = i
			}
			if l.Error == nil || (l.Error.Code != "card_removed" && l.Error.Code != "session_ended") || len(l.Signature) != 0 {
				t.Fatalf("failed line %d: %+v", i, l.Error)
			}
		case failedFrom >= 0:
			t.Fatalf("document %d signed after document %d failed", i, failedFrom)
		case len(l.Signature) == 0:
			t.Fatalf("line %d: %+v", i, l)
		}
	}
	if failedFrom != firstFailed || end.Failed != 10-failedFrom || end.Signed != failedFrom {
		t.Fatalf("first failure at %d, end %+v", failedFrom, end)
	}
}

func TestLocalAPIProtections(t *testing.T) {
	e, _ := softEnv(t)
	cases := []struct {
		name   string
		mod    func(r *http.Request)
		status int
	}{
		{"ok", func(r *http.Request) {}, 200},
		{"no token", func(r *http.Request) { r.Header.Del("Authorization") }, 401},
		{"wrong token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+strings.Repeat("A", 43)) }, 401},
		{"token as basic", func(r *http.Request) { r.Header.Set("Authorization", "Basic "+e.token) }, 401},
		{"dns rebinding host", func(r *http.Request) { r.Host = "evil.example:80" }, 421},
		{"localhost host", func(r *http.Request) { r.Host = "localhost" }, 200},
		{"foreign origin", func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, 403},
		{"null origin", func(r *http.Request) { r.Header.Set("Origin", "null") }, 403},
		{"allowed origin", func(r *http.Request) { r.Header.Set("Origin", "https://emr.clinic.example") }, 200},
		{"no client header", func(r *http.Request) { r.Header.Del(agent.ClientHeader) }, 403},
		{"form post", func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") }, 415},
		{"text post", func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }, 415},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// POST /v1/session with a PIN that is never right would change state; use GET for "ok" paths
			// and a POST that fails validation after the checks.
			method, path, rd := "POST", "/v1/sign", io.Reader(strings.NewReader(`{"document":""}`))
			if tc.status == 200 {
				method, path, rd = "GET", "/v1/status", nil
			}
			req, _ := http.NewRequest(method, e.api.URL+path, rd)
			req.Header.Set("Authorization", "Bearer "+e.token)
			req.Header.Set(agent.ClientHeader, "emr")
			req.Header.Set("Content-Type", "application/json")
			tc.mod(req)
			resp, err := e.api.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			acao := resp.Header.Get("Access-Control-Allow-Origin")
			if (tc.name == "allowed origin") != (acao != "") {
				t.Fatalf("Access-Control-Allow-Origin %q", acao)
			}
		})
	}
	// A preflight from the allowed origin is answered without a token; from another origin it is refused.
	for origin, want := range map[string]int{"https://emr.clinic.example": 204, "https://evil.example": 403} {
		req, _ := http.NewRequest("OPTIONS", e.api.URL+"/v1/sign", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := e.api.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("preflight from %s: %d", origin, resp.StatusCode)
		}
	}
	// An empty document is a bad request, not a signature.
	if code, _, p := e.sign([]byte{}, nil); code != 400 || p.Code != "bad_request" {
		t.Fatalf("empty document: %d %+v", code, p)
	}
}

func TestMetricsExposed(t *testing.T) {
	e, _ := softEnv(t)
	if code, _, p := e.sign(e.rx(), nil); code != 200 {
		t.Fatalf("sign: %d %+v", code, p)
	}
	resp, b := e.call("GET", "/metrics", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{`mohr_agent_stage_seconds_count{stage="card_io"} 1`, `stage="cms_build"`, `stage="network"`,
		`stage="ingestion"`, `stage="total"`, `mohr_agent_signatures_total{result="submitted"} 1`, `mohr_agent_sessions_ended_total{reason="batch finished"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("metrics lack %s:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), goodPIN) {
		t.Fatal("metrics contain the PIN")
	}
	// Metrics need the token too.
	req, _ := http.NewRequest("GET", e.api.URL+"/metrics", nil)
	r2, err := e.api.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 401 {
		t.Fatalf("metrics without token: %d", r2.StatusCode)
	}
}

func TestToken(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	a, err := agent.LoadOrCreateToken(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 || len(a) < 43 {
		t.Fatalf("mode %v, %d chars", fi.Mode(), len(a))
	}
	b, err := agent.LoadOrCreateToken(p)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("reload: %v", err)
	}
	os.Chmod(p, 0o644)
	if _, err := agent.LoadOrCreateToken(p); !errors.Is(err, agent.ErrTokenFile) {
		t.Fatalf("0644: %v", err)
	}
}

func TestAuditChain(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.jsonl")
	now := func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	a, err := agent.OpenAudit(p, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := a.Append(agent.AuditRecord{Event: "sign", DocumentSHA256: strings.Repeat("ab", 32)}); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	// Reopening continues the chain.
	a, err = agent.OpenAudit(p, now)
	if err != nil {
		t.Fatal(err)
	}
	a.Append(agent.AuditRecord{Event: "session-end"})
	a.Close()
	b, _ := os.ReadFile(p)
	if n, err := agent.VerifyAudit(bytes.NewReader(b)); err != nil || n != 4 {
		t.Fatalf("verify: %d %v", n, err)
	}
	for name, bad := range map[string][]byte{
		"edited":  bytes.Replace(b, []byte(`"seq":2,`), []byte(`"seq":2, `), 1),
		"dropped": bytes.Join(append(bytes.Split(b, []byte("\n"))[:1], bytes.Split(b, []byte("\n"))[2:]...), []byte("\n")),
	} {
		if _, err := agent.VerifyAudit(bytes.NewReader(bad)); !errors.Is(err, agent.ErrAuditChain) {
			t.Fatalf("%s: %v", name, err)
		}
		os.WriteFile(p, bad, 0o600)
		if _, err := agent.OpenAudit(p, now); !errors.Is(err, agent.ErrAuditChain) {
			t.Fatalf("open %s: %v", name, err)
		}
	}
}

func TestNewRejectsLimitsAboveGermanCeiling(t *testing.T) {
	pin := func(context.Context, string) ([]byte, error) { return nil, nil }
	key := agent.KeyOpenerFunc(func(context.Context, keys.PINFunc) (*agent.Key, error) { return nil, nil })
	for _, c := range []agent.Config{{Key: key, PIN: pin, MaxSignatures: 251}, {Key: key, PIN: pin, MaxDuration: 25 * time.Hour}} {
		if _, err := agent.New(c); !errors.Is(err, agent.ErrBadLimits) {
			t.Fatalf("%+v: %v", c, err)
		}
	}
}

// TestSessionRace exercises the session and the server from many goroutines at once (run with -race):
// signatures, status, session end and restart interleave; every answer is one of the expected kinds and the
// card never signs more than the session allowed.
func TestSessionRace(t *testing.T) {
	e, c := softEnv(t)
	e.startSession(40, time.Hour)
	doc := e.rx()
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 8; i++ {
				switch (g + i) % 4 {
				case 0, 1:
					code, _, p := e.sign(doc, map[string]any{"requireSession": true, "submit": i%2 == 0})
					if code != 200 && p.Code != "no_session" && p.Code != "limit_reached" && p.Code != "session_ended" {
						t.Errorf("sign: %d %+v", code, p)
					}
				case 2:
					if resp, _ := e.call("GET", "/v1/status", nil); resp.StatusCode != 200 {
						t.Errorf("status %d", resp.StatusCode)
					}
				case 3:
					if g == 5 && i == 3 {
						e.call("DELETE", "/v1/session", nil)
						e.call("POST", "/v1/session", map[string]any{"maxSignatures": 5})
					}
					e.call("GET", "/metrics", nil)
				}
			}
		}(g)
	}
	wg.Wait()
	c.mu.Lock()
	signs := c.signs
	c.mu.Unlock()
	recs := e.checkAudit(doc)
	if countEvents(recs, "sign") != signs {
		t.Fatalf("card signed %d, audit has %d", signs, countEvents(recs, "sign"))
	}
	if signs > 45 {
		t.Fatalf("%d signatures beyond the sessions' limits", signs)
	}
}

// TestSessionRaceRemoval: signatures from several goroutines while the card is pulled; every released
// signature is one the card made and the audit file recorded, every call ends in a defined state, and the
// session is over afterwards.
func TestSessionRaceRemoval(t *testing.T) {
	e, c := softEnv(t)
	ctx := context.Background()
	if _, err := e.agent.StartSession(ctx, agent.SessionOptions{MaxSignatures: 100}); err != nil {
		t.Fatal(err)
	}
	doc := e.rx()
	var wg sync.WaitGroup
	var mu sync.Mutex
	released := map[string]int{}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				_, err := e.agent.SignBatch(ctx, []agent.Document{{Content: doc}, {Content: doc}}, agent.SignOptions{RequireSession: true, NoSubmit: true},
					func(r agent.Result) {
						if r.Err == nil {
							sum := sha256.Sum256(r.Signature)
							mu.Lock()
							released[hex.EncodeToString(sum[:])]++
							mu.Unlock()
						} else if !errors.Is(r.Err, agent.ErrSessionEnded) && !errors.Is(r.Err, agent.ErrCardRemoved) {
							t.Errorf("result: %v", r.Err)
						}
					})
				if err != nil && !errors.Is(err, agent.ErrNoSession) && !errors.Is(err, agent.ErrSessionEnded) && !errors.Is(err, agent.ErrLimitReached) {
					t.Errorf("batch: %v", err)
				}
			}
		}()
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.remove()
	}()
	wg.Wait()
	c.mu.Lock()
	signs := c.signs
	c.mu.Unlock()
	recs := e.checkAudit(doc)
	audited := map[string]bool{}
	for _, r := range recs {
		if r.Event == "sign" {
			audited[r.SignatureSHA256] = true
		}
	}
	if len(audited) != signs || len(released) != signs {
		t.Fatalf("card signed %d, audit has %d, released %d", signs, len(audited), len(released))
	}
	for d := range released {
		if !audited[d] {
			t.Fatalf("released signature %s not in the audit file", d)
		}
	}
	c.remove()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, ok := e.agent.Session(); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("session open after removal")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
