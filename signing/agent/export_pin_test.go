package agent

// PINRequestForTest summarises docs as the PIN page shows them.
func PINRequestForTest(docs [][]byte) []DocumentSummary {
	var out []DocumentSummary
	for _, d := range docs {
		out = append(out, summarise(Document{Content: d}))
	}
	return out
}
