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
// matching one of deny, except those matching allow. Packages matching
// exempt are not bound by the rule, nor, for a rule that keeps a concrete
// backend to the wiring, test-support packages that set one up for tests.
type layerRule struct {
	from     string
	deny     []string
	allow    []string
	exempt   []string
	concrete bool
	why      string
}

// upper is everything above the storage and security leaves.
var upper = []string{"internal/agent", "internal/server", "cmd/...", "internal/memory", "internal/control"}

// domain are the packages that decide or carry what the runtime does, as
// opposed to the leaves that name things (tenant, kind, secret), check
// identity (auth) or seal bytes (keyring, auditchain).
var domain = append([]string{"internal/audit", "internal/cache", "internal/config", "internal/embed", "internal/guard",
	"internal/lifecycle", "internal/llm", "internal/policy", "internal/quota", "internal/redact", "internal/tools",
	"internal/upstream", "internal/vector"}, upper...)

// stores are the places tenant and control data are kept.
var stores = []string{"internal/store/...", "internal/control/..."}

// The concrete backends and their drivers, which only cmd and server choose.
// Each may be used by the packages that implement the backend, beside their
// in-memory twins (the Redis cache and limiter, the SQLite and PostgreSQL
// stores and control plane); choosing between them is the wiring's.
var (
	concreteStores = []string{"internal/store/sqlite", "internal/store/postgres"}
	redisDriver    = []string{"github.com/redis/go-redis/..."}
	postgresDriver = []string{"github.com/jackc/pgx/..."}
	wiring         = []string{"internal/server"}
)

var layerRules = []layerRule{
	{from: "internal/store/...", deny: domain,
		why: "storage is the bottom of the data plane: it knows records, not who writes them"},
	{from: "internal/auditchain", deny: []string{"internal/..."}, allow: []string{"internal/kind", "internal/store"},
		why: "the chain is a leaf that stores and audit both use"},
	{from: "internal/audit", deny: append([]string{"internal/tools", "internal/guard", "internal/policy", "internal/llm"}, upper...),
		why: "audit records what the layers above it decide"},
	{from: "internal/guard/...", deny: upper, why: "the guard is a pure check under the agent"},
	{from: "internal/redact/...", deny: upper, why: "the redactor is a pure transform under the agent"},
	{from: "internal/policy/...", deny: upper, why: "policy is a pure function under the agent"},
	{from: "internal/tools/...", deny: upper, why: "tool executors run under the agent"},
	{from: "internal/llm/...", deny: stores, why: "model clients get what they send from the agent, never from a store"},
	{from: "internal/embed/...", deny: stores, why: "embedders get text from memory, never from a store"},
	{from: "internal/tools/...", deny: stores, why: "tool executors get their secrets from the agent, never from a store"},
	{from: "internal/secret/...", deny: []string{"internal/..."}, why: "the secret type is a leaf"},
	{from: "internal/textnorm/...", deny: []string{"internal/..."}, why: "normalisation is a leaf every matcher shares"},
	{from: "internal/tenant", deny: []string{"internal/..."}, why: "ids are a leaf"},
	{from: "internal/sqliteuri", deny: []string{"internal/..."}, why: "how a database path becomes a URI is a leaf both SQLite backends share"},
	{from: "internal/kind", deny: []string{"internal/..."}, why: "error kinds are a leaf"},
	{from: "internal/label", deny: []string{"internal/..."}, why: "labels are a leaf: computed from provenance, they read nothing"},
	{from: "internal/auth", deny: []string{"internal/..."}, allow: []string{"internal/kind", "internal/tenant", "internal/layers", "internal/websession"},
		why: "identity comes from credentials alone (websession seals the console's cookies; layers is the red team's test-only switch, the constant false in production)"},
	{from: "internal/websession", deny: []string{"internal/..."}, allow: []string{"internal/tenant"},
		why: "console session cookies are sealed bytes: they name a principal, they check no credential"},
	{from: "internal/layers", deny: []string{"internal/..."}, why: "the red team's switch is a leaf every layer may call"},
	{from: "internal/agent", deny: []string{"internal/server", "cmd/..."}, why: "the agent is driven by the server"},
	{from: "internal/...", deny: concreteStores, exempt: append([]string{"internal/store/..."}, wiring...), concrete: true,
		why: "only cmd and server wire concrete implementations"},
	{from: "internal/...", deny: redisDriver, exempt: append([]string{"internal/cache", "internal/quota", "internal/config", "internal/testenv"}, wiring...), concrete: true,
		why: "only cmd and server connect to Redis (config builds the client the configuration describes)"},
	{from: "internal/...", deny: postgresDriver, exempt: append([]string{"internal/store/...", "internal/control/..."}, wiring...), concrete: true,
		why: "only cmd and server connect to PostgreSQL"},
}

// exempt reports whether rule r does not bind pkg although its from pattern
// matches.
func exempt(r layerRule, pkg string) bool {
	return slices.ContainsFunc(r.exempt, func(e string) bool { return match(e, pkg) }) || (r.concrete && isTestSupport(pkg))
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
// for, including the one the store once had, and allow the wiring's.
func TestImportLayersCatchBackEdges(t *testing.T) {
	tests := []struct {
		from, imp string
		want      bool // a violation
	}{
		{"internal/store/sqlite", "internal/audit", true},
		{"internal/store/postgres", "internal/lifecycle", true},
		{"internal/store", "internal/config", true},
		{"internal/store/sqlite", "internal/keyring", false},
		{"internal/guard", "internal/agent", true},
		{"internal/redact", "internal/server", true},
		{"internal/auth", "internal/store", true},
		{"internal/llm", "internal/store", true},
		{"internal/embed", "internal/store/sqlite", true},
		{"internal/tools", "internal/control", true},
		{"internal/llm", "internal/redact", false},
		{"internal/memory", "internal/store/sqlite", true},
		{"internal/memory", "internal/store", false},
		{"internal/agent", "internal/store/storetest", true},
		{"internal/agent", "github.com/redis/go-redis/v9", true},
		{"internal/memory", "github.com/jackc/pgx/v5/pgxpool", true},
		{"internal/cache", "github.com/redis/go-redis/v9", false},
		{"internal/quota", "github.com/redis/go-redis/v9", false},
		{"internal/store/postgres", "github.com/jackc/pgx/v5", false},
		{"internal/control", "github.com/jackc/pgx/v5", false},
		{"internal/testenv", "github.com/jackc/pgx/v5", false},
		{"internal/server", "internal/store/sqlite", false},
		{"internal/server", "github.com/redis/go-redis/v9", false},
		{"internal/store/sqlite/x", "internal/store/sqlite", false},
		{"cmd/bulkhead", "internal/store/sqlite", false},
		{"cmd/bulkhead", "internal/server", false},
	}
	for _, tt := range tests {
		got := violations(map[string][]string{tt.from: {tt.imp}}, layerRules)
		if (len(got) > 0) != tt.want {
			t.Errorf("%s imports %s: got violations %q, want a violation: %v", tt.from, tt.imp, got, tt.want)
		}
	}
}
