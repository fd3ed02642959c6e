package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// fakeUpstream is an OpenAI-compatible endpoint that records exactly what
// Bulkhead sent it and answers as its reply function says (by default a
// fixed answer, as JSON or as a stream).
type fakeUpstream struct {
	srv *httptest.Server

	mu     sync.Mutex
	bodies [][]byte
	// reply, if set, answers instead of the default.
	reply func(w http.ResponseWriter, r *http.Request, body map[string]any)
}

const (
	fakeModel       = "gpt-fake-2026-01-01"
	fakeFingerprint = "fp_fake123"
	fakeAnswer      = "fake answer"
)

func newFakeUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies = append(f.bodies, b)
		reply := f.reply
		f.mu.Unlock()
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if reply != nil {
			reply(w, r, body)
			return
		}
		fakeAnswerReply(w, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// fakeAnswerReply answers fakeAnswer, streamed if asked.
func fakeAnswerReply(w http.ResponseWriter, body map[string]any) {
	usage := map[string]int{"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
	if body["stream"] == true {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, chunk := range []map[string]any{
			{"model": fakeModel, "system_fingerprint": fakeFingerprint, "choices": []any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": "fake "}}}},
			{"model": fakeModel, "system_fingerprint": fakeFingerprint, "choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": "answer"}, "finish_reason": "stop"}}},
			{"model": fakeModel, "system_fingerprint": fakeFingerprint, "choices": []any{}, "usage": usage},
		} {
			b, _ := json.Marshal(chunk)
			fmt.Fprintf(w, "data: %s\n\n", b)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-up", "object": "chat.completion", "model": fakeModel, "system_fingerprint": fakeFingerprint,
		"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": fakeAnswer}, "finish_reason": "stop"}},
		"usage":   usage,
	})
}

func (f *fakeUpstream) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bodies)
}

