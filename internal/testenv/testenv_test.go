package testenv

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recTB records how a helper ended a test.
type recTB struct {
	testing.TB
	failed, skipped bool
}

func (r *recTB) Helper()                        {}
func (r *recTB) Fatalf(string, ...any)          { r.failed = true; panic(r) }
func (r *recTB) Skipf(string, ...any)           { r.skipped = true; panic(r) }
func (r *recTB) Cleanup(func())                 {}
func (r *recTB) Logf(format string, a ...any)   {}
func (r *recTB) Errorf(format string, a ...any) { r.failed = true }

// tool runs Tool on a recTB, catching the stop that FailNow/SkipNow would make.
func tool(r *recTB, name string) (p string) {
	defer func() {
		if v := recover(); v != nil && v != r {
			panic(v)
		}
	}()
	return Tool(r, name)
}

// TestToolMissingFailsWhenRequired: with MOHR_REQUIRE_SERVICES=1 a missing tool fails the test; without it, the
// test skips; an installed tool is found.
func TestToolMissingFailsWhenRequired(t *testing.T) {
	t.Setenv("MOHR_REQUIRE_SERVICES", "1")
	r := &recTB{}
	tool(r, "mohr-no-such-tool")
	if !r.failed || r.skipped {
		t.Fatalf("required: failed=%v skipped=%v", r.failed, r.skipped)
	}
	t.Setenv("MOHR_REQUIRE_SERVICES", "")
	r = &recTB{}
	tool(r, "mohr-no-such-tool")
	if r.failed || !r.skipped {
		t.Fatalf("not required: failed=%v skipped=%v", r.failed, r.skipped)
	}
	r = &recTB{}
	if p := tool(r, "sh"); p == "" || r.failed || r.skipped {
		t.Fatalf("sh: %q failed=%v skipped=%v", p, r.failed, r.skipped)
	}
}

// TestNoTestLooksUpToolsItself: outside tools are found through Tool only, so none can be silently skipped
// (or silently not run) when it is missing. Every exec.LookPath in a _test.go file outside this package is a
// finding.
func TestNoTestLooksUpToolsItself(t *testing.T) {
	root := filepath.Join("..", "..")
	var bad []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") || filepath.Dir(p) == "." {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, src, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "LookPath" {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "exec" {
					bad = append(bad, p)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Fatalf("tests look tools up with exec.LookPath instead of testenv.Tool: %v", bad)
	}
}
