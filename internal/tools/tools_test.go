package tools

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/label"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

func crmDef() Definition {
	return Definition{
		Name: "crm_lookup", Description: "Look up a customer", Scope: ScopeTenant,
		Parameters: json.RawMessage(`{"type":"object","properties":{"customer":{"type":"string"},
			"tenant_id":{"type":"string"},"account":{"type":"string"}},"required":["customer","tenant_id"]}`),
		Bound: map[string]string{"tenant_id": BindTenantID, "account": "secret.crm_account"},
		HTTP: &HTTPSpec{Method: "POST", URL: "http://127.0.0.1:9100/lookup/{{bound.tenant_id}}",
			Headers: map[string]string{"Authorization": "Bearer {{secret.crm_token}}"}},
	}
}

func TestCompile(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Definition)
		want   string // "" means valid
	}{
		{"valid", func(*Definition) {}, ""},
		{"bad name", func(d *Definition) { d.Name = "crm lookup" }, "name"},
		{"bad scope", func(d *Definition) { d.Scope = "everyone" }, "scope"},
		{"no executor", func(d *Definition) { d.HTTP = nil }, "exactly one"},
		{"two executors", func(d *Definition) { d.Builtin = "kb_search" }, "exactly one"},
		{"schema not object", func(d *Definition) { d.Parameters = json.RawMessage(`{"type":"string"}`) }, "object"},
		{"schema malformed", func(d *Definition) { d.Parameters = json.RawMessage(`{"type":`) }, "parameters"},
		{"bound param missing", func(d *Definition) { d.Bound["nope"] = BindUserID }, "not among"},
		{"bad bound source", func(d *Definition) { d.Bound["tenant_id"] = "request.header" }, "source"},
		{"placeholder in host", func(d *Definition) { d.HTTP.URL = "http://{{secret.host}}/x" }, "scheme or host"},
		{"unknown placeholder", func(d *Definition) { d.HTTP.Headers["X"] = "{{env.HOME}}" }, "only secret"},
		{"bound placeholder not bound", func(d *Definition) { d.HTTP.URL = "http://h/{{bound.customer}}" }, "no bound"},
		{"placeholder in a query name", func(d *Definition) { d.HTTP.URL = "http://h/x?{{secret.k}}=1" }, "query parameter names"},
		{"placeholder in a query value", func(d *Definition) { d.HTTP.URL = "http://h/x?k={{secret.k}}&fixed" }, ""},
		{"not http url", func(d *Definition) { d.HTTP.URL = "file:///etc/passwd" }, "http(s)"},
		{"bad method", func(d *Definition) { d.HTTP.Method = "TRACE" }, "method"},
		{"tenant tool may not start a process", func(d *Definition) {
			d.HTTP, d.Owner, d.MCP = nil, "acme", &MCPSpec{Command: []string{"server"}}
		}, "operator tools"},
		{"mcp url with placeholder", func(d *Definition) { d.HTTP, d.MCP = nil, &MCPSpec{URL: "http://{{secret.h}}/mcp"} }, "mcp.url"},
		{"mcp needs one transport", func(d *Definition) { d.HTTP, d.MCP = nil, &MCPSpec{} }, "exactly one of url or command"},
		{"bad owner", func(d *Definition) { d.Owner = "Not A Tenant" }, "owner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := crmDef()
			tt.change(&d)
			_, err := Compile(d)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Compile: %v", err)
				}
				return
			}
			if !errors.Is(err, kind.Invalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile err = %v, want Invalid mentioning %q", err, tt.want)
			}
		})
	}
}

func TestVisibleParametersHideBound(t *testing.T) {
	tool, err := Compile(crmDef())
	if err != nil {
		t.Fatal(err)
	}
	var visible struct {
		Properties map[string]any
		Required   []string
	}
	if err := json.Unmarshal(tool.VisibleParameters(), &visible); err != nil {
		t.Fatal(err)
	}
	if _, ok := visible.Properties["tenant_id"]; ok || slices.Contains(visible.Required, "tenant_id") {
		t.Fatalf("the model sees the bound tenant_id: %s", tool.VisibleParameters())
	}
	if _, ok := visible.Properties["customer"]; !ok || !slices.Equal(visible.Required, []string{"customer"}) {
		t.Fatalf("visible schema lost the free parameters: %s", tool.VisibleParameters())
	}
	if got, want := tool.SecretNames(), []tenant.SecretName{"crm_account", "crm_token"}; !slices.Equal(got, want) {
		t.Fatalf("SecretNames = %q, want %q", got, want)
	}
}

