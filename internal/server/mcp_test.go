package server

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/testenv"
)

// keyTransport adds a bearer credential and headers to every request, as an
// MCP client configured with them does.
type keyTransport struct {
	base   http.RoundTripper
	key    string
	header map[string]string
}

func (k keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+k.key)
	for name, v := range k.header {
		r.Header.Set(name, v)
	}
	return k.base.RoundTrip(r)
}

// mcpConnect opens an MCP session on path with the Go SDK's client.
func mcpConnect(t *testing.T, env *testEnv, path, key string, header map[string]string) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "bulkhead-test", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: env.srv.URL + path,
		HTTPClient: &http.Client{Transport: keyTransport{base: env.client.Transport, key: key, header: header}}}, nil)
	if err != nil {
		t.Fatalf("connect to %s: %v", path, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// mcpCall calls a tool and returns its text and whether it is an error.
func mcpCall(t *testing.T, cs *mcp.ClientSession, name string, args any) (string, bool) {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	var text strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			text.WriteString(tc.Text)
		}
	}
	return text.String(), res.IsError
}

// addDocument stores a document for key's tenant and returns its id.
func addDocument(t *testing.T, env *testEnv, key, text string) string {
	t.Helper()
	r := env.do(t, "POST", "/v1/documents", key, map[string]any{"text": text}, nil)
	var doc struct{ ID string }
	if err := json.Unmarshal(r.body, &doc); err != nil || doc.ID == "" {
		t.Fatalf("add document: %v %v", r, err)
	}
	return doc.ID
}

func toolNames(t *testing.T, cs *mcp.ClientSession) map[string]*mcp.Tool {
	t.Helper()
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatalf("list tools: %v", err)
	}
	out := map[string]*mcp.Tool{}
	for _, tool := range res.Tools {
		out[tool.Name] = tool
	}
	return out
}

// TestMCPServer drives /mcp with the Go SDK's client: the tenant's tools as
// the model is offered them, a call with the tenant's own secret injected
// and redacted from what comes back, its documents as resources, and the
// call in its own audit log only.
func TestMCPServer(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	crm := newFakeCRM(t)
	acmeKey, globexKey := toolTenants(t, env, crm)
	docID := addDocument(t, env, acmeKey, "Acme's refund policy: thirty days.")

	cs := mcpConnect(t, env, "/mcp", acmeKey, nil)
	tools := toolNames(t, cs)
	if _, ok := tools["crm_lookup"]; !ok || len(tools) != 1 {
		t.Fatalf("tools = %v, want crm_lookup only (export_all is cross_tenant, globex_notes is globex's)", slices.Collect(maps.Keys(tools)))
	}
	schema, _ := json.Marshal(tools["crm_lookup"].InputSchema)
	if strings.Contains(string(schema), "tenant_id") || !strings.Contains(string(schema), "customer") {
		t.Errorf("crm_lookup schema %s: want customer, and the bound tenant_id removed", schema)
	}

	text, isErr := mcpCall(t, cs, "crm_lookup", map[string]any{"customer": "c-42"})
	if isErr || !strings.Contains(text, `"customer":"c-42"`) || !strings.Contains(text, "[REDACTED:crm_token]") || strings.Contains(text, acmeCRMToken) {
		t.Fatalf("crm_lookup = %q (error %v): want the customer and the echoed token redacted", text, isErr)
	}
	if reqs := crm.requests(); len(reqs) != 1 || reqs[0].Auth != "Bearer "+acmeCRMToken || reqs[0].Path != "/lookup/acme" || reqs[0].Body["tenant_id"] != "acme" {
		t.Fatalf("the CRM saw %+v, want one call with acme's token and id", reqs)
	}

	list, err := cs.ListResources(t.Context(), nil)
	if err != nil || len(list.Resources) != 1 || list.Resources[0].URI != "bulkhead://documents/"+docID {
		t.Fatalf("list resources = %+v, %v; want acme's document", list, err)
	}
	read, err := cs.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "bulkhead://documents/" + docID})
	if err != nil || len(read.Contents) != 1 || read.Contents[0].Text != "Acme's refund policy: thirty days." {
		t.Fatalf("read resource = %+v, %v", read, err)
	}

	if !slices.ContainsFunc(auditLog(t, env, "/v1/audit", acmeKey), func(r store.AuditRecord) bool {
		return r.Type == "tool.call" && strings.Contains(string(r.Data), `"tool":"crm_lookup"`) && strings.Contains(string(r.Data), `"decision":"allow"`)
	}) {
		t.Error("acme's audit log has no allowed crm_lookup call")
	}
	for _, r := range auditLog(t, env, "/v1/audit", globexKey) {
		if r.Type == "tool.call" {
			t.Errorf("globex's audit log holds a tool call: %s", r.Data)
		}
	}
}

