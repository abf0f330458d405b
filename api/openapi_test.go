package api

import (
	"context"
	"flag"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"
)

var update = flag.Bool("update", false, "rewrite docs/access-matrix.md from the route table")

// TestOpenAPIMatchesRoutes walks the router and the served OpenAPI document and requires the same set of
// (method, path) both ways, then validates the document with kin-openapi.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do(callerNone, "GET", "/v1/openapi.json", "", nil)
	if r.status != 200 {
		t.Fatalf("openapi.json: %d", r.status)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(r.body)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi version %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validate: %v", err)
	}

	inRouter := map[string]bool{}
	err = chi.Walk(e.srv.Routes(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		inRouter[method+" "+openAPIPath(route)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	inDoc := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inDoc[strings.ToUpper(method)+" "+path] = true
		}
	}
	for k := range inRouter {
		if !inDoc[k] {
			t.Errorf("route %s is not in the OpenAPI document", k)
		}
	}
	for k := range inDoc {
		if !inRouter[k] {
			t.Errorf("OpenAPI operation %s has no route", k)
		}
	}
	if len(inRouter) != len(routes) {
		t.Errorf("router has %d routes, table %d", len(inRouter), len(routes))
	}
	// Every JSON body the decoder accepts is described by a schema.
	for _, rt := range routes {
		if len(rt.reqTypes) > 0 && rt.reqTypes[0] == ctJSON && bodyTypes[rt.op][0] == nil {
			t.Errorf("%s takes JSON but bodyTypes has no request type", rt.op)
		}
	}
}

// TestAccessMatrixDoc keeps docs/access-matrix.md in step with the table in code. Run with -update to
// regenerate the table between the markers.
func TestAccessMatrixDoc(t *testing.T) {
	const path = "../docs/access-matrix.md"
	const begin, end = "<!-- BEGIN MATRIX (generated: go test ./api -run TestAccessMatrixDoc -update) -->\n", "<!-- END MATRIX -->\n"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the matrix markers", path)
	}
	want := AccessMatrixMarkdown()
	got := s[i+len(begin) : j]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(s[:i+len(begin)]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("%s is out of date; run go test ./api -run TestAccessMatrixDoc -update", path)
}

func TestRolesSorted(t *testing.T) {
	// The role OIDs are distinct and under hixext.OIDRoleBase.
	seen := map[string]bool{}
	var names []string
	for r, oid := range RoleOIDs {
		if seen[oid.String()] {
			t.Fatalf("duplicate OID %s", oid)
		}
		seen[oid.String()] = true
		names = append(names, string(r)+"="+oid.String())
	}
	sort.Strings(names)
	want := "auditor=2.999.1742.4.3 insurer=2.999.1742.4.5 operator=2.999.1742.4.1 pharmacy=2.999.1742.4.4 ra-officer=2.999.1742.4.2"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("role OIDs %s", got)
	}
}
