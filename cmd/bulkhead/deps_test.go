package main

import (
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The import graph is part of the design: data flows one way (see DESIGN.md,
// "Architecture"), packages depend on the ones below them through small
// interfaces, and only cmd and server wire concrete implementations. The
// compiler stops cycles; these rules stop the edges that compile but point
// the wrong way, as Tailscale's deps_test.go does.

const modulePath = "github.com/bulkhead-ai/bulkhead"

// layerRule forbids packages matching from (a module-relative path; a
// trailing "/..." also matches the packages under it) to import any package
// matching one of deny, except those matching allow.
type layerRule struct {
	from  string
	deny  []string
	allow []string
	why   string
}

// upper is everything above the storage and security leaves.
var upper = []string{"internal/agent", "internal/server", "cmd/...", "internal/memory", "internal/control"}

// concrete are the storage backends only cmd and server may choose. (The
// Redis-backed cache and quota live beside their in-memory twins; choosing
// between them is cmd's.)
var concrete = []string{"internal/store/sqlite", "internal/store/postgres"}

var layerRules = []layerRule{
	{from: "internal/store/...", deny: append([]string{"internal/audit", "internal/tools", "internal/guard", "internal/policy", "internal/llm"}, upper...),
		why: "storage is the bottom of the data plane: it knows records, not who writes them"},
	{from: "internal/auditchain", deny: []string{"internal/..."}, allow: []string{"internal/kind", "internal/store"},
		why: "the chain is a leaf that stores and audit both use"},
	{from: "internal/audit", deny: append([]string{"internal/tools", "internal/guard", "internal/policy", "internal/llm"}, upper...),
		why: "audit records what the layers above it decide"},
	{from: "internal/guard/...", deny: upper, why: "the guard is a pure check under the agent"},
	{from: "internal/redact/...", deny: upper, why: "the redactor is a pure transform under the agent"},
	{from: "internal/policy/...", deny: upper, why: "policy is a pure function under the agent"},
	{from: "internal/tools/...", deny: upper, why: "tool executors run under the agent"},
	{from: "internal/secret/...", deny: []string{"internal/..."}, why: "the secret type is a leaf"},
	{from: "internal/textnorm/...", deny: []string{"internal/..."}, why: "normalisation is a leaf every matcher shares"},
	{from: "internal/tenant", deny: []string{"internal/..."}, why: "ids are a leaf"},
	{from: "internal/kind", deny: []string{"internal/..."}, why: "error kinds are a leaf"},
	{from: "internal/auth", deny: []string{"internal/..."}, allow: []string{"internal/kind", "internal/tenant"},
		why: "identity comes from credentials alone"},
	{from: "internal/agent", deny: []string{"internal/server", "cmd/..."}, why: "the agent is driven by the server"},
	{from: "internal/...", deny: concrete, allow: nil,
		why: "only cmd and server wire concrete implementations"},
}

// exempt lists the packages a rule's from pattern matches but that the rule
// does not bind: the server may wire concrete implementations too, and a
// concrete store may use its own package.
func exempt(r layerRule, pkg string) bool {
	if slices.Equal(r.deny, concrete) {
		return pkg == "internal/server" || match("internal/store/...", pkg) || isTestSupport(pkg)
	}
	return false
}

// match reports whether pkg (module-relative or external) matches pattern.
func match(pattern, pkg string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
	}
	return pkg == pattern
}

func isTestSupport(pkg string) bool {
	base := filepath.Base(pkg)
	return strings.HasSuffix(base, "test") || base == "testenv"
}

// violations checks graph (package → its non-test imports, module packages
// relative to the module) against rules.
func violations(graph map[string][]string, rules []layerRule) []string {
	var out []string
	pkgs := make([]string, 0, len(graph))
	for p := range graph {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, p := range pkgs {
		for _, imp := range graph[p] {
			if !isTestSupport(p) && isTestSupport(imp) && !strings.Contains(imp, ".") {
				out = append(out, p+" imports test-support package "+imp)
			}
			for _, r := range rules {
				if !match(r.from, p) || exempt(r, p) {
					continue
				}
				denied := slices.ContainsFunc(r.deny, func(d string) bool { return match(d, imp) })
				allowed := slices.ContainsFunc(r.allow, func(a string) bool { return match(a, imp) })
				if denied && !allowed {
					out = append(out, p+" imports "+imp+": "+r.why)
				}
			}
		}
	}
	return out
}

// importGraph reads the non-test imports of every package in the module.
func importGraph(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	graph := map[string][]string{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != root && (name == "node_modules" || name == "testdata" || strings.HasPrefix(name, ".")) {
			return filepath.SkipDir
		}
		pkg, err := build.Default.ImportDir(path, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		var imps []string
		for _, imp := range pkg.Imports {
			imps = append(imps, strings.TrimPrefix(imp, modulePath+"/"))
		}
		graph[filepath.ToSlash(rel)] = imps
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return graph
}

func TestImportLayers(t *testing.T) {
	graph := importGraph(t)
	for _, p := range []string{"internal/store/sqlite", "internal/audit", "internal/server", "cmd/bulkhead"} {
		if _, ok := graph[p]; !ok {
			t.Fatalf("package %s not found; the walk is broken (found %d packages)", p, len(graph))
		}
	}
	for _, v := range violations(graph, layerRules) {
		t.Error(v)
	}
}

// TestImportLayersCatchBackEdges shows the rules reject the edges they are
// for, including the one the store once had.
func TestImportLayersCatchBackEdges(t *testing.T) {
	graph := map[string][]string{
		"internal/store/sqlite":   {"internal/audit"},
		"internal/guard":          {"internal/agent"},
		"internal/redact":         {"internal/server"},
		"internal/auth":           {"internal/store"},
		"internal/memory":         {"internal/store/sqlite"},
		"internal/agent":          {"internal/store/storetest"},
		"internal/server":         {"internal/store/sqlite"}, // allowed
		"internal/store/sqlite/x": {"internal/store/sqlite"}, // allowed
		"cmd/bulkhead":            {"internal/store/sqlite", "internal/server"},
	}
	got := violations(graph, layerRules)
	if len(got) != 6 {
		t.Fatalf("got %d violations, want 6:\n%s", len(got), strings.Join(got, "\n"))
	}
}
