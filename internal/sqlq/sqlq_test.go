package sqlq

import "testing"

func TestRebind(t *testing.T) {
	q := "SELECT a FROM t WHERE b = ? AND c IN (?, ?)"
	if got := Rebind(false, q); got != q {
		t.Fatalf("SQLite: %q", got)
	}
	if got, want := Rebind(true, q), "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"; got != want {
		t.Fatalf("PostgreSQL: %q, want %q", got, want)
	}
}
