package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/testenv"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// crmRequest is what the fake CRM saw.
type crmRequest struct {
	Path, Auth string
	Body       map[string]any
}

// fakeCRM is a tool server that records its requests and echoes them back,
// Authorization header included, as a careless upstream would.
type fakeCRM struct {
	*httptest.Server
	mu   sync.Mutex
	seen []crmRequest
}

func newFakeCRM(t *testing.T) *fakeCRM {
	t.Helper()
	c := &fakeCRM{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req crmRequest
		req.Path, req.Auth = r.URL.Path, r.Header.Get("Authorization")
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &req.Body)
		c.mu.Lock()
		c.seen = append(c.seen, req)
		c.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"path": req.Path, "customer": req.Body["customer"], "echo_auth": req.Auth})
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *fakeCRM) requests() []crmRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]crmRequest(nil), c.seen...)
}

const (
	acmeCRMToken   = "acme-crm-token-0a1b2c3d"
	globexCRMToken = "globex-crm-token-9f8e7d6c"
)

// toolTenants makes acme and globex with the catalog of a shared CRM tool, a
// tool globex owns and a cross-tenant export, each tenant with its own CRM
// token.
func toolTenants(t *testing.T, env *testEnv, crm *fakeCRM) (acmeKey, globexKey string) {
	t.Helper()
	for _, def := range []map[string]any{
		{"name": "crm_lookup", "description": "Look up a customer", "scope": "tenant",
			"parameters": json.RawMessage(`{"type":"object","properties":{"customer":{"type":"string"},"tenant_id":{"type":"string"}},"required":["customer"]}`),
			"bound":      map[string]string{"tenant_id": "tenant.id"},
			"http": map[string]any{"method": "POST", "url": crm.URL + "/lookup/{{bound.tenant_id}}",
				"headers": map[string]string{"Authorization": "Bearer {{secret.crm_token}}"}}},
		{"name": "globex_notes", "description": "Globex's notes", "scope": "tenant", "owner": "globex",
			"http": map[string]any{"method": "GET", "url": crm.URL + "/notes"}},
		{"name": "export_all", "description": "Export every tenant", "scope": "cross_tenant",
			"http": map[string]any{"method": "GET", "url": crm.URL + "/export"}},
	} {
		if def["owner"] == "globex" {
			env.createTenant(t, map[string]any{"id": "globex", "tools": []string{}})
		}
		env.admin(t, "POST", "/admin/v1/tools", def, http.StatusCreated)
	}
	env.createTenant(t, map[string]any{"id": "acme", "tools": []string{"crm_lookup", "export_all"}})
	env.admin(t, "PATCH", "/admin/v1/tenants/globex", map[string]any{"tools": []string{"crm_lookup", "globex_notes"}}, http.StatusOK)
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/crm_token", map[string]string{"value": acmeCRMToken}, http.StatusNoContent)
	env.admin(t, "PUT", "/admin/v1/tenants/globex/secrets/crm_token", map[string]string{"value": globexCRMToken}, http.StatusNoContent)
	_, acmeKey = env.newKey(t, "acme")
	_, globexKey = env.newKey(t, "globex")
	return acmeKey, globexKey
}

// TestToolCallsCarryOwnCredentials checks each tenant's call reaches the tool
// with that tenant's token and tenant id only, and that the token comes back
// to neither the client nor the model.
func TestToolCallsCarryOwnCredentials(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	crm := newFakeCRM(t)
	acmeKey, globexKey := toolTenants(t, env, crm)

	for _, tc := range []struct{ key, tenant, token string }{{acmeKey, "acme", acmeCRMToken}, {globexKey, "globex", globexCRMToken}} {
		before := len(crm.requests())
		got := env.say(t, chatCall{key: tc.key, session: "s1", user: "alice", content: `/call crm_lookup {"customer":"c-42"}`})
		if !strings.Contains(got, `"customer":"c-42"`) || !strings.Contains(got, "[REDACTED:crm_token]") {
			t.Fatalf("%s: tool result %q: want the customer and the echoed token redacted", tc.tenant, got)
		}
		if strings.Contains(got, acmeCRMToken) || strings.Contains(got, globexCRMToken) {
			t.Fatalf("%s: a token reached the client: %q", tc.tenant, got)
		}
		reqs := crm.requests()[before:]
		if len(reqs) != 1 || reqs[0].Auth != "Bearer "+tc.token || reqs[0].Path != "/lookup/"+tc.tenant || reqs[0].Body["tenant_id"] != tc.tenant {
			t.Fatalf("%s: the CRM saw %+v, want one call with the tenant's own token and id", tc.tenant, reqs)
		}
		// The model's context in the next turn holds the tool exchange, redacted.
		ctx := joinContents(env.echo(t, chatCall{key: tc.key, session: "s1", user: "alice", content: "/echo"}))
		if !strings.Contains(ctx, "c-42") || strings.Contains(ctx, acmeCRMToken) || strings.Contains(ctx, globexCRMToken) {
			t.Fatalf("%s: model context %q: want the tool result without any token", tc.tenant, ctx)
		}
	}
}