// last returns the last request body received, decoded field by field.
func (f *fakeUpstream) last(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) == 0 {
		t.Fatal("the fake upstream received nothing")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(f.bodies[len(f.bodies)-1], &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// provider is a real OpenAI client for the fake upstream.
func (f *fakeUpstream) provider(t *testing.T, retries int) llm.Provider {
	t.Helper()
	p, err := llm.NewOpenAI(llm.OpenAIOptions{BaseURL: f.srv.URL + "/v1", MaxRetries: retries})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newFakeEnv is a server whose tenant "acme" (profile default) talks to a
// fake upstream through the real OpenAI client.
func newFakeEnv(t *testing.T, retries int) (*testEnv, *fakeUpstream, string) {
	t.Helper()
	up := newFakeUpstream(t)
	env := newTestEnv(t, envOptions{providers: map[string]llm.Provider{"fake": up.provider(t, retries)}})
	env.createTenant(t, map[string]any{"id": "acme", "model": "fake/gpt-test", "system_prompt": "be brief"})
	_, key := env.newKey(t, "acme")
	return env, up, key
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xs, _ := json.Marshal(x)
	ys, _ := json.Marshal(y)
	return bytes.Equal(xs, ys)
}

// TestFieldsForwarded sends each forwarded field and checks the provider
// received it unchanged, streamed and not.
func TestFieldsForwarded(t *testing.T) {
	env, up, key := newFakeEnv(t, 0)
	schema := map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "answer", "strict": true,
		"schema": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}},
			"required": []string{"city"}, "additionalProperties": false}}}
	tests := []struct {
		field string
		value any
	}{
		{"response_format", schema},
		{"response_format", map[string]any{"type": "json_object"}},
		{"seed", 424242},
		{"stop", "END"},
		{"stop", []string{"END", "STOP"}},
		{"top_p", 0.25},
		{"n", 1},
		{"frequency_penalty", 0.5},
		{"presence_penalty", -0.5},
		{"logit_bias", map[string]any{"50256": -100}},
		{"logprobs", false},
		{"max_completion_tokens", 77},
		{"max_tokens", 55},
		{"temperature", 0.7},
		{"metadata", map[string]any{"ticket": "T-1", "tenant": "globex"}},
		{"reasoning_effort", "low"},
		{"store", false},
	}
	for _, stream := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s stream=%v", tt.field, stream), func(t *testing.T) {
				// A fresh question each time: a seed makes the answer cacheable.
				r := env.chat(t, chatCall{key: key, content: t.Name(), stream: stream, extra: map[string]any{tt.field: tt.value}})
				if r.status != http.StatusOK {
					t.Fatalf("got %v, want 200", r)
				}
				got := up.last(t)
				want, _ := json.Marshal(tt.value)
				if !jsonEqual(got[tt.field], want) {
					t.Errorf("upstream got %s = %s, want %s", tt.field, got[tt.field], want)
				}
				if tt.field == "max_completion_tokens" {
					if v, ok := got["max_tokens"]; ok {
						t.Errorf("max_completion_tokens was also sent as max_tokens = %s", v)
					}
				}
			})
		}
	}

	// The end user goes upstream as an opaque per-tenant tag, never as is.
	env.chat(t, chatCall{key: key, user: "alice", content: "hi"})
	var user string
	if err := json.Unmarshal(up.last(t)["user"], &user); err != nil || user == "" || strings.Contains(user, "alice") {
		t.Errorf("upstream user = %q (%v), want an opaque tag", user, err)
	}
	// With no tool offered, tool_choice "none"/"auto" and parallel_tool_calls
	// mean nothing and are not sent (providers refuse them without tools).
	r := env.chat(t, chatCall{key: key, content: "hi", extra: map[string]any{"tool_choice": "none", "parallel_tool_calls": false}})
	if r.status != http.StatusOK {
		t.Fatalf("tool_choice none: got %v, want 200", r)
	}
	if got := up.last(t); got["tool_choice"] != nil || got["parallel_tool_calls"] != nil {
		t.Errorf("without tools, upstream got tool_choice %s parallel_tool_calls %s, want neither", got["tool_choice"], got["parallel_tool_calls"])
	}
}

// TestUnknownFieldsRefused checks that a field the server does not forward
// (or forwards only with some values) is refused with a 400 naming it, and
// that nothing reaches the provider. A "tenant" in the body is one of them:
// it can never select a tenant, and is not silently ignored either.
func TestUnknownFieldsRefused(t *testing.T) {
	env, up, key := newFakeEnv(t, 0)
	tests := []struct {
		field string
		value any
		name  string // in the message; field if empty
	}{
		{field: "tenant", value: "globex"},
		{field: "tenant_id", value: "globex"},
		{field: "frobnicate", value: true},
		{field: "functions", value: []any{map[string]any{"name": "f", "bound": map[string]any{}}}},
		{field: "function_call", value: "auto"},
		{field: "audio", value: map[string]any{"voice": "alloy"}},
		{field: "modalities", value: []string{"text"}},
		{field: "prediction", value: map[string]any{"type": "content", "content": "x"}},
		{field: "service_tier", value: "flex"},
		{field: "Seed", value: 1},
		{field: "n", value: 2},
		{field: "logprobs", value: true},
		{field: "top_logprobs", value: 3},
		{field: "store", value: true},
		{field: "tools", value: []any{map[string]any{"type": "function", "function": map[string]any{"name": "client_tool"}, "bound": map[string]any{}}}},
		{field: "tool_choice", value: map[string]any{"type": "function", "function": map[string]any{"name": "client_tool"}}},
		{field: "tool_choice", value: "required"},
		{field: "response_format", value: "json"},
		{field: "stop", value: 7},
		{field: "seed", value: "seven"},
		{field: "max_completion_tokens", value: -1},
	}
	for _, stream := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s %v stream=%v", tt.field, tt.value, stream), func(t *testing.T) {
				before := up.calls()
				r := env.chat(t, chatCall{key: key, content: "hi", stream: stream, extra: map[string]any{tt.field: tt.value}})
				checkAPIError(t, r, http.StatusBadRequest, "invalid_request")
				var e apiError
				if err := json.Unmarshal(r.body, &e); err != nil || !strings.Contains(e.Error.Message, tt.field) {
					t.Errorf("message %q does not name %s", e.Error.Message, tt.field)
				}
				if e.Error.Type != "invalid_request_error" {
					t.Errorf("type %q, want invalid_request_error", e.Error.Type)
				}
				if n := up.calls(); n != before {
					t.Errorf("the provider was called %d times for a refused request", n-before)
				}
			})
		}
	}
}

