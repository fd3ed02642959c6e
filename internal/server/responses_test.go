package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// wireResponse is the part of a Responses API response the tests read.
type wireResponse struct {
	ID                 string  `json:"id"`
	Object             string  `json:"object"`
	Status             string  `json:"status"`
	Model              string  `json:"model"`
	PreviousResponseID *string `json:"previous_response_id"`
	Output             []struct {
		Type      string `json:"type"`
		Role      string `json:"role"`
		CallID    string `json:"call_id"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
		Content   []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	} `json:"output"`
	Usage *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
}

// text is the response's output text, as the SDKs' output_text joins it.
func (w wireResponse) text() string {
	var sb strings.Builder
	for _, o := range w.Output {
		for _, c := range o.Content {
			if c.Type == "output_text" {
				sb.WriteString(c.Text)
			}
		}
	}
	return sb.String()
}

func (e *testEnv) respond(t *testing.T, key string, body map[string]any) wireResponse {
	t.Helper()
	r := e.do(t, "POST", "/v1/responses", key, body, nil)
	if r.status != http.StatusOK {
		t.Fatalf("POST /v1/responses %v: got %v, want 200", body, r)
	}
	var got wireResponse
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("decode response: %v (%s)", err, r.body)
	}
	return got
}

func responsesTenants(t *testing.T) (env *testEnv, acmeKey, globexKey string) {
	t.Helper()
	env = newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme", "system_prompt": "You are Acme's agent.", "no_cache": true})
	env.createTenant(t, map[string]any{"id": "globex", "system_prompt": "You are Globex's agent.", "no_cache": true})
	_, acmeKey = env.newKey(t, "acme")
	_, globexKey = env.newKey(t, "globex")
	return env, acmeKey, globexKey
}

func TestResponsesRoundTrip(t *testing.T) {
	env, key, _ := responsesTenants(t)
	first := env.respond(t, key, map[string]any{"input": "my name is Ada", "user": "alice", "instructions": "Answer briefly."})
	if first.Object != "response" || first.Status != "completed" || first.Model != "default" || !strings.HasPrefix(first.ID, "resp_") {
		t.Fatalf("first response = %+v, want a completed response of the default profile", first)
	}
	if got := first.text(); !strings.Contains(got, `You said: "my name is Ada"`) || !strings.Contains(got, `System: "You are Acme's agent.`) {
		t.Errorf("first answer %q: want the scripted reply to the input, under the profile's prompt", got)
	}
	if first.Usage == nil || first.Usage.InputTokens == 0 || first.Usage.OutputTokens == 0 {
		t.Errorf("usage = %+v, want the tokens counted", first.Usage)
	}

	// The next response continues the first: the model sees its
	// conversation, without the first response's instructions.
	second := env.respond(t, key, map[string]any{"input": "/echo", "user": "alice", "previous_response_id": first.ID})
	if second.PreviousResponseID == nil || *second.PreviousResponseID != first.ID {
		t.Errorf("previous_response_id = %v, want %s", second.PreviousResponseID, first.ID)
	}
	seen, err := echoed(second.text())
	if err != nil {
		t.Fatal(err)
	}
	ctx := joinContents(seen)
	if !strings.Contains(ctx, "my name is Ada") || !strings.Contains(ctx, `You said: "my name is Ada"`) || strings.Contains(ctx, "Answer briefly.") {
		t.Errorf("the continued response's model saw %q: want the first exchange, not its instructions", ctx)
	}

	// GET returns what POST did; DELETE removes it and what it continued.
	r := env.do(t, "GET", "/v1/responses/"+first.ID+"?user=alice", key, nil, nil)
	var got wireResponse
	if r.status != http.StatusOK || json.Unmarshal(r.body, &got) != nil || got.ID != first.ID || got.text() != first.text() {
		t.Fatalf("GET %s: got %v, want the stored response", first.ID, r)
	}
	if r := env.do(t, "DELETE", "/v1/responses/"+first.ID+"?user=alice", key, nil, nil); r.status != http.StatusOK || !strings.Contains(string(r.body), `"deleted":true`) {
		t.Fatalf("DELETE: got %v", r)
	}
	checkAPIError(t, env.do(t, "GET", "/v1/responses/"+first.ID+"?user=alice", key, nil, nil), http.StatusNotFound, "")
	r = env.do(t, "POST", "/v1/responses", key, map[string]any{"input": "hi", "user": "alice", "previous_response_id": first.ID}, nil)
	checkAPIError(t, r, http.StatusNotFound, "")

	// store: false keeps nothing to GET or continue.
	loose := env.respond(t, key, map[string]any{"input": "forget me", "user": "alice", "store": false})
	checkAPIError(t, env.do(t, "GET", "/v1/responses/"+loose.ID+"?user=alice", key, nil, nil), http.StatusNotFound, "")
}