// TestModelCannotReachOtherTenantsTools plays the model as an attacker: it
// calls another tenant's tool, a cross-tenant tool, a tool its profile lacks,
// and names another tenant in a bound parameter. Every call is refused before
// it reaches the tool server.
func TestModelCannotReachOtherTenantsTools(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	crm := newFakeCRM(t)
	acmeKey, _ := toolTenants(t, env, crm)

	offered := env.say(t, chatCall{key: acmeKey, content: "/echo"})
	var ctx struct{ Tools []string }
	if err := json.Unmarshal([]byte(offered), &ctx); err != nil {
		t.Fatal(err)
	}
	if len(ctx.Tools) != 1 || ctx.Tools[0] != "crm_lookup" {
		t.Fatalf("tools offered to acme = %q, want only crm_lookup", ctx.Tools)
	}

	tests := []struct {
		name, call, want string
	}{
		{"globex's own tool", `/call globex_notes {}`, "not available"},
		{"cross-tenant tool in acme's profile", `/call export_all {}`, "not available"},
		{"tool not in the catalog", `/call drop_tables {}`, "not available"},
		{"bound tenant id from the model", `/call crm_lookup {"customer":"c-1","tenant_id":"globex"}`, "refused"},
		{"arguments off the schema", `/call crm_lookup {"customer":42}`, "schema"},
		{"malformed arguments", `/call crm_lookup {not json`, "JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := env.say(t, chatCall{key: acmeKey, content: tt.call})
			if !strings.Contains(got, "call_1: error") || !strings.Contains(got, tt.want) {
				t.Fatalf("tool result %q: want an error containing %q", got, tt.want)
			}
		})
	}
	if reqs := crm.requests(); len(reqs) != 0 {
		t.Fatalf("refused calls reached the tool server: %+v", reqs)
	}
}

func TestTenantPolicy(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	crm := newFakeCRM(t)
	acmeKey, globexKey := toolTenants(t, env, crm)
	policy := `@id("no-vip")
forbid (principal, action == Action::"call_tool", resource == Tool::"crm_lookup")
  when { context.customer == "vip-1" };`
	if r := env.do(t, "PUT", "/admin/v1/tenants/acme/policy", testAdminToken, policy, nil); r.status != http.StatusNoContent {
		t.Fatalf("PUT policy: %v", r)
	}
	if r := env.admin(t, "GET", "/admin/v1/tenants/acme/policy", nil, http.StatusOK); !strings.Contains(string(r.body), "no-vip") {
		t.Fatalf("GET policy = %s", r.body)
	}
	if got := env.say(t, chatCall{key: acmeKey, content: `/call crm_lookup {"customer":"vip-1"}`}); !strings.Contains(got, "denied by policy") || !strings.Contains(got, "tenant/no-vip") {
		t.Fatalf("vip call: %q, want denied by tenant/no-vip", got)
	}
	if got := env.say(t, chatCall{key: acmeKey, content: `/call crm_lookup {"customer":"c-1"}`}); strings.Contains(got, "error") {
		t.Fatalf("ordinary call: %q, want allowed", got)
	}
	// acme's policy does not touch globex.
	if got := env.say(t, chatCall{key: globexKey, content: `/call crm_lookup {"customer":"vip-1"}`}); strings.Contains(got, "error") {
		t.Fatalf("globex's vip call: %q, want allowed", got)
	}

	for name, bad := range map[string]string{
		"syntax":        "forbid (principal, action, resource) when { context.x == };",
		"permit widens": `permit (principal, action, resource);`,
	} {
		t.Run(name, func(t *testing.T) {
			r := env.do(t, "PUT", "/admin/v1/tenants/acme/policy", testAdminToken, bad, nil)
			if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "line") {
				t.Fatalf("got %v, want 400 naming the line", r)
			}
		})
	}
	// The refused uploads left the policy as it was.
	if got := env.say(t, chatCall{key: acmeKey, content: `/call crm_lookup {"customer":"vip-1"}`}); !strings.Contains(got, "denied by policy") {
		t.Fatalf("after refused uploads: %q, want still denied", got)
	}
	env.do(t, "PUT", "/admin/v1/tenants/initech/policy", testAdminToken, "", nil)
}

