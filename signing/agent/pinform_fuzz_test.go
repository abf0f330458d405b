package agent

import (
	"bytes"
	"net/url"
	"testing"
)

// FuzzPINForm: the PIN form reader never panics, and a PIN encoded as a browser encodes a form field comes
// back byte for byte (less surrounding spaces).
func FuzzPINForm(f *testing.F) {
	f.Add([]byte("73915482"))
	f.Add([]byte(" 1234 "))
	f.Add([]byte("%zz&pin=+"))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, pin []byte) {
		formFields(pin) // arbitrary bodies
		body := []byte("action=sign&pin=" + url.QueryEscape(string(pin)))
		action, got := formFields(body)
		if action != "sign" || !bytes.Equal(got, bytes.TrimSpace(pin)) {
			t.Fatalf("pin %q came back as %q (action %q)", pin, got, action)
		}
	})
}
