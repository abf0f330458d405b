package remote

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzNormalizeCode: whatever a person types, normalizeCode answers "" or exactly 20 characters of the
// code alphabet; it is idempotent; and a code it accepts maps to the same ceremony ID however it is
// dashed or cased.
func FuzzNormalizeCode(f *testing.F) {
	s := &Service{cfg: Config{Rand: bytes.NewReader(bytes.Repeat([]byte{7, 200, 31, 64, 99}, 8))}}
	code, err := s.newRegistrationCode()
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{code, strings.ToLower(code), strings.ReplaceAll(code, "-", " "), "", "OIL01-abcde-fghjk-mnpqr", "ü", "-----"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n := normalizeCode(in)
		if n == "" {
			return
		}
		if len(n) != 20 || strings.Trim(n, codeAlphabet) != "" {
			t.Fatalf("normalizeCode(%q) = %q", in, n)
		}
		if normalizeCode(n) != n {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, n, normalizeCode(n))
		}
		dashed := n[:5] + "-" + n[5:10] + "-" + n[10:15] + "-" + n[15:]
		if registrationID(in) != registrationID(strings.ToLower(dashed)) {
			t.Fatalf("%q and %q open different ceremonies", in, dashed)
		}
	})
}
