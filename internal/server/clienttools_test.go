package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// sendEmail is a client tool as an OpenAI client declares it.
var sendEmail = map[string]any{"type": "function", "function": map[string]any{
	"name": "send_email", "description": "Send an email",
	"parameters": json.RawMessage(`{"type":"object","properties":{"to":{"type":"string"},"body":{"type":"string"}},"required":["to"]}`)}}

// clientTool declares a client tool named name with parameters params.
func clientTool(name, params string) map[string]any {
	return map[string]any{"type": "function", "function": map[string]any{"name": name, "parameters": json.RawMessage(params)}}
}

// toolTurn is one chat request of a client running client tools.
type toolTurn struct {
	key, session string
	messages     []map[string]any
	tools        []map[string]any
	stream       bool
	extra        map[string]any
}

// toolAnswer is a decoded chat answer, streamed or not.
type toolAnswer struct {
	content, finish string
	calls           []llm.ToolCall
	raw             string
}

func userMsg(content string) map[string]any {
	return map[string]any{"role": "user", "content": content}
}

func (e *testEnv) toolChat(t *testing.T, tt toolTurn) response {
	t.Helper()
	body := map[string]any{"messages": tt.messages}
	if tt.tools != nil {
		body["tools"] = tt.tools
	}
	if tt.stream {
		body["stream"] = true
	}
	for k, v := range tt.extra {
		body[k] = v
	}
	header := map[string]string{}
	if tt.session != "" {
		header["X-Session-Id"] = tt.session
	}
	return e.do(t, "POST", "/v1/chat/completions", tt.key, body, header)
}