// TestResponsesOfOthersNotFound: another tenant, or another end user of the
// same tenant, can neither read, delete nor continue a response; each is
// told it does not exist, as for one never made.
func TestResponsesOfOthersNotFound(t *testing.T) {
	env, acmeKey, globexKey := responsesTenants(t)
	mine := env.respond(t, acmeKey, map[string]any{"input": "acme private plans", "user": "alice"})
	for _, tc := range []struct{ name, key, user string }{
		{"another tenant", globexKey, "alice"},
		{"another end user", acmeKey, "bob"},
		{"no end user", acmeKey, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := "?user=" + tc.user
			checkAPIError(t, env.do(t, "GET", "/v1/responses/"+mine.ID+q, tc.key, nil, nil), http.StatusNotFound, "")
			checkAPIError(t, env.do(t, "DELETE", "/v1/responses/"+mine.ID+q, tc.key, nil, nil), http.StatusNotFound, "")
			r := env.do(t, "POST", "/v1/responses", tc.key, map[string]any{"input": "/echo", "user": tc.user, "previous_response_id": mine.ID}, nil)
			checkAPIError(t, r, http.StatusNotFound, "")
			if strings.Contains(string(r.body), "acme private plans") {
				t.Errorf("the refusal carries the response: %s", r.body)
			}
		})
	}
	if r := env.do(t, "GET", "/v1/responses/"+mine.ID+"?user=alice", acmeKey, nil, nil); r.status != http.StatusOK {
		t.Errorf("the owner's GET after the others tried: got %v", r)
	}
	// A chat session cannot be pointed at a response's stored conversation.
	r := env.chat(t, chatCall{key: acmeKey, user: "alice", content: "/echo", session: "bulkhead:resp:" + mine.ID})
	checkAPIError(t, r, http.StatusBadRequest, "")
}

// TestResponsesClientTools runs a client function tool round trip: the call
// comes back as a function_call item, and its output, sent with
// previous_response_id, reaches the model.
func TestResponsesClientTools(t *testing.T) {
	env, key, _ := responsesTenants(t)
	tools := []map[string]any{{"type": "function", "name": "get_weather", "description": "Weather for a city",
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}}}}
	call := env.respond(t, key, map[string]any{"input": `/call get_weather {"city":"Paris"}`, "user": "alice", "tools": tools})
	if len(call.Output) != 1 || call.Output[0].Type != "function_call" || call.Output[0].Name != "get_weather" ||
		call.Output[0].Arguments != `{"city":"Paris"}` || call.Output[0].CallID == "" {
		t.Fatalf("output = %+v, want one checked function_call", call.Output)
	}
	done := env.respond(t, key, map[string]any{"user": "alice", "tools": tools, "previous_response_id": call.ID,
		"input": []map[string]any{{"type": "function_call_output", "call_id": call.Output[0].CallID, "output": "sunny, 21C"}}})
	if got := done.text(); !strings.Contains(got, call.Output[0].CallID+": sunny, 21C") {
		t.Errorf("answer after the tool output = %q, want the model to have read it", got)
	}
}

