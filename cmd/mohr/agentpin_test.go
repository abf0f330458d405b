package main

import "testing"

// TestAgentPINEntry: the terminal prompt stays the default; "web" gives the PIN page; anything else is refused.
func TestAgentPINEntry(t *testing.T) {
	for _, tc := range []struct {
		entry    string
		page, ok bool
	}{{"", false, true}, {"terminal", false, true}, {"web", true, true}, {"gui", false, false}, {"Web", false, false}} {
		fn, page, err := agentPIN(&agentConfig{PINEntry: tc.entry}, "127.0.0.1:7433")
		if (err == nil) != tc.ok || tc.ok && fn == nil || (page != nil) != tc.page {
			t.Errorf("%q: fn %v page %v err %v", tc.entry, fn != nil, page != nil, err)
		}
	}
}
