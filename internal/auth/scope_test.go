package auth_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
)

func TestZeroScopeIsInvalid(t *testing.T) {
	var s auth.Scope
	if s.Valid() {
		t.Fatal("zero Scope reports Valid")
	}
	if s.WithUser("alice").Valid() {
		t.Fatal("zero Scope with a user reports Valid")
	}
	got := authtest.Scope(t, "acme", "bob").WithUser("alice")
	if got.Tenant() != "acme" || got.User() != "alice" {
		t.Fatalf("WithUser: got (%q, %q), want (acme, alice)", got.Tenant(), got.User())
	}
}

// TestOnlyAuthMakesScopes walks the module's source and fails if any
// non-test file outside package auth builds a Scope (a composite literal,
// new(auth.Scope)). Together with the unexported fields, this keeps
// authentication the only source of identity; tests get a Scope from
// authtest, which authenticates a request like production does, and package
// auth itself has no test-only constructor.
func TestOnlyAuthMakesScopes(t *testing.T) {
	root := moduleRoot(t)
	authDir := filepath.Join(root, "internal", "auth")
	fset := token.NewFileSet()
	var checked int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "node_modules" || strings.HasPrefix(name, ".") && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		if filepath.Dir(path) == authDir {
			// Package auth builds Scopes, but none for tests: a helper
			// taking a testing.TB would be a backdoor any package can call.
			f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				if imp.Path.Value == `"testing"` {
					t.Errorf("%s: package auth imports testing: test helpers belong in authtest", fset.Position(imp.Pos()))
				}
			}
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		if isTestSupport(filepath.Dir(path)) {
			return nil // imported by tests only, as the check below enforces
		}
		for _, imp := range f.Imports {
			if p := strings.Trim(imp.Path.Value, `"`); isTestSupport(p) {
				t.Errorf("%s: production code imports test-support package %s", fset.Position(imp.Pos()), p)
			}
		}
		if f, err = parser.ParseFile(fset, path, nil, 0); err != nil {
			return err
		}
		checked++
		for _, v := range scopeConstructions(f) {
			t.Errorf("%s: %s outside package auth", fset.Position(v.Pos()), v.what)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("checked only %d files; is the module root %s right?", checked, root)
	}
}

func TestScopeDetectorFindsViolations(t *testing.T) {
	src := `package x
import a "github.com/bulkhead-ai/bulkhead/internal/auth"
var s1 = a.Scope{}
var s2 = new(a.Scope)
var s3 = &a.Scope{}
`
	f, err := parser.ParseFile(token.NewFileSet(), "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(scopeConstructions(f)), 3; got != want {
		t.Fatalf("found %d violations, want %d", got, want)
	}
}

type violation struct {
	ast.Node
	what string
}

// scopeConstructions finds the ways f could make a Scope.
func scopeConstructions(f *ast.File) []violation {
	authName := ""
	for _, imp := range f.Imports {
		if strings.Trim(imp.Path.Value, `"`) == "github.com/bulkhead-ai/bulkhead/internal/auth" {
			authName = "auth"
			if imp.Name != nil {
				authName = imp.Name.Name
			}
		}
	}
	if authName == "" {
		return nil
	}
	isAuth := func(e ast.Expr, name string) bool {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != name {
			return false
		}
		id, ok := sel.X.(*ast.Ident)
		return ok && id.Name == authName
	}
	var out []violation
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CompositeLit:
			if isAuth(n.Type, "Scope") {
				out = append(out, violation{n, "auth.Scope literal"})
			}
		case *ast.CallExpr:
			if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "new" && len(n.Args) == 1 && isAuth(n.Args[0], "Scope") {
				out = append(out, violation{n, "new(auth.Scope)"})
			}
		}
		return true
	})
	return out
}

// isTestSupport reports whether the package at dir (a path or import path)
// exists only to help tests, like authtest, storetest or testenv; production
// packages may not import them.
func isTestSupport(dir string) bool {
	base := filepath.Base(dir)
	return strings.HasSuffix(base, "test") || base == "testenv"
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}
