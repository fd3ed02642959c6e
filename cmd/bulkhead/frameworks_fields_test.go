package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// recordingUpstream is a fake OpenAI-compatible provider that files every
// chat request it receives under its first user message, and answers a
// request offering tools (whose last message is the user's) with a call of
// the first tool, anything else with the JSON text {"city":"Paris","days":3}.
type recordingUpstream struct {
	mu  sync.Mutex
	got map[string][]map[string]any
}

func (u *recordingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	var body map[string]any
	if err == nil {
		err = json.Unmarshal(b, &body)
	}
	if err != nil {
		http.Error(w, "bad request body", http.StatusBadRequest)
		return
	}
	msgs, _ := body["messages"].([]any)
	u.mu.Lock()
	key := firstUserText(msgs)
	u.got[key] = append(u.got[key], body)
	u.mu.Unlock()

	var toolName string
	if tools, _ := body["tools"].([]any); len(tools) > 0 && len(msgs) > 0 && field(msgs[len(msgs)-1], "role") == "user" {
		toolName, _ = field(field(tools[0], "function"), "name").(string)
	}
	const answer, args = `{"city":"Paris","days":3}`, `{"city":"Paris"}`
	finish := "stop"
	if toolName != "" {
		finish = "tool_calls"
	}
	usage := `{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}`
	if body["stream"] == true {
		w.Header().Set("Content-Type", "text/event-stream")
		delta := fmt.Sprintf(`{"role":"assistant","content":%q}`, answer)
		if toolName != "" {
			delta = fmt.Sprintf(`{"role":"assistant","tool_calls":[{"index":0,"id":"call_up1","type":"function","function":{"name":%q,"arguments":%q}}]}`, toolName, args)
		}
		fmt.Fprintf(w, "data: {\"model\":\"gpt-fake-2\",\"choices\":[{\"index\":0,\"delta\":%s,\"finish_reason\":null}]}\n\n", delta)
		fmt.Fprintf(w, "data: {\"model\":\"gpt-fake-2\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":%q}]}\n\n", finish)
		fmt.Fprintf(w, "data: {\"model\":\"gpt-fake-2\",\"choices\":[],\"usage\":%s}\n\ndata: [DONE]\n\n", usage)
		return
	}
	msg := fmt.Sprintf(`{"role":"assistant","content":%q}`, answer)
	if toolName != "" {
		msg = fmt.Sprintf(`{"role":"assistant","content":null,"tool_calls":[{"id":"call_up1","type":"function","function":{"name":%q,"arguments":%q}}]}`, toolName, args)
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"model":"gpt-fake-2","choices":[{"index":0,"message":%s,"finish_reason":%q}],"usage":%s}`, msg, finish, usage)
}

// field is v[name] when v is a JSON object, else nil.
func field(v any, name string) any {
	m, _ := v.(map[string]any)
	return m[name]
}

// firstUserText is the text of the first user message (or Responses input
// item) of msgs: a string, or its text parts joined.
func firstUserText(msgs []any) string {
	for _, m := range msgs {
		if field(m, "role") != "user" {
			continue
		}
		switch c := field(m, "content").(type) {
		case string:
			return c
		case []any:
			var sb strings.Builder
			for _, p := range c {
				s, _ := field(p, "text").(string)
				sb.WriteString(s)
			}
			return sb.String()
		}
	}
	return ""
}

// conversation is msgs reduced to what the client said: its user and tool
// messages (role, content, tool_call_id) in order. Bulkhead adds its own
// system message, so that is not compared.
func conversation(msgs []any) []string {
	var out []string
	for _, m := range msgs {
		if role := field(m, "role"); role == "user" || role == "tool" {
			out = append(out, fmt.Sprintf("%s %v %v", role, field(m, "tool_call_id"), field(m, "content")))
		}
	}
	return out
}

// chatOnlyLocal are the chat request fields Bulkhead answers itself rather
// than forward as sent: the profile chooses the model, the stream is
// Bulkhead's own, the end user is pseudonymised, the messages gain the
// profile's system prompt (compared by conversation instead).
var chatOnlyLocal = []string{"model", "messages", "stream", "stream_options", "user"}

// fieldsCase is one framework call of test/frameworks/fields.mjs: its
// prompt, and the fields the framework must have sent (so that a framework
// that stops sending one cannot pass unnoticed).
type fieldsCase struct {
	prompt string
	want   []string
}

// TestFrameworksFields drives a live `bulkhead serve` whose tenant's model
// is a recording fake upstream with the Vercel AI SDK and LangChain.js, and
// checks that every request field the frameworks sent arrived upstream as
// sent: tools, tool_choice, parallel_tool_calls, response_format
// (json_schema), seed, stop, max_tokens, temperature, top_p, the penalties
// and logit_bias on chat completions, and on /v1/responses (the AI SDK's
// openai()) text.format, tools, tool_choice and max_output_tokens in their
// chat-completions form.
func TestFrameworksFields(t *testing.T) {
	t.Parallel()
	node := requireFrameworks(t)

	up := &recordingUpstream{got: map[string][]map[string]any{}}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bulkhead.yaml")
	yaml := fmt.Sprintf("providers:\n  - name: fake\n    type: openai\n    base_url: %s/v1\n    max_retries: 0\n", srv.URL)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	const admin = "bka_test_frameworks_fields_admin_1"
	base, _ := startServerWith(t, filepath.Join(dir, "data"), map[string]string{"BULKHEAD_ADMIN_TOKEN": admin}, "--config", cfg)
	key := createTenantKey(t, base, admin, map[string]any{"id": "acme", "model": "fake/gpt-test", "no_cache": true})

	var got struct {
		Sent []struct {
			Path string
			Body map[string]any
		}
		Results struct {
			AISDK struct {
				Chat, Stream, Responses struct {
					Steps int
					Text  string
				}
				Object, ResponsesObject trip
			}
			Agents    struct{ Output string }
			LangChain struct {
				Invoke, Stream string
				Structured     trip
				Tools          struct {
					Name, Answer string
					Args         map[string]string
				}
			}
		}
	}
	runNodeScript(t, node, frameworksDir, "fields.mjs", &got, "BASE_URL="+base+"/v1", "API_KEY="+key)

	sampling := []string{"temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "stop"}
	cases := []fieldsCase{
		{"fields: ai-sdk chat tools", append([]string{"tools", "tool_choice", "max_tokens", "parallel_tool_calls", "logit_bias"}, sampling...)},
		{"fields: ai-sdk chat stream", append([]string{"tools", "tool_choice", "max_tokens"}, sampling...)},
		{"fields: ai-sdk chat object", []string{"response_format", "seed", "max_completion_tokens", "metadata", "store"}},
		{"fields: ai-sdk responses tools", []string{"tools", "tool_choice", "temperature", "top_p", "max_output_tokens"}},
		{"fields: ai-sdk responses object", []string{"text"}},
		{"fields: langchain invoke", append([]string{"max_tokens", "logit_bias"}, sampling...)},
		{"fields: langchain tools", []string{"tools", "tool_choice", "parallel_tool_calls"}},
		{"fields: langchain structured", []string{"response_format"}},
		{"fields: langchain stream", sampling},
		{"fields: agents tools", []string{"instructions", "tools", "tool_choice", "temperature", "top_p", "max_output_tokens", "parallel_tool_calls"}},
	}

	up.mu.Lock()
	defer up.mu.Unlock()
	seen := map[string]int{} // requests per prompt so far
	checked := map[string]bool{}
	for i, s := range got.Sent {
		var prompt string
		switch s.Path {
		case "/v1/chat/completions":
			msgs, _ := s.Body["messages"].([]any)
			prompt = firstUserText(msgs)
		case "/v1/responses":
			input, _ := s.Body["input"].([]any)
			prompt = firstUserText(input)
		default:
			t.Errorf("sent[%d]: request to %s, want chat completions or responses", i, s.Path)
			continue
		}
		n := seen[prompt]
		seen[prompt]++
		if n >= len(up.got[prompt]) {
			t.Errorf("%q request %d: the upstream got %d requests for it", prompt, n+1, len(up.got[prompt]))
			continue
		}
		upBody := up.got[prompt][n]
		if n == 0 {
			checked[prompt] = true
			if i := slices.IndexFunc(cases, func(c fieldsCase) bool { return c.prompt == prompt }); i < 0 {
				t.Errorf("%q: not a known case", prompt)
			} else {
				for _, f := range cases[i].want {
					if _, ok := s.Body[f]; !ok {
						t.Errorf("%q: the framework did not send %s (sent %v)", prompt, f, keys(s.Body))
					}
				}
			}
		}
		if s.Path == "/v1/responses" {
			checkResponsesForwarded(t, prompt, s.Body, upBody)
			continue
		}
		for f, v := range s.Body {
			if slices.Contains(chatOnlyLocal, f) {
				continue
			}
			if !reflect.DeepEqual(upBody[f], v) {
				t.Errorf("%q request %d: %s: sent %s, the upstream got %s", prompt, n+1, f, jsonText(v), jsonText(upBody[f]))
			}
		}
		sentMsgs, _ := s.Body["messages"].([]any)
		upMsgs, _ := upBody["messages"].([]any)
		if a, b := conversation(sentMsgs), conversation(upMsgs); !slices.Equal(a, b) {
			t.Errorf("%q request %d: the upstream got the conversation %q, want %q", prompt, n+1, b, a)
		}
		if upBody["model"] != "gpt-test" {
			t.Errorf("%q request %d: upstream model %v, want the profile's gpt-test", prompt, n+1, upBody["model"])
		}
	}
	for _, c := range cases {
		if !checked[c.prompt] {
			t.Errorf("%q: the framework sent no request", c.prompt)
		}
		if len(up.got[c.prompt]) != seen[c.prompt] {
			t.Errorf("%q: the upstream got %d requests, the framework sent %d (one upstream call per request)", c.prompt, len(up.got[c.prompt]), seen[c.prompt])
		}
	}

	r := got.Results
	const toolAnswer = "Tool results" // never: the fake upstream, not the scripted model, answers
	runChecks(t, []check{
		{"ai-sdk chat: two steps (tool call, then answer)", r.AISDK.Chat.Steps, 2},
		{"ai-sdk chat: answer", r.AISDK.Chat.Text, `{"city":"Paris","days":3}`},
		{"ai-sdk stream: two steps", r.AISDK.Stream.Steps, 2},
		{"ai-sdk stream: answer", r.AISDK.Stream.Text, `{"city":"Paris","days":3}`},
		{"ai-sdk responses: two steps", r.AISDK.Responses.Steps, 2},
		{"ai-sdk responses: answer", r.AISDK.Responses.Text, `{"city":"Paris","days":3}`},
		{"ai-sdk generateObject", r.AISDK.Object, trip{"Paris", 3}},
		{"ai-sdk responses generateObject", r.AISDK.ResponsesObject, trip{"Paris", 3}},
		{"langchain invoke", r.LangChain.Invoke, `{"city":"Paris","days":3}`},
		{"langchain stream", r.LangChain.Stream, `{"city":"Paris","days":3}`},
		{"langchain withStructuredOutput", r.LangChain.Structured, trip{"Paris", 3}},
		{"langchain bindTools call", r.LangChain.Tools.Name == "get_weather" && r.LangChain.Tools.Args["city"] == "Paris", true},
		{"langchain tool follow-up answered by the upstream", strings.Contains(r.LangChain.Tools.Answer, toolAnswer), false},
		{"agents: answer after the tool", r.Agents.Output, `{"city":"Paris","days":3}`},
	})
}

// checkResponsesForwarded checks that a /v1/responses request's fields
// reached the chat-completions upstream in their chat form.
func checkResponsesForwarded(t *testing.T, prompt string, sent, up map[string]any) {
	t.Helper()
	same := func(what string, a, b any) {
		t.Helper()
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%q: %s: sent %s, the upstream got %s", prompt, what, jsonText(a), jsonText(b))
		}
	}
	for _, f := range []string{"temperature", "top_p", "parallel_tool_calls"} {
		same(f, sent[f], up[f])
	}
	same("max_output_tokens as max_completion_tokens", sent["max_output_tokens"], up["max_completion_tokens"])
	if f := field(sent["text"], "format"); f != nil {
		want := map[string]any{"type": field(f, "type")}
		if field(f, "type") == "json_schema" {
			js := map[string]any{"name": field(f, "name"), "schema": field(f, "schema")}
			for _, k := range []string{"strict", "description"} {
				if v, ok := f.(map[string]any)[k]; ok {
					js[k] = v
				}
			}
			want["json_schema"] = js
		}
		same("text.format as response_format", want, up["response_format"])
	}
	upMsgs, _ := up["messages"].([]any)
	if in, ok := sent["instructions"].(string); ok {
		found := slices.ContainsFunc(upMsgs, func(m any) bool {
			c, _ := field(m, "content").(string)
			return field(m, "role") == "system" && strings.Contains(c, in)
		})
		if !found {
			t.Errorf("%q: instructions %q: no system message upstream carries them", prompt, in)
		}
	}
	// The client's side of the conversation: user items and function call
	// outputs, which reach the provider as user and tool messages.
	var said []string
	input, _ := sent["input"].([]any)
	for _, it := range input {
		switch {
		case field(it, "role") == "user":
			said = append(said, fmt.Sprintf("user <nil> %s", firstUserText([]any{it})))
		case field(it, "type") == "function_call_output":
			said = append(said, fmt.Sprintf("tool %v %v", field(it, "call_id"), field(it, "output")))
		}
	}
	if got := conversation(upMsgs); !slices.Equal(got, said) {
		t.Errorf("%q: the upstream got the conversation %q, want %q", prompt, got, said)
	}
	sentTools, _ := sent["tools"].([]any)
	upTools, _ := up["tools"].([]any)
	if len(sentTools) != len(upTools) {
		t.Errorf("%q: sent %d tools, the upstream got %d", prompt, len(sentTools), len(upTools))
	}
	for i := range min(len(sentTools), len(upTools)) {
		for _, k := range []string{"name", "description", "parameters"} {
			same(fmt.Sprintf("tools[%d].%s", i, k), field(sentTools[i], k), field(field(upTools[i], "function"), k))
		}
	}
	switch tc := sent["tool_choice"].(type) {
	case string:
		same("tool_choice", tc, up["tool_choice"])
	case map[string]any:
		same("tool_choice", map[string]any{"type": "function", "function": map[string]any{"name": tc["name"]}}, up["tool_choice"])
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