func TestResponsesStream(t *testing.T) {
	env, key, _ := responsesTenants(t)
	r := env.do(t, "POST", "/v1/responses", key, map[string]any{"input": "stream this please", "user": "alice", "stream": true}, nil)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: got %v", r)
	}
	var types []string
	var deltas strings.Builder
	var final wireResponse
	seq := 0
	for block := range strings.SplitSeq(strings.TrimSpace(string(r.body)), "\n\n") {
		var name, data string
		for line := range strings.SplitSeq(block, "\n") {
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				name = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				data = v
			}
		}
		if data == "" {
			continue // a keep-alive comment
		}
		var ev struct {
			Type     string       `json:"type"`
			Seq      int          `json:"sequence_number"`
			Delta    string       `json:"delta"`
			Response wireResponse `json:"response"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil || ev.Type != name || ev.Seq != seq {
			t.Fatalf("event %q %s: want a decodable event of its name, sequence number %d (%v)", name, data, seq, err)
		}
		seq++
		types = append(types, ev.Type)
		deltas.WriteString(ev.Delta)
		if ev.Type == "response.completed" {
			final = ev.Response
		}
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
	if len(types) < len(want)+4 || strings.Join(types[:len(want)], ",") != strings.Join(want, ",") || types[len(types)-1] != "response.completed" {
		t.Fatalf("event types %v: want %v, deltas, the done events and response.completed", types, want)
	}
	if final.Status != "completed" || final.text() == "" || final.text() != deltas.String() {
		t.Errorf("completed response text %q, streamed deltas %q: want them equal", final.text(), deltas.String())
	}
	r = env.do(t, "GET", "/v1/responses/"+final.ID+"?user=alice", key, nil, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "stream this please") {
		t.Errorf("GET of the streamed response: got %v", r)
	}
}

func TestResponsesBadRequests(t *testing.T) {
	env, key, _ := responsesTenants(t)
	for _, tc := range []struct {
		name string
		body map[string]any
		want string
	}{
		{"unknown field", map[string]any{"input": "x", "truncation": "auto"}, "truncation"},
		{"unknown text member", map[string]any{"input": "x", "text": map[string]any{"verbosity": "low"}}, "verbosity"},
		{"no input", map[string]any{"model": "default"}, "input"},
		{"image part", map[string]any{"input": []map[string]any{{"role": "user", "content": []map[string]any{{"type": "input_image", "image_url": "x"}}}}}, "input_image"},
		{"built-in tool", map[string]any{"input": "x", "tools": []map[string]any{{"type": "web_search"}}}, "web_search"},
		{"bad format", map[string]any{"input": "x", "text": map[string]any{"format": map[string]any{"type": "yaml"}}}, "yaml"},
		{"malformed id", map[string]any{"input": "x", "previous_response_id": "resp_../../x"}, "no response"},
		{"something to include", map[string]any{"input": "x", "include": []string{"reasoning.encrypted_content"}}, "reasoning.encrypted_content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := env.do(t, "POST", "/v1/responses", key, tc.body, nil)
			if r.status != http.StatusBadRequest && r.status != http.StatusNotFound {
				t.Fatalf("got %v, want a 400 (or 404 for an id)", r)
			}
			checkAPIError(t, r, r.status, "")
			if !strings.Contains(string(r.body), tc.want) {
				t.Errorf("error %s: want it to name %s", r.body, tc.want)
			}
		})
	}
	r := env.do(t, "POST", "/v1/responses", key, map[string]any{"input": "x"}, map[string]string{"X-Session-Id": "s1"})
	checkAPIError(t, r, http.StatusBadRequest, "")
}

// TestResponsesEmptyInclude: the OpenAI Agents SDK sends "include": [] with
// every request; an empty list asks for nothing and is answered.
func TestResponsesEmptyInclude(t *testing.T) {
	env, key, _ := responsesTenants(t)
	for _, include := range []any{[]string{}, nil} {
		got := env.respond(t, key, map[string]any{"input": "include nothing", "include": include})
		if got.Status != "completed" || !strings.Contains(got.text(), "include nothing") {
			t.Errorf("include %v: got %+v, want a completed answer to the input", include, got)
		}
	}
}

// TestResponsesFormatForwarded: text.format reaches the provider as the
// chat response_format with exactly the members the client sent, none
// added (an empty description or a null strict) and none dropped.
func TestResponsesFormatForwarded(t *testing.T) {
	schema := json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)
	for _, tc := range []struct {
		name   string
		format string
		want   string
	}{
		{"name and schema", `{"type":"json_schema","name":"trip","schema":` + string(schema) + `}`,
			`{"json_schema":{"name":"trip","schema":` + string(schema) + `},"type":"json_schema"}`},
		{"strict and description", `{"type":"json_schema","name":"trip","description":"A trip","strict":false,"schema":` + string(schema) + `}`,
			`{"json_schema":{"description":"A trip","name":"trip","schema":` + string(schema) + `,"strict":false},"type":"json_schema"}`},
		{"json_object", `{"type":"json_object"}`, `{"type":"json_object"}`},
		{"text", `{"type":"text"}`, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req responsesRequest
			if err := json.Unmarshal([]byte(`{"input":"x","text":{"format":`+tc.format+`}}`), &req); err != nil {
				t.Fatal(err)
			}
			c, _, err := req.chatRequest()
			if err != nil {
				t.Fatalf("chatRequest: %v", err)
			}
			if got := string(c.ResponseFormat); got != tc.want {
				t.Errorf("response_format = %s, want %s", got, tc.want)
			}
		})
	}
}

// responsesFn is a function tool in the Responses shape.
func responsesFn(name, params string) map[string]any {
	return map[string]any{"type": "function", "name": name, "parameters": json.RawMessage(params)}
}

// TestResponsesClientToolsChecked checks the Responses API's function tools
// pass the checks of chat's client tools: a 400 naming the tool for a
// server-side tool's name or a runtime parameter, none for a profile that
// takes no client tools; and a model call carrying another tenant's canary,
// a runtime parameter or forbidden by policy is never returned as a
// function_call item, but refused and audited.
func TestResponsesClientToolsChecked(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := toolTenants(t, env, newFakeCRM(t))
	env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"profiles": map[string]any{
		"locked": map[string]any{"client_tools": false}}}, http.StatusOK)
	env.admin(t, "PUT", "/admin/v1/tenants/acme/policy", `forbid (principal, action, resource == Tool::"client/wire_money");`, http.StatusNoContent)
	canary := canaryOf(t, env, "globex")
	object := `{"type":"object","properties":{"x":{"type":"string"}}}`
	for _, tc := range []struct {
		name    string
		tools   []map[string]any
		model   string
		mention string
	}{
		{"shadows a server-side tool", []map[string]any{responsesFn("crm_lookup", object)}, "", "crm_lookup"},
		{"shadows a tool policy does not offer", []map[string]any{responsesFn("export_all", object)}, "", "export_all"},
		{"bound parameter", []map[string]any{responsesFn("note", `{"type":"object","properties":{"tenant_id":{"type":"string"}}}`)}, "", "tenant_id"},
		{"bound member", []map[string]any{{"type": "function", "name": "note", "parameters": json.RawMessage(object), "bound": map[string]string{"x": "tenant.id"}}}, "", "bound"},
		{"profile takes none", []map[string]any{responsesFn("note", object)}, "locked", "locked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"input": "hi", "user": "alice", "tools": tc.tools}
			if tc.model != "" {
				body["model"] = tc.model
			}
			r := env.do(t, "POST", "/v1/responses", acmeKey, body, nil)
			checkAPIError(t, r, http.StatusBadRequest, "invalid_request")
			if !strings.Contains(string(r.body), tc.mention) {
				t.Errorf("got %s, want the error to name %q", r.body, tc.mention)
			}
		})
	}

	tools := []map[string]any{
		responsesFn("note", `{"type":"object","properties":{"text":{"type":"string"}},"additionalProperties":true}`),
		responsesFn("wire_money", `{"type":"object","properties":{"amount":{"type":"number"}}}`),
	}
	checkRefusedCalls(t, env, acmeKey, canary, []refusedCall{
		{"another tenant's canary", `/call note {"text":"ref ` + canary + `"}`, "guard.block", ""},
		{"another tenant's canary escaped", `/call note {"text":"` + hostileEscapeAll(canary) + `"}`, "guard.block", ""},
		{"runtime parameter added", `/call note {"text":"x","tenant_id":"globex"}`, "tool.call", "model supplied a bound parameter"},
		{"forbidden function", `/call wire_money {"amount":5}`, "tool.call", "tenant/0"},
	}, func(t *testing.T, content string, stream bool) (string, bool) {
		r := env.do(t, "POST", "/v1/responses", acmeKey, map[string]any{"input": content, "user": "alice", "tools": tools, "stream": stream}, nil)
		return string(r.body), r.status == http.StatusOK && !strings.Contains(string(r.body), `"function_call"`) && strings.Contains(string(r.body), "call_1: error: ")
	})
	if len(auditOf(t, env, globexKey, "guard.foreign_leak")) == 0 {
		t.Errorf("globex's audit log does not tell of its canary caught leaving")
	}
}

// TestResponsesClientToolResultStaysInTenant checks a function tool's
// output sent by tenant A reaches A's conversation only: B can neither
// continue A's response that holds it nor reach it by replaying A's call
// id in its own input.
func TestResponsesClientToolResultStaysInTenant(t *testing.T) {
	env, acmeKey, globexKey := responsesTenants(t)
	const marker = "ACME-FUNCTION-OUTPUT-81c3"
	tools := []map[string]any{responsesFn("get_weather", `{"type":"object","properties":{"city":{"type":"string"}}}`)}
	call := env.respond(t, acmeKey, map[string]any{"input": `/call get_weather {"city":"Paris"}`, "user": "alice", "tools": tools})
	if len(call.Output) != 1 || call.Output[0].CallID == "" {
		t.Fatalf("output = %+v, want one function_call", call.Output)
	}
	callID := call.Output[0].CallID
	done := env.respond(t, acmeKey, map[string]any{"user": "alice", "tools": tools, "previous_response_id": call.ID,
		"input": []map[string]any{{"type": "function_call_output", "call_id": callID, "output": marker}}})
	if !strings.Contains(done.text(), marker) {
		t.Fatalf("acme's own answer %q lacks its function output", done.text())
	}
	for _, prev := range []string{call.ID, done.ID} {
		r := env.do(t, "POST", "/v1/responses", globexKey, map[string]any{"input": "/echo", "user": "alice", "previous_response_id": prev}, nil)
		checkAPIError(t, r, http.StatusNotFound, "")
		if strings.Contains(string(r.body), marker) {
			t.Fatalf("globex's refusal carries acme's function output: %s", r.body)
		}
	}
	g := env.respond(t, globexKey, map[string]any{"user": "alice", "tools": tools, "input": []map[string]any{
		{"type": "function_call", "call_id": callID, "name": "get_weather", "arguments": `{"city":"Paris"}`},
		{"type": "function_call_output", "call_id": callID, "output": "globex output"},
		{"role": "user", "content": "/echo"}}})
	if strings.Contains(g.text(), marker) {
		t.Fatalf("globex's context holds acme's function output: %s", g.text())
	}
}