// toolSay sends tt, which must succeed, and decodes the answer.
func (e *testEnv) toolSay(t *testing.T, tt toolTurn) toolAnswer {
	t.Helper()
	r := e.toolChat(t, tt)
	if r.status != http.StatusOK {
		t.Fatalf("chat: got %v, want 200", r)
	}
	a, err := decodeToolAnswer(r, tt.stream)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func decodeToolAnswer(r response, stream bool) (toolAnswer, error) {
	a := toolAnswer{raw: string(r.body)}
	if !stream {
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Message      llm.Message `json:"message"`
				FinishReason string      `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(r.body, &c); err != nil || c.Object != "chat.completion" || len(c.Choices) != 1 {
			return a, fmt.Errorf("got %s, want one chat.completion choice (%v)", r.body, err)
		}
		ch := c.Choices[0]
		a.content, a.finish, a.calls = ch.Message.Content, ch.FinishReason, ch.Message.ToolCalls
		return a, nil
	}
	s, err := parseSSE(r)
	if err != nil {
		return a, err
	}
	a.content, a.finish = s.content, s.finish
	// The tool calls come in deltas of OpenAI's shape, each call whole.
	for ev := range strings.SplitSeq(string(r.body), "\n\n") {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct {
					ToolCalls []struct {
						Index int `json:"index"`
						llm.ToolCall
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			return a, err
		}
		for _, ch := range c.Choices {
			for _, tc := range ch.Delta.ToolCalls {
				if tc.Index != len(a.calls) {
					return a, fmt.Errorf("tool call delta with index %d, want %d: %s", tc.Index, len(a.calls), data)
				}
				a.calls = append(a.calls, tc.ToolCall)
			}
		}
	}
	return a, nil
}

// assistantWith is the assistant message a client sends back with the
// calls it was given.
func assistantWith(calls []llm.ToolCall) map[string]any {
	return map[string]any{"role": "assistant", "content": nil, "tool_calls": calls}
}

func toolResult(id, content string) map[string]any {
	return map[string]any{"role": "tool", "tool_call_id": id, "content": content}
}

// auditOf returns the tenant's audit records of type typ.
func auditOf(t *testing.T, env *testEnv, key, typ string) []store.AuditRecord {
	t.Helper()
	var out []store.AuditRecord
	for _, r := range auditLog(t, env, "/v1/audit", key) {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// TestClientToolRoundTrip runs a client tool as OpenAI's clients do: the
// call comes back with finish reason tool_calls (as deltas when streamed),
// arguments as checked; the follow-up with the tool result continues the
// turn, stateless or with the history kept server-side.
func TestClientToolRoundTrip(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _ := toolTenants(t, env, newFakeCRM(t))
	ask := userMsg(`/call send_email {"to":"bob@example.com", "body":"hello"}`)
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			a := env.toolSay(t, toolTurn{key: acmeKey, messages: []map[string]any{ask}, tools: []map[string]any{sendEmail}, stream: stream})
			if a.finish != "tool_calls" || len(a.calls) != 1 {
				t.Fatalf("got finish %q and calls %+v, want one call and tool_calls (%s)", a.finish, a.calls, a.raw)
			}
			c := a.calls[0]
			if c.Type != "function" || c.Function.Name != "send_email" || c.Function.Arguments != `{"body":"hello","to":"bob@example.com"}` || !strings.HasPrefix(c.ID, "call_") || c.ID == "call_1" {
				t.Fatalf("got call %+v, want send_email with the canonical arguments and an id of the server's", c)
			}
			got := env.toolSay(t, toolTurn{key: acmeKey, stream: stream, tools: []map[string]any{sendEmail},
				messages: []map[string]any{ask, assistantWith(a.calls), toolResult(c.ID, "queued as 42")}})
			if want := "Tool results:\n" + c.ID + ": queued as 42"; got.content != want || got.finish != "stop" || len(got.calls) != 0 {
				t.Fatalf("follow-up: got %q (finish %q, calls %v), want %q", got.content, got.finish, got.calls, want)
			}
		})
	}
	// With X-Session-Id the client sends only the result, or the call
	// message again: the model sees the call once either way.
	for i, resend := range []bool{false, true} {
		session := fmt.Sprintf("ct-%d", i)
		a := env.toolSay(t, toolTurn{key: acmeKey, session: session, messages: []map[string]any{ask}, tools: []map[string]any{sendEmail}})
		if len(a.calls) != 1 {
			t.Fatalf("session turn: got %s, want one call", a.raw)
		}
		next := []map[string]any{toolResult(a.calls[0].ID, "sent")}
		if resend {
			next = append([]map[string]any{assistantWith(a.calls)}, next...)
		}
		env.toolSay(t, toolTurn{key: acmeKey, session: session, messages: next, tools: []map[string]any{sendEmail}})
		var calls int
		for _, m := range env.echo(t, chatCall{key: acmeKey, session: session}) {
			calls += len(m.ToolCalls)
		}
		if calls != 1 {
			t.Errorf("resend=%v: the model's context holds %d tool calls, want 1", resend, calls)
		}
	}
	wantAllowedClientCalls(t, env, acmeKey, "client/send_email", 4)
}

// TestClientToolDeclarationsRefused checks the 400s: a client tool may not
// take a server-side tool's name nor declare a parameter the runtime
// fills, and a profile may take none. Another tenant's private tool name is
// no collision: a 400 there would tell acme it exists.
func TestClientToolDeclarationsRefused(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _ := toolTenants(t, env, newFakeCRM(t))
	env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"profiles": map[string]any{
		"locked": map[string]any{"client_tools": false}}}, http.StatusOK)
	ask := []map[string]any{userMsg("hi")}
	object := `{"type":"object","properties":{"x":{"type":"string"}}}`
	tests := []struct {
		name    string
		tools   []map[string]any
		extra   map[string]any
		status  int
		mention string
	}{
		{"shadows a server-side tool", []map[string]any{clientTool("crm_lookup", object)}, nil, 400, "crm_lookup"},
		{"shadows a tool policy does not offer", []map[string]any{clientTool("export_all", object)}, nil, 400, "export_all"},
		{"bound parameter", []map[string]any{clientTool("note", `{"type":"object","properties":{"tenant_id":{"type":"string"}}}`)}, nil, 400, "tenant_id"},
		{"bound parameter spelt otherwise", []map[string]any{clientTool("note", `{"type":"object","properties":{"TenantId":{"type":"string"}}}`)}, nil, 400, "TenantId"},
		{"bound map", []map[string]any{{"type": "function", "function": map[string]any{"name": "note", "parameters": json.RawMessage(object),
			"bound": map[string]string{"x": "tenant.id"}}}}, nil, 400, "bound"},
		{"declared twice", []map[string]any{clientTool("note", object), clientTool("note", object)}, nil, 400, "twice"},
		{"profile takes none", []map[string]any{sendEmail}, map[string]any{"model": "locked"}, 400, "locked"},
		{"tool_choice names no tool", []map[string]any{sendEmail}, map[string]any{"tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "other"}}}, 400, "tool_choice"},
		{"tool_choice names the client tool", []map[string]any{sendEmail}, map[string]any{"tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "send_email"}}, "parallel_tool_calls": false}, 200, ""},
		{"another tenant's private tool name", []map[string]any{clientTool("globex_notes", object)}, nil, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.toolChat(t, toolTurn{key: acmeKey, messages: ask, tools: tt.tools, extra: tt.extra})
			if tt.status == 200 {
				if r.status != 200 {
					t.Fatalf("got %v, want 200", r)
				}
				return
			}
			checkAPIError(t, r, tt.status, "invalid_request")
			if !strings.Contains(string(r.body), tt.mention) {
				t.Errorf("got %s, want the error to name %q", r.body, tt.mention)
			}
		})
	}
	// The top-level field sets the default profile's.
	env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"client_tools": false}, http.StatusOK)
	checkAPIError(t, env.toolChat(t, toolTurn{key: acmeKey, messages: ask, tools: []map[string]any{sendEmail}}), 400, "invalid_request")
	env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"client_tools": true}, http.StatusOK)
	v := env.admin(t, "GET", "/admin/v1/tenants/acme", nil, http.StatusOK)
	var view struct {
		ClientTools *bool `json:"client_tools"`
		Profiles    map[string]struct {
			ClientTools *bool `json:"client_tools"`
		}
	}
	if err := json.Unmarshal(v.body, &view); err != nil || view.ClientTools == nil || !*view.ClientTools ||
		view.Profiles["locked"].ClientTools == nil || *view.Profiles["locked"].ClientTools {
		t.Errorf("tenant view %s: want client_tools true for default and false for locked", v.body)
	}
}

// TestClientToolCallChecked plays the model as an attacker calling a
// client tool: with a runtime parameter, with another tenant's canary
// (plain and \u-escaped), with the tenant's own secret, and against the
// tenant's policy. What may not leave never reaches the client: the call is
// refused (the model reads why), audited, and the owner of a caught canary
// hears of it.
func TestClientToolCallChecked(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := toolTenants(t, env, newFakeCRM(t))
	canary := canaryOf(t, env, "globex")
	env.admin(t, "PUT", "/admin/v1/tenants/acme/policy",
		`forbid (principal, action, resource == Tool::"client/wire_money");
forbid (principal, action, resource == Tool::"client/send_email") when { context.to like "*@evil.example" };`, http.StatusNoContent)
	open := clientTool("note", `{"type":"object","properties":{"text":{"type":"string"}},"additionalProperties":true}`)
	declared := []map[string]any{sendEmail, open, clientTool("wire_money", `{"type":"object","properties":{"amount":{"type":"number"}}}`)}

	checkRefusedCalls(t, env, acmeKey, canary, []refusedCall{
		{"runtime parameter added", `/call note {"text":"x","tenant_id":"globex"}`, "tool.call", "model supplied a bound parameter"},
		{"runtime parameter look-alike", `/call note {"text":"x","TENANT_ID":"globex"}`, "tool.call", "look-alike key"},
		{"another tenant's canary", `/call send_email {"to":"bob@example.com","body":"ref ` + canary + `"}`, "guard.block", ""},
		{"another tenant's canary escaped", `/call note {"text":"` + hostileEscapeAll(canary) + `"}`, "guard.block", ""},
		{"forbidden client tool", `/call wire_money {"amount":5}`, "tool.call", "tenant/0"},
		{"forbidden arguments", `/call send_email {"to":"x@evil.example"}`, "tool.call", "tenant/1"},
		{"undeclared tool", `/call exfiltrate {"x":"y"}`, "tool.call", "not offered to this agent"},
	}, func(t *testing.T, content string, stream bool) (string, bool) {
		a := env.toolSay(t, toolTurn{key: acmeKey, messages: []map[string]any{userMsg(content)}, tools: declared, stream: stream})
		return a.raw, a.finish == "stop" && len(a.calls) == 0 && strings.HasPrefix(a.content, "Tool results:\ncall_1: error: ")
	})
	if len(auditOf(t, env, globexKey, "guard.foreign_leak")) == 0 {
		t.Errorf("globex's audit log does not tell of its canary caught leaving")
	}
	// The tenant's own secret is redacted from what its client gets.
	a := env.toolSay(t, toolTurn{key: acmeKey, messages: []map[string]any{userMsg(`/call send_email {"to":"bob@example.com","body":"token ` + acmeCRMToken + `"}`)}, tools: declared})
	if len(a.calls) != 1 || strings.Contains(a.raw, acmeCRMToken) || !strings.Contains(a.calls[0].Function.Arguments, "[REDACTED:crm_token]") {
		t.Errorf("got %s, want the call with the secret redacted", a.raw)
	}
	// A forbidden client tool is not offered; the others are.
	ctx := env.toolSay(t, toolTurn{key: acmeKey, messages: []map[string]any{userMsg("/echo")}, tools: declared})
	var offered struct{ Tools []string }
	if err := json.Unmarshal([]byte(ctx.content), &offered); err != nil || slices.Contains(offered.Tools, "wire_money") || !slices.Contains(offered.Tools, "send_email") {
		t.Errorf("offered %v (%v), want send_email and not wire_money", offered.Tools, err)
	}
}

// TestClientToolMixedStep checks a step calling a server-side and a client
// tool: the server-side call runs, the client call is held back with a
// word to the model, and nothing is returned to the client half done.
func TestClientToolMixedStep(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	crm := newFakeCRM(t)
	acmeKey, _ := toolTenants(t, env, crm)
	a := env.toolSay(t, toolTurn{key: acmeKey, tools: []map[string]any{sendEmail},
		messages: []map[string]any{userMsg("/call crm_lookup {\"customer\":\"c-7\"}\n/call send_email {\"to\":\"bob@example.com\"}")}})
	if a.finish != "stop" || len(a.calls) != 0 || len(crm.requests()) != 1 {
		t.Fatalf("got %s and %d CRM calls, want the server-side call run and nothing returned", a.raw, len(crm.requests()))
	}
	if !strings.Contains(a.content, `call_1: {"customer":"c-7"`) || !strings.Contains(a.content, "call_2: "+heldMixedText) {
		t.Errorf("got %q, want the CRM result and the held-back client call", a.content)
	}
}

// heldMixedText starts the agent's word about a held-back client call.
const heldMixedText = "error: not returned to the client: this step also called server-side tools"

// TestClientToolResultStaysInTenant checks a client tool result sent by
// tenant A reaches A's model and history only: B, with the same session
// id, and even the call's id, never sees it.
func TestClientToolResultStaysInTenant(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := toolTenants(t, env, newFakeCRM(t))
	const marker = "ACME-CLIENT-RESULT-5d21"
	a := env.toolSay(t, toolTurn{key: acmeKey, session: "shared", tools: []map[string]any{sendEmail},
		messages: []map[string]any{userMsg(`/call send_email {"to":"bob@example.com"}`)}})
	if len(a.calls) != 1 {
		t.Fatalf("got %s, want one call", a.raw)
	}
	id := a.calls[0].ID
	env.toolSay(t, toolTurn{key: acmeKey, session: "shared", tools: []map[string]any{sendEmail}, messages: []map[string]any{toolResult(id, marker)}})
	if got := joinContents(env.echo(t, chatCall{key: acmeKey, session: "shared"})); !strings.Contains(got, marker) {
		t.Fatalf("acme's own history lacks its tool result: %q", got)
	}
	// globex replays acme's call id in its own session of the same name.
	g := env.toolSay(t, toolTurn{key: globexKey, session: "shared", tools: []map[string]any{sendEmail}, messages: []map[string]any{
		assistantWith(a.calls), toolResult(id, "globex result")}})
	if strings.Contains(g.raw, marker) {
		t.Fatalf("globex's answer holds acme's tool result: %s", g.raw)
	}
	for _, m := range env.echo(t, chatCall{key: globexKey, session: "shared"}) {
		if strings.Contains(m.Content, marker) || strings.Contains(m.Content, "bob@example.com") {
			t.Fatalf("globex's context holds acme's client tool exchange: %+v", m)
		}
	}
}

// TestClientToolsForwarded checks the provider receives the client tools
// as declared (strict included), tool_choice and parallel_tool_calls, and
// the follow-up's tool call and result messages.
func TestClientToolsForwarded(t *testing.T) {
	env, up, key := newFakeEnv(t, 0)
	strict := map[string]any{"type": "function", "function": map[string]any{"name": "send_email", "strict": true,
		"parameters": json.RawMessage(`{"type":"object","properties":{"to":{"type":"string"}},"required":["to"],"additionalProperties":false}`)}}
	choice := map[string]any{"type": "function", "function": map[string]any{"name": "send_email"}}
	calls := []llm.ToolCall{{ID: "call_x", Type: "function", Function: llm.FunctionCall{Name: "send_email", Arguments: `{"to":"bob"}`}}}
	env.toolSay(t, toolTurn{key: key, tools: []map[string]any{strict}, extra: map[string]any{"tool_choice": choice, "parallel_tool_calls": false},
		messages: []map[string]any{userMsg("mail bob"), assistantWith(calls), toolResult("call_x", "sent")}})
	got := up.last(t)
	var tools []llm.Tool
	if err := json.Unmarshal(got["tools"], &tools); err != nil || len(tools) != 1 || tools[0].Function.Name != "send_email" ||
		tools[0].Function.Strict == nil || !*tools[0].Function.Strict || !jsonEqual(tools[0].Function.Parameters, strict["function"].(map[string]any)["parameters"].(json.RawMessage)) {
		t.Errorf("upstream got tools %s (%v), want send_email as declared", got["tools"], err)
	}
	want, _ := json.Marshal(choice)
	if !jsonEqual(got["tool_choice"], want) || string(got["parallel_tool_calls"]) != "false" {
		t.Errorf("upstream got tool_choice %s parallel_tool_calls %s, want %s and false", got["tool_choice"], got["parallel_tool_calls"], want)
	}
	var msgs []llm.Message
	if err := json.Unmarshal(got["messages"], &msgs); err != nil || len(msgs) != 4 {
		t.Fatalf("upstream got messages %s (%v), want system, user, the call and its result", got["messages"], err)
	}
	if m := msgs[2]; m.Role != "assistant" || len(m.ToolCalls) != 1 || m.ToolCalls[0].ID != "call_x" || m.ToolCalls[0].Function.Arguments != `{"to":"bob"}` {
		t.Errorf("upstream got call message %+v", m)
	}
	if m := msgs[3]; m.Role != "tool" || m.ToolCallID != "call_x" || m.Content != "sent" {
		t.Errorf("upstream got result message %+v", m)
	}
}

// sendEmailFn is sendEmail as a legacy "functions" entry.
var sendEmailFn = map[string]any{"name": "send_email", "description": "Send an email",
	"parameters": json.RawMessage(`{"type":"object","properties":{"to":{"type":"string"},"body":{"type":"string"}},"required":["to"]}`)}

// legacyAnswer is a decoded chat answer in the functions API's shape.
type legacyAnswer struct {
	content, finish string
	call            *llm.FunctionCall
	toolCalls       int
	raw             string
}

func decodeLegacyAnswer(t *testing.T, r response, stream bool) legacyAnswer {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("chat: got %v, want 200", r)
	}
	a := legacyAnswer{raw: string(r.body)}
	if !stream {
		var c struct {
			Choices []struct {
				Message struct {
					Content      string            `json:"content"`
					FunctionCall *llm.FunctionCall `json:"function_call"`
					ToolCalls    []llm.ToolCall    `json:"tool_calls"`
				} `json:"message"`
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(r.body, &c); err != nil || len(c.Choices) != 1 {
			t.Fatalf("got %s, want one choice (%v)", r.body, err)
		}
		m := c.Choices[0].Message
		a.content, a.finish, a.call, a.toolCalls = m.Content, c.Choices[0].FinishReason, m.FunctionCall, len(m.ToolCalls)
		return a
	}
	s, err := parseSSE(r)
	if err != nil {
		t.Fatal(err)
	}
	a.content, a.finish = s.content, s.finish
	for ev := range strings.SplitSeq(string(r.body), "\n\n") {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct {
					FunctionCall *llm.FunctionCall `json:"function_call"`
					ToolCalls    []any             `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatal(err)
		}
		for _, ch := range c.Choices {
			a.toolCalls += len(ch.Delta.ToolCalls)
			if fc := ch.Delta.FunctionCall; fc != nil {
				if a.call != nil {
					t.Fatalf("two function_call deltas: %s", r.body)
				}
				a.call = fc
			}
		}
	}
	return a
}

// legacyTurn is a chat request of a client using the functions API.
func legacyTurn(key, session string, stream bool, msgs ...map[string]any) toolTurn {
	return toolTurn{key: key, session: session, messages: msgs, stream: stream,
		extra: map[string]any{"functions": []map[string]any{sendEmailFn}}}
}

func assistantFunctionCall(fc llm.FunctionCall) map[string]any {
	return map[string]any{"role": "assistant", "content": nil, "function_call": fc}
}

func functionResult(name, content string) map[string]any {
	return map[string]any{"role": "function", "name": name, "content": content}
}

// TestLegacyFunctionsRoundTrip runs a client tool declared in the legacy
// "functions": the call comes back as message.function_call with finish
// reason function_call (a function_call delta when streamed), arguments as
// checked, and the "function" message that follows continues the turn,
// stateless or with the history kept server-side. Cedar sees the call as
// Tool::"client/send_email", as it does one declared in tools.
func TestLegacyFunctionsRoundTrip(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _ := toolTenants(t, env, newFakeCRM(t))
	ask := userMsg(`/call send_email {"to":"bob@example.com", "body":"hello"}`)
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			a := decodeLegacyAnswer(t, env.toolChat(t, legacyTurn(acmeKey, "", stream, ask)), stream)
			if a.finish != "function_call" || a.call == nil || a.toolCalls != 0 {
				t.Fatalf("got %s, want one function_call, no tool_calls, finish function_call", a.raw)
			}
			if a.call.Name != "send_email" || a.call.Arguments != `{"body":"hello","to":"bob@example.com"}` {
				t.Fatalf("got call %+v, want send_email with the canonical arguments", a.call)
			}
			got := decodeLegacyAnswer(t, env.toolChat(t, legacyTurn(acmeKey, "", stream, ask, assistantFunctionCall(*a.call), functionResult("send_email", "queued as 42"))), stream)
			if !strings.HasPrefix(got.content, "Tool results:\ncall_") || !strings.HasSuffix(got.content, ": queued as 42") || got.finish != "stop" || got.call != nil {
				t.Fatalf("follow-up: got %s, want the model to read the result", got.raw)
			}
		})
	}
	// With X-Session-Id the client sends only the result, or the call
	// message again: the model sees the call once, answered, either way.
	for i, resend := range []bool{false, true} {
		session := fmt.Sprintf("fn-%d", i)
		a := decodeLegacyAnswer(t, env.toolChat(t, legacyTurn(acmeKey, session, false, ask)), false)
		if a.call == nil {
			t.Fatalf("session turn: got %s, want a function_call", a.raw)
		}
		next := []map[string]any{functionResult("send_email", "sent")}
		if resend {
			next = append([]map[string]any{assistantFunctionCall(*a.call)}, next...)
		}
		decodeLegacyAnswer(t, env.toolChat(t, legacyTurn(acmeKey, session, false, next...)), false)
		var calls []string
		var results []string
		for _, m := range env.echo(t, chatCall{key: acmeKey, session: session}) {
			for _, tc := range m.ToolCalls {
				calls = append(calls, tc.ID)
			}
			if m.Role == "tool" {
				results = append(results, m.ToolCallID)
			}
		}
		if len(calls) != 1 || len(results) != 1 || calls[0] != results[0] {
			t.Errorf("resend=%v: the model's context holds calls %v and results %v, want one call and its result", resend, calls, results)
		}
	}
	wantAllowedClientCalls(t, env, acmeKey, "client/send_email", 4)
}

