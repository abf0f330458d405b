package main

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/mohr-hix/mohr/keys"
	"github.com/mohr-hix/mohr/signing/agent"
)

// agentPIN picks how the agent asks the physician for the PIN: the terminal prompt (pin_entry: terminal, the
// default, for headless use) or the PIN page on the agent's own listener (pin_entry: web), whose URL the
// EMR reads from GET /v1/pin and, with pin_open_browser, the agent opens with xdg-open.
func agentPIN(c *agentConfig, listenAddr string) (keys.PINFunc, *agent.PINPage, error) {
	switch c.PINEntry {
	case "", "terminal":
		return newTTYPrompter(c).Prompt, nil, nil
	case "web":
	default:
		return nil, nil, fmt.Errorf("agent config: pin_entry must be terminal or web, not %q", c.PINEntry)
	}
	open := func(string) {}
	if c.PINOpenBrowser {
		open = func(u string) {
			// The URL is a one-time secret: it goes to the browser's command line, never to the log.
			cmd := exec.CommandContext(context.Background(), "xdg-open", u)
			if cmd.Start() == nil {
				go cmd.Wait()
			}
		}
	}
	p, err := agent.NewPINPage(agent.PINPageConfig{BaseURL: "http://" + listenAddr, Open: open})
	if err != nil {
		return nil, nil, err
	}
	return p.Prompt, p, nil
}
