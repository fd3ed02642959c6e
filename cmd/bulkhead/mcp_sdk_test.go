package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

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

// TestMCPClientSDKs drives a live bulkhead serve's /mcp with the official
// MCP TypeScript SDK client and with the Go SDK's: each lists the tenant's
// tools, calls an HTTP tool (the tenant's secret injected, never shown) and
// an upstream MCP tool (the reference server-everything), is refused
// another tenant's tool, and reads a document as a resource.
func TestMCPClientSDKs(t *testing.T) {
	t.Parallel()
	node := requireNode(t, mcpClientHint, filepath.Join("..", "..", "test", "mcp-client"), "@modelcontextprotocol/sdk")
	everything := testenv.EverythingServer(t)

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
			"mcp":        map[string]any{"command": everything, "tool": "echo"}},
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

	clients := []struct {
		name string
		run  func(t *testing.T) mcpClientResult
	}{
		{"typescript", func(t *testing.T) mcpClientResult {
			var got mcpClientResult
			runNodeScript(t, node, filepath.Join("..", "..", "test", "mcp-client"), "client.mjs", &got,
				"MCP_URL="+base+"/mcp", "API_KEY="+key, "HTTP_TOOL=crm_lookup", `HTTP_ARGS={"customer":"c-7"}`,
				"MCP_TOOL=everything_echo", `MCP_ARGS={"message":"hi from ts"}`, "OTHER_TOOL=globex_notes",
				"RESOURCE_URI=bulkhead://documents/"+doc.ID)
			return got
		}},
		{"go", func(t *testing.T) mcpClientResult {
			return goSDKClient(t, base+"/mcp", key, "bulkhead://documents/"+doc.ID)
		}},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			checkMCPClient(t, c.run(t), doc.ID, token, func() string { mu.Lock(); defer mu.Unlock(); return seenAuth })
		})
	}
}

// checkMCPClient checks what an MCP client saw of acme's /mcp.
func checkMCPClient(t *testing.T, got mcpClientResult, docID, token string, seenAuth func() string) {
	t.Helper()
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
	if a := seenAuth(); a != "Bearer "+token {
		t.Errorf("the CRM saw Authorization %q, want the tenant's token injected", a)
	}
	if got.MCP.IsError || got.MCP.Text != "Echo: hi from ts" {
		t.Errorf("everything_echo = %+v, want Echo: hi from ts", got.MCP)
	}
	if !got.Other.IsError || got.Other.Text != "error: that tool is not available to you" {
		t.Errorf("globex_notes = %+v, want not available", got.Other)
	}
	if !slices.Contains(got.Resources, "bulkhead://documents/"+docID) || got.Resource != "Acme ships on Tuesdays." {
		t.Errorf("resources %v, read %q: want acme's document", got.Resources, got.Resource)
	}
	if got.SessionID == "" {
		t.Error("no MCP session id")
	}
}

// bearerTransport sends a tenant key with every request, as an MCP client
// configured with it does.
type bearerTransport struct{ key string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return http.DefaultTransport.RoundTrip(r)
}

// goSDKClient does with the MCP Go SDK's client what client.mjs does with
// the TypeScript one.
func goSDKClient(t *testing.T, url, key, resource string) mcpClientResult {
	t.Helper()
	ctx := t.Context()
	client := mcp.NewClient(&mcp.Implementation{Name: "bulkhead-cmd-test", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: bearerTransport{key}}}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	got := mcpClientResult{SessionID: cs.ID()}
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("list tools: %v", err)
	}
	for _, tl := range tools.Tools {
		schema, _ := json.Marshal(tl.InputSchema)
		got.Tools = append(got.Tools, struct {
			Name   string
			Schema json.RawMessage
		}{tl.Name, schema})
	}
	for _, c := range []struct {
		name string
		args any
		out  *struct {
			IsError bool
			Text    string
		}
	}{
		{"crm_lookup", map[string]any{"customer": "c-7"}, &got.HTTP},
		{"everything_echo", map[string]any{"message": "hi from ts"}, &got.MCP},
		{"globex_notes", map[string]any{}, &got.Other},
	} {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: c.name, Arguments: c.args})
		if err != nil {
			t.Fatalf("call %s: %v", c.name, err)
		}
		c.out.IsError = res.IsError
		for _, part := range res.Content {
			if tc, ok := part.(*mcp.TextContent); ok {
				c.out.Text += tc.Text
			}
		}
	}
	list, err := cs.ListResources(ctx, nil)
	if err != nil {
		t.Fatalf("list resources: %v", err)
	}
	for _, r := range list.Resources {
		got.Resources = append(got.Resources, r.URI)
	}
	read, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: resource})
	if err != nil || len(read.Contents) != 1 {
		t.Fatalf("read %s: %v %+v", resource, err, read)
	}
	got.Resource = read.Contents[0].Text
	return got
}
