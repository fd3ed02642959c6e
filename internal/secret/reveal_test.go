package secret_test

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// revealers are the production files that may call Reveal: the points of
// injection, the redactor's feed, and (for auth.Secret, which shares the
// method name) the one response that shows a new API key. A new caller must
// be added here, in review.
var revealers = []string{
	"internal/agent/agent.go", // the redactor; the provider key stays a Value
	"internal/agent/tools.go", // a secret bound into a tool call's arguments
	"internal/auth/authtest/authtest.go",
	"internal/embed/openai.go",  // the Authorization header of a BYOK embedding call
	"internal/server/open.go",   // the guard's keyed hashes of secrets, at start
	"internal/llm/httpmodel.go", // a BYOK call's key, for its Authorization or x-api-key header
	"internal/secret/secret.go",
	"internal/server/admin.go",   // auth.Secret: a new key, shown once
	"internal/tools/httpexec.go", // the redactor for executor errors
	"internal/tools/template.go", // {{secret.NAME}} in a tool request
}

// TestRevealOnlyAtInjection walks the module's non-test source for calls of
// a method named Reveal and fails for any file not in revealers.
func TestRevealOnlyAtInjection(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	fset := gotoken.NewFileSet()
	var found []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (name == "node_modules" || name == "testdata" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Reveal" {
					if !slices.Contains(found, rel) {
						found = append(found, rel)
					}
					if !slices.Contains(revealers, rel) {
						t.Errorf("%s: calls Reveal outside the points of injection", fset.Position(call.Pos()))
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
	if !slices.Contains(found, "internal/tools/template.go") {
		t.Fatalf("found Reveal calls only in %v; is the walk broken?", found)
	}
}