// TestLegacyFunctionsOneCallPerAnswer checks that a model step calling two
// functions is not returned (the functions API has room for one): the
// model reads why and answers again.
func TestLegacyFunctionsOneCallPerAnswer(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _ := toolTenants(t, env, newFakeCRM(t))
	a := decodeLegacyAnswer(t, env.toolChat(t, legacyTurn(acmeKey, "", false,
		userMsg("/call send_email {\"to\":\"a@example.com\"}\n/call send_email {\"to\":\"b@example.com\"}"))), false)
	if a.finish != "stop" || a.call != nil || !strings.Contains(a.content, "call_1: "+heldOneCallText) || !strings.Contains(a.content, "call_2: "+heldOneCallText) {
		t.Fatalf("got %s, want both calls held back with a word to the model", a.raw)
	}
}

// heldOneCallText starts the agent's word about a call held back because
// the functions API returns one.
const heldOneCallText = "error: not returned to the client: this client takes one function call per answer"

// TestLegacyFunctionsRefused checks the 400s of the functions API: the same
// declaration checks as tools (no server-side tool's name, no runtime
// parameter, a profile may take none), and no mixing with the tools API.
func TestLegacyFunctionsRefused(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _ := toolTenants(t, env, newFakeCRM(t))
	env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"profiles": map[string]any{
		"locked": map[string]any{"client_tools": false}}}, http.StatusOK)
	object := json.RawMessage(`{"type":"object","properties":{"x":{"type":"string"}}}`)
	fn := func(name string, params json.RawMessage) []map[string]any {
		return []map[string]any{{"name": name, "parameters": params}}
	}
	ask := []map[string]any{userMsg("hi")}
	tests := []struct {
		name     string
		body     map[string]any
		messages []map[string]any
		mention  string
	}{
		{"shadows a server-side tool", map[string]any{"functions": fn("crm_lookup", object)}, ask, "crm_lookup"},
		{"shadows a tool policy does not offer", map[string]any{"functions": fn("export_all", object)}, ask, "export_all"},
		{"bound parameter", map[string]any{"functions": fn("note", json.RawMessage(`{"type":"object","properties":{"tenant_id":{"type":"string"}}}`))}, ask, "tenant_id"},
		{"bound parameter spelt otherwise", map[string]any{"functions": fn("note", json.RawMessage(`{"type":"object","properties":{"Tenant-ID":{"type":"string"}}}`))}, ask, "Tenant-ID"},
		{"bound map", map[string]any{"functions": []map[string]any{{"name": "note", "parameters": object, "bound": map[string]string{"x": "tenant.id"}}}}, ask, "bound"},
		{"declared twice", map[string]any{"functions": append(fn("note", object), fn("note", object)...)}, ask, "twice"},
		{"profile takes none", map[string]any{"functions": []map[string]any{sendEmailFn}, "model": "locked"}, ask, "locked"},
		{"tools and functions", map[string]any{"functions": []map[string]any{sendEmailFn}, "tools": []map[string]any{sendEmail}}, ask, "functions"},
		{"function_call without functions", map[string]any{"function_call": "auto"}, ask, "function_call"},
		{"function_call names no function", map[string]any{"functions": []map[string]any{sendEmailFn}, "function_call": map[string]any{"name": "other"}}, ask, "function_call"},
		{"function_call of the wrong shape", map[string]any{"functions": []map[string]any{sendEmailFn}, "function_call": "required"}, ask, "function_call"},
		{"tool_choice with functions", map[string]any{"functions": []map[string]any{sendEmailFn}, "tool_choice": "auto"}, ask, "tool_choice"},
		{"parallel calls", map[string]any{"functions": []map[string]any{sendEmailFn}, "parallel_tool_calls": true}, ask, "parallel_tool_calls"},
		{"function messages with tools", map[string]any{"tools": []map[string]any{sendEmail}},
			[]map[string]any{userMsg("hi"), assistantFunctionCall(llm.FunctionCall{Name: "send_email", Arguments: "{}"}), functionResult("send_email", "ok")}, "functions"},
		{"result of no call", map[string]any{"functions": []map[string]any{sendEmailFn}}, []map[string]any{userMsg("hi"), functionResult("send_email", "ok")}, "send_email"},
		{"function message without a name", map[string]any{"functions": []map[string]any{sendEmailFn}}, []map[string]any{userMsg("hi"), {"role": "function", "content": "ok"}}, "name"},
		{"function_call on a user message", map[string]any{"functions": []map[string]any{sendEmailFn}}, []map[string]any{{"role": "user", "content": "hi", "function_call": map[string]string{"name": "send_email"}}}, "function_call"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.toolChat(t, toolTurn{key: acmeKey, messages: tt.messages, extra: tt.body})
			checkAPIError(t, r, http.StatusBadRequest, "invalid_request")
			if !strings.Contains(string(r.body), tt.mention) {
				t.Errorf("got %s, want the error to name %q", r.body, tt.mention)
			}
		})
	}
	// function_call naming the declared function is taken.
	r := env.toolChat(t, toolTurn{key: acmeKey, messages: ask, extra: map[string]any{"functions": []map[string]any{sendEmailFn},
		"function_call": map[string]any{"name": "send_email"}}})
	if r.status != http.StatusOK {
		t.Errorf("function_call naming send_email: got %v, want 200", r)
	}
}