// TestResponseCarriesProvider checks the answer reports the profile as its
// model and the provider's model and system_fingerprint beside it.
func TestResponseCarriesProvider(t *testing.T) {
	env, _, key := newFakeEnv(t, 0)
	r := env.chat(t, chatCall{key: key, content: "hi"})
	if r.status != http.StatusOK {
		t.Fatalf("got %v", r)
	}
	var resp chatResponse
	if err := json.Unmarshal(r.body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Model != "default" || resp.UpstreamModel != fakeModel || resp.SystemFingerprint != fakeFingerprint {
		t.Errorf("model %q upstream_model %q system_fingerprint %q, want default, %s, %s", resp.Model, resp.UpstreamModel, resp.SystemFingerprint, fakeModel, fakeFingerprint)
	}
	if h := r.header.Get("X-Bulkhead-Upstream-Model"); h != fakeModel {
		t.Errorf("X-Bulkhead-Upstream-Model = %q, want %s", h, fakeModel)
	}

	r = env.chat(t, chatCall{key: key, content: "hi", stream: true, usage: true})
	s, err := parseSSE(r)
	if err != nil {
		t.Fatal(err)
	}
	if s.content != fakeAnswer {
		t.Errorf("streamed %q, want %q", s.content, fakeAnswer)
	}
	last := lastChunk(t, r)
	if last.Model != "default" || last.UpstreamModel != fakeModel || last.SystemFingerprint != fakeFingerprint {
		t.Errorf("last chunk model %q upstream_model %q system_fingerprint %q", last.Model, last.UpstreamModel, last.SystemFingerprint)
	}
}

// lastChunk decodes the last data event before [DONE].
func lastChunk(t *testing.T, r response) chatResponse {
	t.Helper()
	events := strings.Split(strings.TrimSuffix(string(r.body), "\n\ndata: [DONE]\n\n"), "\n\n")
	var c chatResponse
	data, _ := strings.CutPrefix(events[len(events)-1], "data: ")
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		t.Fatalf("last chunk %q: %v", data, err)
	}
	return c
}

// TestChatFieldNamesExact: a message member in another case is not the
// member (encoding/json would have let "ROLE" override "role").
func TestChatFieldNamesExact(t *testing.T) {
	body := `{"model":"default","messages":[{"role":"user","ROLE":"system","content":"hi","CONTENT":"other"}]}`
	r := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(body))
	req, err := decodeChat(httptest.NewRecorder(), r, 1<<20)
	if err != nil {
		t.Fatalf("decodeChat: %v", err)
	}
	if len(req.Messages) != 1 || req.Messages[0].Role != "user" || req.Messages[0].Content != "hi" {
		t.Fatalf("got %+v, want the message as its exact members say", req.Messages)
	}
}

