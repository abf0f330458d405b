package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mohr-hix/mohr/signing/agent"
)

// ttyPrompter asks the physician for the PIN on the agent's controlling terminal (pin_entry: terminal).
//
// Unlike term.ReadPassword, whose blocking read nothing can interrupt, it reads through the runtime poller
// with a deadline: a prompt ends when its EMR request is abandoned (ctx) or after Timeout, and its read ends
// with it, so a later prompt never loses its PIN to an earlier, abandoned one. Type-ahead is discarded
// (TCIFLUSH) before each prompt, so keys typed for an abandoned prompt are not taken as the next PIN. Echo is
// off while the PIN is typed (the kernel's canonical line editing stays on: backspace works). The terminal
// says which request asks and what the PIN will allow, then the card's answer (accepted, wrong PIN with the
// tries left, blocked), and the agent's session events (Notify).
type ttyPrompter struct {
	Path    string        // the terminal, /dev/tty
	Timeout time.Duration // PIN entry time-out

	mu sync.Mutex // one prompt at a time on the terminal
}

// newTTYPrompter is the prompter on the agent's controlling terminal with c's time-out.
func newTTYPrompter(c *agentConfig) *ttyPrompter {
	t := time.Duration(c.PINTimeout)
	if t <= 0 {
		t = 2 * time.Minute
	}
	return &ttyPrompter{Path: "/dev/tty", Timeout: t}
}

// errNoTerminal: the agent has no terminal to ask the PIN on.
var errNoTerminal = fmt.Errorf("%w: no terminal for the PIN prompt: run mohr agent in a terminal, or set pin_entry: web in the agent configuration", agent.ErrPINUnavailable)

// check opens the terminal once, at start: an agent without one warns then, not at the first session.
func (p *ttyPrompter) check() error {
	f, err := os.OpenFile(p.Path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return errNoTerminal
	}
	f.Close()
	return nil
}

// say writes a line to the terminal, if there is one (best effort: it is a notice).
func (p *ttyPrompter) say(format string, args ...any) {
	f, err := os.OpenFile(p.Path, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "[mohr agent %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Notify shows the agent's session events on the terminal (agent.Config.Notify).
func (p *ttyPrompter) Notify(ev agent.SessionEvent) {
	switch ev.Event {
	case agent.EventSessionOpened:
		p.say("signing session %s opened: up to %d signatures until %s", ev.Session, ev.Max, ev.Expires.Local().Format("15:04"))
	case agent.EventSessionEnded:
		p.say("signing session %s ended (%s) after %d signatures", ev.Session, ev.Reason, ev.Used)
	}
}

// Prompt is the agent's keys.PINFunc.
func (p *ttyPrompter) Prompt(ctx context.Context, prompt string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p.Path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, errNoTerminal
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, errNoTerminal
	}
	var old *unix.Termios
	var terr error
	rc.Control(func(fd uintptr) {
		if old, terr = unix.IoctlGetTermios(int(fd), unix.TCGETS); terr != nil {
			return
		}
		// Discard type-ahead: keys typed for an earlier, abandoned prompt are not this PIN.
		unix.IoctlSetInt(int(fd), unix.TCFLSH, unix.TCIFLUSH)
		t := *old
		t.Lflag &^= unix.ECHO
		t.Lflag |= unix.ICANON | unix.ECHONL
		terr = unix.IoctlSetTermios(int(fd), unix.TCSETS, &t)
	})
	if terr != nil {
		return nil, fmt.Errorf("%w (%v)", errNoTerminal, terr)
	}
	defer rc.Control(func(fd uintptr) { unix.IoctlSetTermios(int(fd), unix.TCSETS, old) })

	req, _ := agent.PINRequestFrom(ctx)
	fmt.Fprintf(f, "\n[mohr agent %s] %s\n", time.Now().Format("15:04:05"), describePINRequest(req, prompt))
	fmt.Fprintf(f, "PIN (%d s; Enter on an empty line cancels): ", int(p.Timeout.Seconds()))

	deadline := time.Now().Add(p.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	f.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	pin, err := readLine(f, 64)
	switch {
	case err == nil && len(pin) == 0:
		fmt.Fprintln(f, "cancelled.")
		return nil, agent.ErrPINCancelled
	case err == nil:
	case ctx.Err() != nil:
		fmt.Fprintln(f, "\nthe request was withdrawn by the EMR; nothing was signed.")
		return nil, ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		fmt.Fprintln(f, "\nno PIN entered in time; nothing was signed.")
		return nil, fmt.Errorf("%w: no PIN entered within %v", agent.ErrPINTimeout, p.Timeout)
	default:
		return nil, fmt.Errorf("%w (%v)", errNoTerminal, err)
	}
	if req != nil {
		// The card's answer, once the agent has presented the PIN.
		go func() {
			octx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			p.outcome(req.Outcome(octx))
		}()
	}
	return pin, nil
}

// outcome tells the physician what the card said to the PIN.
func (p *ttyPrompter) outcome(err error) {
	var pe *agent.PINError
	switch {
	case err == nil:
		p.say("PIN accepted by the card")
	case errors.As(err, &pe) && pe.Retries == 0:
		p.say("the card's PIN is now blocked")
	case errors.As(err, &pe) && pe.Retries > 0:
		p.say("wrong PIN: %d tries left on the card; nothing was signed", pe.Retries)
	case errors.As(err, &pe):
		p.say("wrong PIN; nothing was signed")
	case errors.Is(err, context.DeadlineExceeded):
	default:
		p.say("the card could not be used: %v", err)
	}
}

// describePINRequest says which request asks for the PIN and what it will allow.
func describePINRequest(req *agent.PINRequest, prompt string) string {
	if req == nil {
		return prompt
	}
	var b strings.Builder
	if len(req.Documents) == 0 {
		fmt.Fprintf(&b, "the EMR asks to open a signing session for %s: up to %d signatures within %v", req.Signer, req.MaxSignatures, req.Duration.Round(time.Minute))
		return b.String()
	}
	fmt.Fprintf(&b, "the EMR asks to sign %d prescription(s) as %s:", len(req.Documents), req.Signer)
	for i, d := range req.Documents {
		if i == 5 {
			fmt.Fprintf(&b, "\n  ... and %d more", len(req.Documents)-5)
			break
		}
		meds := strings.Join(d.Medicines, ", ")
		if meds == "" {
			meds = "(content not readable)"
		}
		fmt.Fprintf(&b, "\n  %s, patient %s: %s", d.ID, d.PatientInitials, meds)
	}
	return b.String()
}

// readLine reads up to a newline (not kept) from r, at most max bytes; a longer line is an error. The bytes
// read are wiped from the buffer they passed through.
func readLine(r io.Reader, max int) ([]byte, error) {
	var buf [1]byte
	out := make([]byte, 0, max) // never reallocated: no copy of the PIN is left behind
	for {
		n, err := r.Read(buf[:])
		if n == 1 {
			switch buf[0] {
			case '\n', '\r':
				buf[0] = 0
				return out, nil
			}
			if len(out) == max {
				clear(out)
				buf[0] = 0
				return nil, errors.New("PIN too long")
			}
			out = append(out, buf[0])
		}
		if err != nil {
			clear(out)
			buf[0] = 0
			if errors.Is(err, io.EOF) {
				return nil, errNoTerminal
			}
			return nil, err
		}
	}
}
