package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// EverythingServer returns the command that runs the reference MCP server
// (@modelcontextprotocol/server-everything, installed under
// test/mcp-everything) over stdio, for a test in a package two directories
// below the repository's root. Node or the package missing is a loud skip,
// or a failure under BULKHEAD_REQUIRE_ALL=1.
func EverythingServer(t testing.TB) []string {
	t.Helper()
	const hint = "run `npm ci --prefix test/mcp-everything`"
	node, err := exec.LookPath("node")
	Require(t, "node", err == nil, "install Node.js 20 or later, then "+hint)
	script, err := filepath.Abs(filepath.Join("..", "..", "test", "mcp-everything", "node_modules",
		"@modelcontextprotocol", "server-everything", "dist", "index.js"))
	if err == nil {
		_, err = os.Stat(script)
	}
	Require(t, "the server-everything npm package", err == nil, hint)
	return []string{node, script, "stdio"}
}