// FuzzDecodeChat checks the chat body decoder against a reference reading of
// the same bytes: whatever a client sends, an accepted body is valid UTF-8,
// one JSON object with no member name twice in any object (compared after
// unescaping, as a reader downstream would see them), with only top-level
// fields of chatFields spelled exactly; and the model, user, stream flag and
// every message's role and content decoded are what a plain reading of the
// exact member names gives, so what is checked and stored is what was sent.
// A refused body is refused as invalid input (or too large), never as
// anything else.
func FuzzDecodeChat(f *testing.F) {
	for _, s := range []string{
		`{"model":"default","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"default","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"stream":true}`,
		`{"model":"a","model":"b","messages":[]}`, `{"model":"a","\u006dodel":"b"}`, `{"Model":"x"}`,
		`{"messages":[{"role":"user","ROLE":"system","content":"x"}]}`, `{"messages":[{"role":"user","content":null,"content":"y"}]}`,
		"{\"user\":\"\xff\"}", `{"user":"\ud800"}`, `{"tenant":"globex","messages":[{"role":"user","content":"x"}]}`,
		`{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r"}]}`,
		`{"stop":["a"],"seed":1,"response_format":{"type":"json_object"},"metadata":{"k":"v","k":"w"}}`, `{} {}`, `[]`, ` `,
	} {
		f.Add([]byte(s))
	}
	const limit = 4 << 10
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/v1/chat/completions", bytes.NewReader(body))
		req, err := decodeChat(httptest.NewRecorder(), r, limit)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if !errors.Is(err, kind.Invalid) && !errors.As(err, &tooLarge) {
				t.Fatalf("decodeChat(%q): error %v is neither invalid input nor too large", body, err)
			}
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("decodeChat accepted invalid UTF-8 %q", body)
		}
		if len(body) > limit {
			t.Fatalf("decodeChat accepted %d bytes over the limit %d", len(body), limit)
		}
		top, ok := referenceObject(t, body).(map[string]any)
		if !ok {
			t.Fatalf("decodeChat accepted %q, which is not one JSON object", body)
		}
		for name := range top {
			if !slices.Contains(chatFields, name) {
				t.Fatalf("decodeChat accepted the field %q in %q", name, body)
			}
		}
		str := func(v any) string { s, _ := v.(string); return s }
		if req.Model != str(top["model"]) || req.User != str(top["user"]) {
			t.Fatalf("%q decoded as model %q user %q", body, req.Model, req.User)
		}
		if b, _ := top["stream"].(bool); req.Stream != b {
			t.Fatalf("%q decoded as stream %v", body, req.Stream)
		}
		msgs, _ := top["messages"].([]any)
		if len(msgs) != len(req.Messages) {
			t.Fatalf("%q decoded as %d messages, want %d", body, len(req.Messages), len(msgs))
		}
		for i, m := range msgs {
			m, _ := m.(map[string]any)
			want := str(m["content"])
			if parts, ok := m["content"].([]any); ok {
				want = ""
				for _, p := range parts {
					p, _ := p.(map[string]any)
					want += str(p["text"])
				}
			}
			if got := req.Messages[i]; got.Role != str(m["role"]) || string(got.Content) != want {
				t.Fatalf("%q: messages[%d] decoded as %q %q, want %q %q", body, i, got.Role, got.Content, str(m["role"]), want)
			}
		}
	})
}

// referenceObject reads one JSON value with encoding/json's tokenizer and
// fails the test if any object in it has a member name twice.
func referenceObject(t *testing.T, body []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	var read func() any
	read = func() any {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("decodeChat accepted %q, which does not parse: %v", body, err)
		}
		switch tok {
		case json.Delim('{'):
			obj := map[string]any{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					t.Fatalf("decodeChat accepted %q: %v", body, err)
				}
				name := k.(string)
				if _, dup := obj[name]; dup {
					t.Fatalf("decodeChat accepted %q, which has the member %q twice", body, name)
				}
				obj[name] = read()
			}
			dec.Token()
			return obj
		case json.Delim('['):
			var arr []any
			for dec.More() {
				arr = append(arr, read())
			}
			dec.Token()
			return arr
		}
		return tok
	}
	v := read()
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("decodeChat accepted %q, which has more than one value", body)
	}
	return v
}
