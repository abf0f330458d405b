package remote_test

import (
	"encoding/hex"
	"encoding/json"
	"testing"
)

func hexDecode(s string) ([]byte, error) { return hex.DecodeString(s) }

func hexs(b []byte) string { return hex.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