func TestArguments(t *testing.T) {
	tool, err := Compile(crmDef())
	if err != nil {
		t.Fatal(err)
	}
	bind := func(source string) (string, error) {
		switch source {
		case BindTenantID:
			return "acme", nil
		case "secret.crm_account":
			return "acct-1", nil
		}
		return "", errors.New("unexpected source " + source)
	}
	args, err := tool.Arguments(`{"customer":"c-1"}`, bind)
	if err != nil {
		t.Fatal(err)
	}
	if args["tenant_id"] != "acme" || args["account"] != "acct-1" || args["customer"] != "c-1" {
		t.Fatalf("args = %v", args)
	}
	tests := []struct {
		name, raw string
		want      error
	}{
		{"model names the tenant", `{"customer":"c-1","tenant_id":"globex"}`, ErrBoundByModel},
		{"model names the tenant, same value", `{"customer":"c-1","tenant_id":"acme"}`, ErrBoundByModel},
		{"model names the account", `{"customer":"c-1","account":"acct-2"}`, ErrBoundByModel},
		{"missing required", `{}`, kind.Invalid},
		{"wrong type", `{"customer":7}`, kind.Invalid},
		{"not an object", `["x"]`, kind.Invalid},
		{"not JSON", `{customer`, kind.Invalid},
		{"too large", `{"customer":"` + strings.Repeat("x", maxArguments) + `"}`, kind.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tool.Arguments(tt.raw, bind); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// A bound value that cannot be found fails the call.
	if _, err := tool.Arguments(`{"customer":"c"}`, func(string) (string, error) { return "", errors.New("no secret") }); err == nil {
		t.Fatal("Arguments succeeded without its bound values")
	}
}

// TestFlow checks what a tool's flow is when declared, the fail-closed
// defaults when not, and that builtins' flows are the runtime's.
func TestFlow(t *testing.T) {
	yes, no := true, false
	level := func(c label.Confidentiality) *label.Confidentiality { return &c }
	httpDef := func(scope Scope) Definition {
		return Definition{Name: "t", Scope: scope, HTTP: &HTTPSpec{Method: "GET", URL: "http://127.0.0.1:1/x"}}
	}
	tests := []struct {
		name string
		def  func() Definition
		want Flow
	}{
		{"undeclared tenant tool", func() Definition { return httpDef(ScopeTenant) },
			Flow{Consequential: true, Egress: label.Public, Result: label.Tenant}},
		{"undeclared global tool", func() Definition { return httpDef(ScopeGlobal) },
			Flow{Consequential: true, Egress: label.Public, Result: label.Public}},
		{"declared", func() Definition {
			d := httpDef(ScopeTenant)
			d.Consequential, d.Egress, d.ResultConfidentiality = &no, level(label.EndUser), level(label.Secret)
			return d
		}, Flow{Consequential: false, Egress: label.EndUser, Result: label.Secret}},
		{"declared consequential", func() Definition {
			d := httpDef(ScopeGlobal)
			d.Consequential = &yes
			return d
		}, Flow{Consequential: true, Egress: label.Public, Result: label.Public}},
		{"kb_search", func() Definition { return Definition{Name: "kb_search", Scope: ScopeTenant, Builtin: "kb_search"} },
			Flow{Consequential: false, Egress: label.EndUser, Result: label.Tenant}},
		{"memory_save", func() Definition { return Definition{Name: "memory_save", Scope: ScopeTenant, Builtin: "memory_save"} },
			Flow{Consequential: true, Egress: label.EndUser, Result: label.EndUser}},
		{"unknown builtin", func() Definition { return Definition{Name: "x", Scope: ScopeTenant, Builtin: "x"} },
			Flow{Consequential: true, Egress: label.Public, Result: label.Secret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tool, err := Compile(tt.def())
			if err != nil {
				t.Fatal(err)
			}
			if got := tool.Flow(); got != tt.want {
				t.Errorf("Flow() = %+v, want %+v", got, tt.want)
			}
		})
	}
	client, err := CompileClient("acme", "send", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := client.Flow(); got != (Flow{Consequential: true, Egress: label.EndUser, Result: label.EndUser}) {
		t.Errorf("client tool Flow() = %+v", got)
	}
}

// TestLabelNamesReserved checks no tool may declare a parameter named like
// a label the runtime puts in the policy context, and a builtin may not
// declare its flow.
func TestLabelNamesReserved(t *testing.T) {
	for _, name := range []string{"integrity", "confidentiality"} {
		params := json.RawMessage(`{"type":"object","properties":{"` + name + `":{"type":"string"}}}`)
		d := Definition{Name: "t", Scope: ScopeTenant, Parameters: params, HTTP: &HTTPSpec{Method: "GET", URL: "http://127.0.0.1:1/x"}}
		if _, err := Compile(d); !errors.Is(err, kind.Invalid) || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("Compile with parameter %q: %v, want kind.Invalid naming it reserved", name, err)
		}
		if _, err := CompileClient("acme", "c", "", params, nil); !errors.Is(err, kind.Invalid) || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("CompileClient with parameter %q: %v, want kind.Invalid naming it reserved", name, err)
		}
	}
	held := Definition{Name: "kb_search", Scope: ScopeTenant, Builtin: "kb_search", Held: true}
	if _, err := Compile(held); !errors.Is(err, kind.Invalid) {
		t.Errorf("a held builtin compiled: %v", err)
	}
	var d Definition
	if err := json.Unmarshal([]byte(`{"egress":"everyone"}`), &d); err == nil {
		t.Error("an unknown egress level decoded")
	}
}
