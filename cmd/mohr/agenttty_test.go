package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mohr-hix/mohr/signing/agent"
)

// pty is a pseudo-terminal for prompt tests: the prompter opens the slave by its path, the test types into
// the master and reads what the prompter shows.
type pty struct {
	t     *testing.T
	m     *os.File
	slave string
	mu    sync.Mutex
	out   bytes.Buffer
}

func newPTY(t *testing.T) *pty {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminals: %v", err)
	}
	rc, _ := m.SyscallConn()
	var n int
	var ierr error
	rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr == nil {
			n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	})
	if ierr != nil {
		t.Fatal(ierr)
	}
	p := &pty{t: t, m: m, slave: fmt.Sprintf("/dev/pts/%d", n)}
	// Keep one slave descriptor open for the test's length, so the master never sees a hang-up between prompts.
	keep, err := os.OpenFile(p.slave, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		b := make([]byte, 512)
		for {
			n, err := m.Read(b)
			p.mu.Lock()
			p.out.Write(b[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { keep.Close(); m.Close() })
	return p
}

// waitFor waits (bounded) until the terminal showed s, and returns everything shown so far.
func (p *pty) waitFor(s string) string {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		out := p.out.String()
		p.mu.Unlock()
		if strings.Contains(out, s) {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.t.Fatalf("the terminal never showed %q; it showed:\n%s", s, p.out.String())
	return ""
}

// shown counts how often s appeared on the terminal.
func (p *pty) shown(s string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Count(p.out.String(), s)
}

func (p *pty) typ(s string) {
	if _, err := p.m.WriteString(s); err != nil {
		p.t.Fatal(err)
	}
}

type promptResult struct {
	pin []byte
	err error
}

func prompt(tp *ttyPrompter, ctx context.Context) <-chan promptResult {
	ch := make(chan promptResult, 1)
	go func() {
		pin, err := tp.Prompt(ctx, "PIN of the signing card of Dr Test")
		ch <- promptResult{pin, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan promptResult) promptResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("the prompt did not return")
	}
	return promptResult{}
}

// TestTTYPrompt (issue 19 item 13) drives the agent's terminal PIN prompt through a pseudo-terminal: the PIN is
// read without echo; a prompt whose request is abandoned returns at once and does not take the next PIN (nor
// the keys half-typed for it); a prompt nobody answers times out (ErrPINTimeout); an empty line cancels;
// without a terminal the error is ErrPINUnavailable; the terminal says what is asked, the card's answer with
// the tries left, and the session opening and ending.
func TestTTYPrompt(t *testing.T) {
	p := newPTY(t)
	tp := &ttyPrompter{Path: p.slave, Timeout: time.Minute}
	if err := tp.check(); err != nil {
		t.Fatal(err)
	}

	// A PIN typed: returned, never echoed.
	ch := prompt(tp, context.Background())
	p.waitFor("PIN (60 s")
	p.typ("4711\n")
	if r := wait(t, ch); r.err != nil || string(r.pin) != "4711" {
		t.Fatalf("prompt: %q %v", r.pin, r.err)
	}
	if p.shown("4711") != 0 {
		t.Fatal("the PIN was echoed")
	}

	// Abandoned: the EMR's request goes away while "12" is half typed. The prompt returns; the next prompt
	// gets exactly the next PIN typed.
	ctx, cancel := context.WithCancel(context.Background())
	ch = prompt(tp, ctx)
	for p.shown("PIN (60 s") < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	p.typ("12")
	cancel()
	if r := wait(t, ch); !errors.Is(r.err, context.Canceled) || r.pin != nil {
		t.Fatalf("abandoned prompt: %q %v", r.pin, r.err)
	}
	p.waitFor("withdrawn by the EMR")
	ch = prompt(tp, context.Background())
	for p.shown("PIN (60 s") < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	p.typ("5678\n")
	if r := wait(t, ch); r.err != nil || string(r.pin) != "5678" {
		t.Fatalf("prompt after an abandoned one: %q %v (want 5678)", r.pin, r.err)
	}

	// An empty line cancels.
	ch = prompt(tp, context.Background())
	for p.shown("PIN (60 s") < 4 {
		time.Sleep(10 * time.Millisecond)
	}
	p.typ("\n")
	if r := wait(t, ch); !errors.Is(r.err, agent.ErrPINCancelled) || errors.Is(r.err, agent.ErrPINTimeout) {
		t.Fatalf("empty line: %v", r.err)
	}

	// Nobody types: the prompt times out.
	short := &ttyPrompter{Path: p.slave, Timeout: 300 * time.Millisecond}
	if r := wait(t, prompt(short, context.Background())); !errors.Is(r.err, agent.ErrPINTimeout) || !errors.Is(r.err, agent.ErrPINCancelled) {
		t.Fatalf("time-out: %v", r.err)
	}
	p.waitFor("no PIN entered in time")

	// No terminal: a clear error, and check() reports it at start.
	none := &ttyPrompter{Path: "/nonexistent/tty", Timeout: time.Minute}
	if err := none.check(); !errors.Is(err, agent.ErrPINUnavailable) {
		t.Fatalf("check without a terminal: %v", err)
	}
	if r := wait(t, prompt(none, context.Background())); !errors.Is(r.err, agent.ErrPINUnavailable) || !strings.Contains(r.err.Error(), "pin_entry: web") {
		t.Fatalf("prompt without a terminal: %v", r.err)
	}

	// What the terminal says around the PIN.
	tp.outcome(agent.NewPINError(2, nil))
	p.waitFor("wrong PIN: 2 tries left on the card")
	tp.outcome(nil)
	p.waitFor("PIN accepted by the card")
	tp.Notify(agent.SessionEvent{Event: agent.EventSessionOpened, Session: "s1", Max: 250, Expires: time.Now().Add(time.Hour)})
	p.waitFor("signing session s1 opened: up to 250 signatures")
	tp.Notify(agent.SessionEvent{Event: agent.EventSessionEnded, Session: "s1", Reason: agent.EndLimit, Used: 250})
	p.waitFor("signing session s1 ended (" + agent.EndLimit + ") after 250 signatures")
	req := &agent.PINRequest{Documents: []agent.DocumentSummary{{ID: "rx-7", PatientInitials: "S. A.", Medicines: []string{"Amoxicillin 500 mg"}}}, MaxSignatures: 1, Signer: "Dr Test"}
	if d := describePINRequest(req, ""); !strings.Contains(d, "sign 1 prescription(s) as Dr Test") || !strings.Contains(d, "rx-7, patient S. A.: Amoxicillin 500 mg") {
		t.Fatalf("request description: %s", d)
	}
}