func TestAdminTools(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	def := map[string]any{"name": "weather", "description": "Weather", "scope": "global",
		"http": map[string]any{"method": "GET", "url": "http://127.0.0.1:9/weather"}}
	env.admin(t, "POST", "/admin/v1/tools", def, http.StatusCreated)
	env.admin(t, "POST", "/admin/v1/tools", def, http.StatusConflict)
	if r := env.admin(t, "GET", "/admin/v1/tools", nil, http.StatusOK); !strings.Contains(string(r.body), `"weather"`) {
		t.Fatalf("list = %s", r.body)
	}
	env.admin(t, "GET", "/admin/v1/tools/weather", nil, http.StatusOK)
	for name, bad := range map[string]map[string]any{
		"no executor":      {"name": "x", "scope": "global"},
		"bad scope":        {"name": "x", "scope": "everyone", "http": def["http"]},
		"host placeholder": {"name": "x", "scope": "global", "http": map[string]any{"method": "GET", "url": "http://{{secret.host}}/x"}},
		"unknown field":    {"name": "x", "scope": "global", "http": def["http"], "colour": "red"},
		"unknown owner":    {"name": "x", "scope": "tenant", "owner": "initech", "http": def["http"]},
	} {
		t.Run(name, func(t *testing.T) {
			r := env.do(t, "POST", "/admin/v1/tools", testAdminToken, bad, nil)
			if r.status != http.StatusBadRequest {
				t.Fatalf("got %v, want 400", r)
			}
			checkErrorShape(t, r)
		})
	}
	if r := env.do(t, "POST", "/admin/v1/tenants", testAdminToken, map[string]any{"id": "acme", "tools": []string{"nosuch"}}, nil); r.status != http.StatusBadRequest {
		t.Fatalf("profile naming an unknown tool: got %v, want 400", r)
	}
	env.admin(t, "DELETE", "/admin/v1/tools/weather", nil, http.StatusNoContent)
	env.admin(t, "GET", "/admin/v1/tools/weather", nil, http.StatusNotFound)
}

// TestMCPToolThroughProfile offers a tool of the real server-everything MCP
// server (over stdio) through a tenant's profile, and lets the model call it.
func TestMCPToolThroughProfile(t *testing.T) {
	command := testenv.EverythingServer(t)

	env := newTestEnv(t, envOptions{})
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{
		"name": "echo", "description": "Echo a message", "scope": "global",
		"parameters": json.RawMessage(`{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}`),
		"mcp":        map[string]any{"command": command},
	}, http.StatusCreated)
	env.createTenant(t, map[string]any{"id": "acme", "tools": []string{"echo"}})
	env.createTenant(t, map[string]any{"id": "globex"})
	_, acmeKey := env.newKey(t, "acme")
	_, globexKey := env.newKey(t, "globex")

	var offered struct{ Tools []string }
	if err := json.Unmarshal([]byte(env.say(t, chatCall{key: acmeKey, content: "/echo"})), &offered); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(offered.Tools, []string{"echo"}) {
		t.Fatalf("offered to acme: %q, want [echo]", offered.Tools)
	}
	got := env.say(t, chatCall{key: acmeKey, content: `/call echo {"message":"hello from acme"}`})
	if !strings.Contains(got, "call_1: Echo: hello from acme") {
		t.Fatalf("acme's MCP call: %q", got)
	}
	// globex's profile does not name the tool: it is neither offered nor callable.
	if got := env.say(t, chatCall{key: globexKey, content: `/call echo {"message":"x"}`}); !strings.Contains(got, "not available") {
		t.Fatalf("globex's call: %q, want refused", got)
	}
}

// TestCutToolOutputKeepsNoSecretStart has a tool server echo the tenant's
// token where the output limit cuts it: what is left of it, a start alone,
// is no form the redactor can recognise, and must not reach the model or the
// client either.
func TestCutToolOutputKeepsNoSecretStart(t *testing.T) {
	const token = "Zq7XvK2pLm9RtW4sNb8YcH3dQf6J"
	env := newTestEnv(t, envOptions{})
	var pad atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The token starts pad bytes before the cut at DefaultMaxOutput.
		io.WriteString(w, strings.Repeat(".", tools.DefaultMaxOutput-int(pad.Load()))+r.Header.Get("X-Token")+" and more after it")
	}))
	t.Cleanup(upstream.Close)
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{"name": "dump", "description": "Dump a log", "scope": "tenant",
		"http": map[string]any{"method": "GET", "url": upstream.URL + "/dump", "headers": map[string]string{"X-Token": "{{secret.token}}"}}}, http.StatusCreated)
	env.createTenant(t, map[string]any{"id": "acme", "tools": []string{"dump"}})
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/token", map[string]string{"value": token}, http.StatusNoContent)
	_, key := env.newKey(t, "acme")

	for _, kept := range []int{4, 9, 16, len(token) - 1} {
		t.Run(fmt.Sprintf("kept=%d", kept), func(t *testing.T) {
			pad.Store(int64(kept))
			session := fmt.Sprintf("s%d", kept)
			got := env.say(t, chatCall{key: key, session: session, content: `/call dump {}`})
			if !strings.HasSuffix(got, tools.TruncatedMark) || !strings.Contains(got, "....") {
				t.Fatalf("answer ends %q: want the cut tool output", got[max(0, len(got)-80):])
			}
			next := joinContents(env.echo(t, chatCall{key: key, session: session, content: "/echo"}))
			for where, text := range map[string]string{"answer": got, "model context": next} {
				if strings.Contains(text, token[:4]) {
					i := strings.Index(text, token[:4])
					t.Errorf("%s holds the start of the token: …%q…", where, text[max(0, i-10):min(len(text), i+kept+10)])
				}
			}
		})
	}
}
