package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

const mcpClientHint = "run `npm ci --prefix test/mcp-client` and `npm ci --prefix test/mcp-everything`"

// mcpClientResult is the JSON line test/mcp-client/client.mjs prints.
type mcpClientResult struct {
	SessionID string
	Tools     []struct {
		Name   string
		Schema json.RawMessage
	}
	HTTP, MCP, Other struct {
		IsError bool
		Text    string
	}
	Resources []string
	Resource  string
}

// TestMCPTypeScriptSDK drives a live bulkhead serve's /mcp with the official
// MCP TypeScript SDK client: it lists the tenant's tools, calls an HTTP tool
// (the tenant's secret injected, never shown) and an upstream MCP tool (the
// reference server-everything), is refused another tenant's tool, and
// reads a document as a resource.
func TestMCPTypeScriptSDK(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	testenv.Require(t, "node", err == nil, "install Node.js 20 or later, then "+mcpClientHint)
	_, err = os.Stat(filepath.Join("..", "..", "test", "mcp-client", "node_modules", "@modelcontextprotocol", "sdk", "package.json"))
	testenv.Require(t, "the @modelcontextprotocol/sdk npm package", err == nil, mcpClientHint)
	everything, err := filepath.Abs(filepath.Join("..", "..", "test", "mcp-everything", "node_modules",
		"@modelcontextprotocol", "server-everything", "dist", "index.js"))
	if err == nil {
		_, err = os.Stat(everything)
	}
	testenv.Require(t, "the server-everything npm package", err == nil, mcpClientHint)

	const token = "acme-crm-token-5e6f7a8b"
	var mu sync.Mutex
	var seenAuth string
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		mu.Lock()
		seenAuth = auth
		mu.Unlock()
		b, _ := io.ReadAll(r.Body)
		// A careless upstream echoes the credential back.
		w.Write([]byte(`{"got":` + string(b) + `,"auth":"` + auth + `"}`))
	}))
	defer crm.Close()

	base, admin := startServer(t)
	for _, tool := range []map[string]any{
		{"name": "crm_lookup", "description": "Look up a customer", "scope": "tenant",
			"parameters": json.RawMessage(`{"type":"object","properties":{"customer":{"type":"string"},"tenant_id":{"type":"string"}},"required":["customer"]}`),
			"bound":      map[string]string{"tenant_id": "tenant.id"},
			"http": map[string]any{"method": "POST", "url": crm.URL + "/lookup",
				"headers": map[string]string{"Authorization": "Bearer {{secret.crm_token}}"}}},
		{"name": "everything_echo", "description": "Echo", "scope": "tenant",
			"parameters": json.RawMessage(`{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}`),
			"mcp":        map[string]any{"command": []string{node, everything, "stdio"}, "tool": "echo"}},
	} {
		if status, b := call(t, http.MethodPost, base+"/admin/v1/tools", admin, tool); status != http.StatusCreated {
			t.Fatalf("create tool: %d %s", status, b)
		}
	}
	createTenantKey(t, base, admin, map[string]any{"id": "globex", "tools": []string{}})
	if status, b := call(t, http.MethodPost, base+"/admin/v1/tools", admin, map[string]any{"name": "globex_notes",
		"description": "Globex's notes", "scope": "tenant", "owner": "globex", "http": map[string]any{"method": "GET", "url": crm.URL}}); status != http.StatusCreated {
		t.Fatalf("create globex_notes: %d %s", status, b)
	}
	key := createTenantKey(t, base, admin, map[string]any{"id": "acme", "tools": []string{"crm_lookup", "everything_echo", "globex_notes"}})
	if status, b := call(t, http.MethodPut, base+"/admin/v1/tenants/acme/secrets/crm_token", admin, map[string]string{"value": token}); status != http.StatusNoContent {
		t.Fatalf("put secret: %d %s", status, b)
	}
	status, b := call(t, http.MethodPost, base+"/v1/documents", key, map[string]any{"text": "Acme ships on Tuesdays."})
	var doc struct{ ID string }
	if err := json.Unmarshal(b, &doc); status != http.StatusCreated && status != http.StatusOK || err != nil {
		t.Fatalf("add document: %d %s", status, b)
	}

	var got mcpClientResult
	runNodeScript(t, node, filepath.Join("..", "..", "test", "mcp-client"), "client.mjs", &got,
		"MCP_URL="+base+"/mcp", "API_KEY="+key, "HTTP_TOOL=crm_lookup", `HTTP_ARGS={"customer":"c-7"}`,
		"MCP_TOOL=everything_echo", `MCP_ARGS={"message":"hi from ts"}`, "OTHER_TOOL=globex_notes",
		"RESOURCE_URI=bulkhead://documents/"+doc.ID)

	var names []string
	for _, tl := range got.Tools {
		names = append(names, tl.Name)
		if strings.Contains(string(tl.Schema), "tenant_id") {
			t.Errorf("tool %s schema %s shows the bound tenant_id", tl.Name, tl.Schema)
		}
	}
	slices.Sort(names)
	if want := []string{"crm_lookup", "everything_echo"}; !slices.Equal(names, want) {
		t.Errorf("tools = %v, want %v (globex_notes is globex's)", names, want)
	}
	if got.HTTP.IsError || !strings.Contains(got.HTTP.Text, `"customer":"c-7"`) || strings.Contains(got.HTTP.Text, token) || !strings.Contains(got.HTTP.Text, "[REDACTED:crm_token]") {
		t.Errorf("crm_lookup = %+v, want the customer and the echoed token redacted", got.HTTP)
	}
	mu.Lock()
	defer mu.Unlock()
	if seenAuth != "Bearer "+token {
		t.Errorf("the CRM saw Authorization %q, want the tenant's token injected", seenAuth)
	}
	if got.MCP.IsError || got.MCP.Text != "Echo: hi from ts" {
		t.Errorf("everything_echo = %+v, want Echo: hi from ts", got.MCP)
	}
	if !got.Other.IsError || got.Other.Text != "error: that tool is not available to you" {
		t.Errorf("globex_notes = %+v, want not available", got.Other)
	}
	if !slices.Contains(got.Resources, "bulkhead://documents/"+doc.ID) || got.Resource != "Acme ships on Tuesdays." {
		t.Errorf("resources %v, read %q: want acme's document", got.Resources, got.Resource)
	}
	if got.SessionID == "" {
		t.Error("no MCP session id")
	}
}