// TestLegacyFunctionCallChecked plays the model as an attacker calling a
// legacy function: with a runtime parameter, with another tenant's canary,
// and against the tenant's policy. Nothing reaches the client; the call is
// refused and audited, as a call of a client tool declared in tools is.
func TestLegacyFunctionCallChecked(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := toolTenants(t, env, newFakeCRM(t))
	canary := canaryOf(t, env, "globex")
	env.admin(t, "PUT", "/admin/v1/tenants/acme/policy", `forbid (principal, action, resource == Tool::"client/wire_money");`, http.StatusNoContent)
	functions := []map[string]any{sendEmailFn,
		{"name": "note", "parameters": json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}},"additionalProperties":true}`)},
		{"name": "wire_money", "parameters": json.RawMessage(`{"type":"object","properties":{"amount":{"type":"number"}}}`)}}
	checkRefusedCalls(t, env, acmeKey, canary, []refusedCall{
		{"runtime parameter added", `/call note {"text":"x","tenant_id":"globex"}`, "tool.call", "model supplied a bound parameter"},
		{"another tenant's canary", `/call send_email {"to":"bob@example.com","body":"ref ` + canary + `"}`, "guard.block", ""},
		{"another tenant's canary escaped", `/call note {"text":"` + hostileEscapeAll(canary) + `"}`, "guard.block", ""},
		{"forbidden function", `/call wire_money {"amount":5}`, "tool.call", "tenant/0"},
	}, func(t *testing.T, content string, stream bool) (string, bool) {
		r := env.toolChat(t, toolTurn{key: acmeKey, messages: []map[string]any{userMsg(content)}, stream: stream,
			extra: map[string]any{"functions": functions}})
		a := decodeLegacyAnswer(t, r, stream)
		return a.raw, a.finish == "stop" && a.call == nil && strings.HasPrefix(a.content, "Tool results:\ncall_1: error: ")
	})
	if len(auditOf(t, env, globexKey, "guard.foreign_leak")) == 0 {
		t.Errorf("globex's audit log does not tell of its canary caught leaving")
	}
}

// TestLegacyFunctionsForwarded checks the provider receives the functions
// as tools, function_call as tool_choice, one call at a time, and the
// follow-up's function_call and function messages as a tool call and its
// result, linked by one id.
func TestLegacyFunctionsForwarded(t *testing.T) {
	env, up, key := newFakeEnv(t, 0)
	fc := llm.FunctionCall{Name: "send_email", Arguments: `{"to":"bob"}`}
	r := env.toolChat(t, toolTurn{key: key, extra: map[string]any{"functions": []map[string]any{sendEmailFn}, "function_call": map[string]any{"name": "send_email"}},
		messages: []map[string]any{userMsg("mail bob"), assistantFunctionCall(fc), functionResult("send_email", "sent")}})
	if r.status != http.StatusOK {
		t.Fatalf("got %v, want 200", r)
	}
	got := up.last(t)
	var tools []llm.Tool
	if err := json.Unmarshal(got["tools"], &tools); err != nil || len(tools) != 1 || tools[0].Function.Name != "send_email" ||
		!jsonEqual(tools[0].Function.Parameters, sendEmailFn["parameters"].(json.RawMessage)) {
		t.Errorf("upstream got tools %s (%v), want send_email as declared", got["tools"], err)
	}
	if want := `{"type":"function","function":{"name":"send_email"}}`; !jsonEqual(got["tool_choice"], []byte(want)) || string(got["parallel_tool_calls"]) != "false" {
		t.Errorf("upstream got tool_choice %s parallel_tool_calls %s, want %s and false", got["tool_choice"], got["parallel_tool_calls"], want)
	}
	if got["functions"] != nil || got["function_call"] != nil {
		t.Errorf("upstream got the legacy fields too: %s %s", got["functions"], got["function_call"])
	}
	var msgs []llm.Message
	if err := json.Unmarshal(got["messages"], &msgs); err != nil || len(msgs) != 4 {
		t.Fatalf("upstream got messages %s (%v), want system, user, the call and its result", got["messages"], err)
	}
	call, result := msgs[2], msgs[3]
	if call.Role != "assistant" || len(call.ToolCalls) != 1 || call.ToolCalls[0].ID == "" || call.ToolCalls[0].Function != fc {
		t.Errorf("upstream got call message %+v", call)
	}
	if result.Role != "tool" || result.ToolCallID == "" || result.Name != "" || result.ToolCallID != call.ToolCalls[0].ID || result.Content != "sent" {
		t.Errorf("upstream got result message %+v, want the result of call %+v", result, call.ToolCalls)
	}
}

// refusedCall is a model call of a client tool that the checks must refuse:
// audit is the type of the record it leaves in the tenant's log, reason
// what that record names.
type refusedCall struct{ name, call, audit, reason string }

// checkRefusedCalls has the model make each call, streamed and not, through
// send, which reports the raw answer and whether it returned no call to the
// client and gave the model the refusal. Nothing the call held may reach
// the client, and acme's log must get one record naming the reason (a
// denial, for tool.call).
func checkRefusedCalls(t *testing.T, env *testEnv, acmeKey, canary string, calls []refusedCall, send func(t *testing.T, content string, stream bool) (raw string, refused bool)) {
	t.Helper()
	for _, tt := range calls {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", tt.name, stream), func(t *testing.T) {
				before := len(auditOf(t, env, acmeKey, tt.audit))
				// unseen: the client's own message does not carry the canary
				// (one it carried would be no leak, see guard.Inputs).
				raw, refused := send(t, unseen(tt.call), stream)
				if !refused {
					t.Fatalf("got %s, want no call returned and the refusal for the model", raw)
				}
				if strings.Contains(raw, canary) || strings.Contains(raw, "globex") {
					t.Fatalf("the answer carries what the call held: %s", raw)
				}
				recs := auditOf(t, env, acmeKey, tt.audit)
				if len(recs) != before+1 {
					t.Fatalf("got %d new %s records, want 1", len(recs)-before, tt.audit)
				}
				if rec := string(recs[len(recs)-1].Data); !strings.Contains(rec, tt.reason) || (tt.audit == "tool.call" && !strings.Contains(rec, "deny")) {
					t.Errorf("audit record %s, want a denial naming %q", rec, tt.reason)
				}
			})
		}
	}
}

// canaryOf is tenant id's first canary.
func canaryOf(t *testing.T, env *testEnv, id tenant.ID) string {
	t.Helper()
	def, err := env.plane.Tenant(id)
	if err != nil || len(def.Canaries) == 0 {
		t.Fatalf("%s has no canary: %v", id, err)
	}
	return def.Canaries[0]
}

// wantAllowedClientCalls checks that the tenant's audit holds want allowed
// calls of the client tool.
func wantAllowedClientCalls(t *testing.T, env *testEnv, key, tool string, want int) {
	t.Helper()
	var allowed int
	for _, r := range auditOf(t, env, key, "tool.call") {
		if d := string(r.Data); strings.Contains(d, `"tool":"`+tool+`"`) && strings.Contains(d, `"decision":"allow"`) {
			allowed++
		}
	}
	if allowed != want {
		t.Errorf("audit holds %d allowed %s calls, want %d", allowed, tool, want)
	}
}