// TestMCPTenantIsolation: tenant A's session never lists, calls or reads
// B's tools and documents, a bound parameter or a forbidden argument is
// refused as in chat, and A's session id is not B's (nor another end
// user's) to use.
func TestMCPTenantIsolation(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	crm := newFakeCRM(t)
	acmeKey, globexKey := toolTenants(t, env, crm)
	globexDoc := addDocument(t, env, globexKey, "Globex's private plans.")
	env.admin(t, "PUT", "/admin/v1/tenants/acme/policy",
		`forbid (principal, action == Action::"call_tool", resource == Tool::"crm_lookup") when { context.customer == "vip" };`, http.StatusNoContent)

	cs := mcpConnect(t, env, "/mcp", acmeKey, map[string]string{"X-Bulkhead-User": "alice"})
	for _, name := range []string{"globex_notes", "export_all", "no_such_tool"} {
		if text, isErr := mcpCall(t, cs, name, map[string]any{}); !isErr || text != "error: that tool is not available to you" {
			t.Errorf("call %s = %q (error %v), want not available, as in chat", name, text, isErr)
		}
	}
	if text, isErr := mcpCall(t, cs, "crm_lookup", map[string]any{"customer": "c-1", "tenant_id": "globex"}); !isErr || !strings.Contains(text, "set by the system") {
		t.Errorf("crm_lookup naming globex = %q (error %v), want refused as a bound parameter", text, isErr)
	}
	if text, isErr := mcpCall(t, cs, "crm_lookup", map[string]any{"customer": "vip"}); !isErr || !strings.Contains(text, "denied by policy") {
		t.Errorf("crm_lookup for vip = %q (error %v), want denied by the tenant's forbid", text, isErr)
	}
	if n := len(crm.requests()); n != 0 {
		t.Errorf("the CRM got %d requests, want none", n)
	}
	for _, uri := range []string{"bulkhead://documents/" + globexDoc, "bulkhead://documents/doc_missing"} {
		_, err := cs.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: uri})
		if err == nil || !strings.Contains(err.Error(), "Resource not found") {
			t.Errorf("read %s: %v, want resource not found", uri, err)
		}
	}
	if list, err := cs.ListResources(t.Context(), nil); err != nil || len(list.Resources) != 0 {
		t.Errorf("acme lists resources %+v, %v; want none", list, err)
	}

	// The session id with another credential, or another end user: 404,
	// as for an id that does not exist.
	id := cs.ID()
	ping := `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`
	for _, c := range []struct {
		name, key, user, session string
	}{
		{"globex's key", globexKey, "alice", id},
		{"another end user", acmeKey, "bob", id},
		{"no such session", acmeKey, "alice", "no-such-session"},
	} {
		r := env.do(t, "POST", "/mcp", c.key, ping, map[string]string{"Mcp-Session-Id": c.session, "X-Bulkhead-User": c.user,
			"Accept": "application/json, text/event-stream", "Mcp-Protocol-Version": "2025-06-18"})
		checkAPIError(t, r, http.StatusNotFound, "not_found")
		if !strings.Contains(string(r.body), "MCP session not found") {
			t.Errorf("%s: %s, want the same answer as for a missing session", c.name, r.body)
		}
	}
	// The per-tenant path takes the credential's own tenant only.
	mcpConnect(t, env, "/mcp/acme", acmeKey, nil)
	r := env.do(t, "POST", "/mcp/globex", acmeKey, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`,
		map[string]string{"Accept": "application/json, text/event-stream"})
	checkAPIError(t, r, http.StatusNotFound, "not_found")

	// Every refusal is in acme's log; globex's has no tool call.
	denied := 0
	for _, rec := range auditLog(t, env, "/v1/audit", acmeKey) {
		if rec.Type == "tool.call" && strings.Contains(string(rec.Data), `"decision":"deny"`) {
			denied++
		}
	}
	if denied != 5 {
		t.Errorf("acme's audit log has %d denied tool calls, want 5", denied)
	}
	for _, rec := range auditLog(t, env, "/v1/audit", globexKey) {
		if rec.Type == "tool.call" {
			t.Errorf("globex's audit log holds a tool call: %s", rec.Data)
		}
	}
}

// TestMCPAuthAndLimits: a request without a credential is a 401 naming the
// protected-resource metadata; calls count against the tenant's rate; a
// deleted tenant's session ends.
func TestMCPAuthAndLimits(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	r := env.do(t, "POST", "/mcp", "", `{}`, nil)
	checkAPIError(t, r, http.StatusUnauthorized, "invalid_api_key")
	if got, want := r.header.Get("WWW-Authenticate"), `Bearer resource_metadata="`+env.srv.URL+`/.well-known/oauth-protected-resource/mcp"`; got != want {
		t.Errorf("WWW-Authenticate = %q, want %q", got, want)
	}

	crm := newFakeCRM(t)
	acmeKey, _ := toolTenants(t, env, crm)
	env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"limits": map[string]any{"requests_per_minute": 1}}, http.StatusOK)
	cs := mcpConnect(t, env, "/mcp", acmeKey, nil)
	if _, isErr := mcpCall(t, cs, "crm_lookup", map[string]any{"customer": "c-1"}); isErr {
		t.Fatal("the first call failed")
	}
	_, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "crm_lookup", Arguments: map[string]any{"customer": "c-2"}})
	if err == nil || !strings.Contains(err.Error(), "rate limit") {
		t.Errorf("second call in the minute: %v, want rate limited", err)
	}

	// Suspending the tenant ends its sessions: active again, the old id is
	// gone.
	env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"status": "suspended"}, http.StatusOK)
	env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"status": "active"}, http.StatusOK)
	var err2 error
	for range 50 { // the session closes asynchronously
		if _, err2 = cs.ListTools(t.Context(), nil); err2 != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err2 == nil {
		t.Error("a session outlived its tenant's suspension")
	} else if !strings.Contains(err2.Error(), "not found") {
		t.Errorf("after a suspension, the session: %v, want not found", err2)
	}
}

// TestMCPUpstreamTool calls a tool of an upstream MCP server (the reference
// server-everything over stdio) through Bulkhead's /mcp.
func TestMCPUpstreamTool(t *testing.T) {
	command := testenv.EverythingServer(t)
	env := newTestEnv(t, envOptions{})
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{"name": "everything_echo", "description": "Echo", "scope": "tenant",
		"parameters": json.RawMessage(`{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}`),
		"mcp":        map[string]any{"command": command, "tool": "echo"}}, http.StatusCreated)
	env.createTenant(t, map[string]any{"id": "acme", "tools": []string{"everything_echo"}})
	_, key := env.newKey(t, "acme")
	cs := mcpConnect(t, env, "/mcp", key, nil)
	if text, isErr := mcpCall(t, cs, "everything_echo", map[string]any{"message": "hello"}); isErr || text != "Echo: hello" {
		t.Fatalf("everything_echo = %q (error %v), want Echo: hello", text, isErr)
	}
}

// TestMCPBuiltinsActForTheEndUser: kb_search and memory_* over /mcp read
// and write the tenant's data for the session's end user only.
func TestMCPBuiltinsActForTheEndUser(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _, _, _ := kbTenants(t, env)
	alice := mcpConnect(t, env, "/mcp", acmeKey, map[string]string{"X-Bulkhead-User": "alice"})
	bob := mcpConnect(t, env, "/mcp", acmeKey, map[string]string{"X-Bulkhead-User": "bob"})

	if text, isErr := mcpCall(t, alice, "memory_search", map[string]any{"query": "rocket"}); isErr || !strings.Contains(text, "acme blue rocket") || strings.Contains(text, "globex") {
		t.Errorf("alice's memory_search = %q (error %v), want her acme memory only", text, isErr)
	}
	if text, _ := mcpCall(t, bob, "memory_search", map[string]any{"query": "rocket"}); strings.Contains(text, "blue rocket") {
		t.Errorf("bob's memory_search = %q, want none of alice's memories", text)
	}
	if text, isErr := mcpCall(t, alice, "kb_search", map[string]any{"query": "refund rockets"}); isErr || !strings.Contains(text, "CANARY-ACME-7731") || strings.Contains(text, "GLOBEX") {
		t.Errorf("kb_search = %q (error %v), want acme's document only", text, isErr)
	}
	if text, isErr := mcpCall(t, alice, "memory_save", map[string]any{"text": "alice's order is A-77"}); isErr {
		t.Fatalf("memory_save: %q", text)
	}
	for user, want := range map[string]bool{"alice": true, "bob": false} {
		r := env.do(t, "GET", "/v1/memories?user="+user, acmeKey, nil, nil)
		if got := strings.Contains(string(r.body), "A-77"); got != want {
			t.Errorf("%s's memories %s: holding the saved one = %v, want %v", user, r.body, got, want)
		}
	}
	// A header naming another end user for a session opened by alice is
	// another Scope: the session is not found.
	r := env.do(t, "POST", "/mcp", acmeKey, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Mcp-Session-Id": alice.ID(),
		"Accept": "application/json, text/event-stream", "Mcp-Protocol-Version": "2025-06-18"})
	checkAPIError(t, r, http.StatusNotFound, "not_found")
}

// TestMCPWithEndUserToken opens /mcp with an end user's signed token: the
// builtins act for the token's subject, no header can name another end
// user, and a token of another tenant's issuer sees that tenant only.
func TestMCPWithEndUserToken(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _, _, _ := kbTenants(t, env)
	idp := authtest.NewIssuer(t, "https://login.example")
	env.registerIssuer(t, "acme", idp, "acme-app", http.StatusCreated)
	alice := idp.Token(t, "alice", "acme-app", time.Hour, nil)

	cs := mcpConnect(t, env, "/mcp", alice, nil)
	if text, isErr := mcpCall(t, cs, "memory_search", map[string]any{"query": "rocket"}); isErr || !strings.Contains(text, "acme blue rocket") || strings.Contains(text, "globex") {
		t.Errorf("memory_search with alice's token = %q (error %v), want her acme memory only", text, isErr)
	}
	if text, isErr := mcpCall(t, cs, "memory_save", map[string]any{"text": "token-saved note T-19"}); isErr {
		t.Fatalf("memory_save: %q", text)
	}
	for user, want := range map[string]bool{"alice": true, "bob": false} {
		r := env.do(t, "GET", "/v1/memories?user="+user, acmeKey, nil, nil)
		if got := strings.Contains(string(r.body), "T-19"); got != want {
			t.Errorf("%s's memories: holding the token's save = %v, want %v", user, got, want)
		}
	}
	// Naming another end user beside the token is refused, not obeyed.
	r := env.do(t, "POST", "/mcp", alice, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
		map[string]string{"X-Bulkhead-User": "bob", "Accept": "application/json, text/event-stream"})
	checkAPIError(t, r, http.StatusBadRequest, "")
	// The session alice's token opened is not the tenant key's.
	r = env.do(t, "POST", "/mcp", acmeKey, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Mcp-Session-Id": cs.ID(),
		"Accept": "application/json, text/event-stream", "Mcp-Protocol-Version": "2025-06-18"})
	checkAPIError(t, r, http.StatusNotFound, "not_found")
	// A token for an audience no tenant registered is a 401 with the
	// pointer to the metadata.
	stranger := idp.Token(t, "alice", "globex-app", time.Hour, nil)
	r = env.do(t, "POST", "/mcp", stranger, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Accept": "application/json, text/event-stream"})
	checkAPIError(t, r, http.StatusUnauthorized, "")
	if h := r.header.Get("WWW-Authenticate"); !strings.Contains(h, "resource_metadata=") {
		t.Errorf("401 WWW-Authenticate = %q, want the resource metadata", h)
	}
}
