package web

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParsePrescription: the display parser never panics, accepts only single valid JSON values, and never
// accepts a document whose top-level object repeats a member.
func FuzzParsePrescription(f *testing.F) {
	f.Add(bundle(f, 21))
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","name":[{"text":"a"}]}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","resourceType":"Bundle"}`))
	f.Add([]byte(`{}{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePrescription(b)
		if err != nil {
			return
		}
		if p == nil || !json.Valid(b) {
			t.Fatalf("accepted %q", b)
		}
		var top map[string]json.RawMessage
		if json.Unmarshal(b, &top) == nil {
			n := 0
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.Token() // {
			for dec.More() {
				dec.Token() // key
				var v json.RawMessage
				if dec.Decode(&v) != nil {
					return
				}
				n++
			}
			if n != len(top) {
				t.Fatalf("accepted a repeated member: %q", b)
			}
		}
	})
}
