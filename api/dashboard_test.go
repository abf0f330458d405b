package api

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestGrafanaDashboard keeps docs/grafana/mohr.json true: it is a Grafana dashboard whose every query names
// only metrics that Mohr exports (this package's registry, the agent's metrics), with balanced brackets.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../docs/grafana/mohr.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	m := newMetrics()
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inflight, m.verifications} {
		ch := make(chan *prometheus.Desc, 4)
		c.Describe(ch)
		close(ch)
		for desc := range ch {
			if n := regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(desc.String()); n != nil {
				known[n[1]] = true
			}
		}
	}
	// The agent's metrics (signing/agent/metrics.go), read from its source: api does not import the agent.
	src, err := os.ReadFile(filepath.Join("..", "signing", "agent", "metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range regexp.MustCompile(`Name: "(mohr_agent_[a-z_]+)"`).FindAllSubmatch(src, -1) {
		known[string(n[1])] = true
	}
	if len(known) < 10 {
		t.Fatalf("found only %v", known)
	}
	queries := 0
	used := map[string]bool{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			queries++
			for _, n := range regexp.MustCompile(`mohr_[a-z_]+`).FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
				if !known[base] {
					t.Errorf("panel %q: unknown metric %s", p.Title, n)
				}
				used[base] = true
			}
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}")+strings.Count(tg.Expr, `\\{`)-strings.Count(tg.Expr, `\\}`) {
				t.Errorf("panel %q: unbalanced %s", p.Title, tg.Expr)
			}
		}
	}
	for n := range known {
		if !used[n] {
			t.Errorf("metric %s has no panel", n)
		}
	}
	if d.UID == "" || queries < 20 {
		t.Errorf("dashboard %q with %d queries", d.UID, queries)
	}
}
