package outpost_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// metricName is the naming contract: outpost_<component>_<what>.
var metricName = regexp.MustCompile(`^outpost_[a-z]+_[a-z0-9_]+$`)

// sourceMetrics finds every metric name the production code defines: the
// Name of a prometheus.*Opts literal, the first argument of
// prometheus.NewDesc, and the first argument of a local constructor called
// as f("outpost_…", "help", …) (edge/node and core/service wrap mochi's and
// their own counters that way). Names are string literals, so this test and
// grep find them all.
func sourceMetrics(t *testing.T) map[string]string {
	t.Helper()
	found := map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				sel, ok := n.Type.(*ast.SelectorExpr)
				if !ok || !isPkg(sel.X, "prometheus") || !strings.HasSuffix(sel.Sel.Name, "Opts") {
					return true
				}
				for _, e := range n.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok || !isIdent(kv.Key, "Name") {
						continue
					}
					if _, param := kv.Value.(*ast.Ident); param {
						continue // a constructor's parameter: found at its call sites
					}
					found[literal(t, fset, kv.Value)] = path
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if ok && isPkg(sel.X, "prometheus") && sel.Sel.Name == "NewDesc" && len(n.Args) > 0 {
					found[literal(t, fset, n.Args[0])] = path
					return true
				}
				if len(n.Args) >= 2 {
					name, ok1 := n.Args[0].(*ast.BasicLit)
					help, ok2 := n.Args[1].(*ast.BasicLit)
					if ok1 && ok2 && name.Kind == token.STRING && help.Kind == token.STRING &&
						strings.HasPrefix(name.Value, `"outpost_`) {
						found[literal(t, fset, name)] = path
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func isPkg(e ast.Expr, name string) bool { id, ok := e.(*ast.Ident); return ok && id.Name == name }
func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func literal(t *testing.T, fset *token.FileSet, e ast.Expr) string {
	t.Helper()
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		t.Errorf("%s: a metric name must be a string literal, so this test and grep can find it", fset.Position(e.Pos()))
		return ""
	}
	s, err := strconv.Unquote(lit.Value)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMetricsDocumented keeps docs/metrics.md and the code in step: every
// metric the code defines is named outpost_<component>_… and has a row in
// the reference table, and every row names a metric that exists.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if m := regexp.MustCompile("^\\| `([a-z0-9_]+)` \\|").FindStringSubmatch(line); m != nil {
			documented[m[1]] = true
		}
	}
	code := sourceMetrics(t)
	if len(code) < 40 {
		t.Fatalf("found only %d metrics in the code; the scan is broken", len(code))
	}
	var names []string
	for name := range code {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !metricName.MatchString(name) {
			t.Errorf("%s (%s): metric names are outpost_<component>_<what>", name, code[name])
		}
		if !documented[name] {
			t.Errorf("%s (%s) has no row in docs/metrics.md", name, code[name])
		}
	}
	for name := range documented {
		if _, ok := code[name]; !ok {
			t.Errorf("docs/metrics.md lists %s, which no code defines", name)
		}
	}
}
