// Package sqlq holds what Mohr's SQL stores outside internal/store share: query text written once for SQLite
// and PostgreSQL.
package sqlq

import (
	"strconv"
	"strings"
)

// Rebind rewrites the ? placeholders of query to PostgreSQL's $1, $2, ... when postgres is true; SQLite takes
// query as it is. Queries must not carry a literal '?' (none of Mohr's do).
func Rebind(postgres bool, query string) string {
	if !postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}
