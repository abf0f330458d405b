package signing

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"
)

// TestPolicyDocumentHash keeps RxPolicyHashHex equal to the SHA-256 of docs/signature-policy.md as published.
func TestPolicyDocumentHash(t *testing.T) {
	b, err := os.ReadFile("../docs/signature-policy.md")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != RxPolicyHashHex {
		t.Fatalf("docs/signature-policy.md hashes to %s; RxPolicyHashHex is %s (a changed policy is a new policy)", got, RxPolicyHashHex)
	}
}
