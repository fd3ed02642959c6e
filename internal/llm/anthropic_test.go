package llm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/secret"
)

// fakeAnthropic is a Messages API endpoint that records what it received and
// answers with its reply function.
type fakeAnthropic struct {
	srv *httptest.Server

	mu      sync.Mutex
	bodies  []map[string]any
	headers []http.Header
	paths   []string
	reply   func(w http.ResponseWriter, body map[string]any)
}

func newFakeAnthropic(t *testing.T, reply func(w http.ResponseWriter, body map[string]any)) *fakeAnthropic {
	t.Helper()
	f := &fakeAnthropic{reply: reply}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.bodies, f.headers, f.paths = append(f.bodies, body), append(f.headers, r.Header.Clone()), append(f.paths, r.URL.Path)
		f.mu.Unlock()
		f.reply(w, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAnthropic) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bodies)
}

func (f *fakeAnthropic) last(t *testing.T) (map[string]any, http.Header) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) == 0 {
		t.Fatal("the fake upstream received nothing")
	}
	return f.bodies[len(f.bodies)-1], f.headers[len(f.headers)-1]
}

func newTestAnthropic(t *testing.T, f *fakeAnthropic, opts AnthropicOptions) *Anthropic {
	t.Helper()
	opts.BaseURL = f.srv.URL
	c, err := NewAnthropic(opts)
	if err != nil {
		t.Fatalf("NewAnthropic: %v", err)
	}
	c.base = time.Millisecond
	return c
}

// antJSON answers a fixed message with the given content blocks.
func antJSON(stop string, content ...map[string]any) func(http.ResponseWriter, map[string]any) {
	return func(w http.ResponseWriter, _ map[string]any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": "msg_1", "type": "message", "role": "assistant",
			"model": "claude-test-1", "content": content, "stop_reason": stop,
			"usage": map[string]int{"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 1}})
	}
}

// antSSE streams events as the Messages API does.
func antSSE(events ...map[string]any) func(http.ResponseWriter, map[string]any) {
	return func(w http.ResponseWriter, _ map[string]any) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range events {
			b, _ := json.Marshal(ev)
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev["type"], b)
		}
	}
}

func TestNewAnthropic(t *testing.T) {
	c, err := NewAnthropic(AnthropicOptions{})
	if err != nil || c.endpoint != "https://api.anthropic.com/v1/messages" || c.maxTokens != 4096 {
		t.Fatalf("default: %v, %v", c, err)
	}
	for _, o := range []AnthropicOptions{{BaseURL: "ftp://x"}, {Timeout: -1}, {MaxTokens: -1}, {BaseURL: "http://u:p@h"}} {
		if _, err := NewAnthropic(o); err == nil {
			t.Errorf("NewAnthropic(%+v): no error", o)
		}
	}
}

// TestAnthropicRequest checks what the Messages API receives: headers, the
// system prompt as a cached block, tools as input_schema, a tool round trip
// as tool_use and tool_result blocks, and the options it can take.
func TestAnthropicRequest(t *testing.T) {
	f := newFakeAnthropic(t, antJSON("end_turn", map[string]any{"type": "text", "text": "ok"}))
	c := newTestAnthropic(t, f, AnthropicOptions{APIKey: testKey})
	schema := json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}}}`)
	req := Request{
		Model: "claude-test",
		Messages: []Message{
			{Role: "system", Content: "You are acme's assistant. (Internal reference CANARY-A.)"},
			{Role: "user", Content: "weather?"},
			{Role: "assistant", Content: "Looking.", ToolCalls: []ToolCall{
				{ID: "toolu_1", Type: "function", Function: FunctionCall{Name: "weather", Arguments: `{"city":"Oslo"}`}},
				{ID: "toolu_2", Type: "function", Function: FunctionCall{Name: "weather", Arguments: ``}},
			}},
			{Role: "tool", ToolCallID: "toolu_1", Content: "rain"},
			{Role: "tool", ToolCallID: "toolu_2", Content: "sun"},
			{Role: "system", Content: "client note"},
		},
		Tools:       []Tool{{Type: "function", Function: FunctionDef{Name: "weather", Description: "Weather", Parameters: schema}}, {Type: "function", Function: FunctionDef{Name: "now"}}},
		Temperature: ptr(0.5),
		User:        "opaque-user",
		Options: Options{Stop: json.RawMessage(`"END"`), TopP: ptr(0.9), MaxCompletionTokens: ptr(77), N: ptr(1),
			ToolChoice: json.RawMessage(`"required"`), ParallelToolCalls: ptr(false), Logprobs: ptr(false), Store: ptr(false)},
		PromptCacheKey: "tenant-derived",
	}
	resp, err := c.Chat(t.Context(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Message.Content != "ok" || resp.FinishReason != "stop" || resp.Model != "claude-test-1" {
		t.Errorf("response %+v", resp)
	}
	body, h := f.last(t)
	if f.paths[0] != "/v1/messages" || h.Get("x-api-key") != testKey || h.Get("anthropic-version") != "2023-06-01" || h.Get("Authorization") != "" {
		t.Errorf("path %s, headers %v", f.paths[0], h)
	}
	want := map[string]any{
		"model": "claude-test",
		"system": []any{
			map[string]any{"type": "text", "text": "You are acme's assistant. (Internal reference CANARY-A.)", "cache_control": map[string]any{"type": "ephemeral"}},
			map[string]any{"type": "text", "text": "client note"},
		},
		"messages": []any{
			map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "weather?"}}},
			map[string]any{"role": "assistant", "content": []any{
				map[string]any{"type": "text", "text": "Looking."},
				map[string]any{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": map[string]any{"city": "Oslo"}},
				map[string]any{"type": "tool_use", "id": "toolu_2", "name": "weather", "input": map[string]any{}},
			}},
			map[string]any{"role": "user", "content": []any{
				map[string]any{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"},
				map[string]any{"type": "tool_result", "tool_use_id": "toolu_2", "content": "sun"},
			}},
		},
		"tools": []any{
			map[string]any{"name": "weather", "description": "Weather", "input_schema": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}},
			map[string]any{"name": "now", "input_schema": map[string]any{"type": "object", "properties": map[string]any{}}},
		},
		"tool_choice":    map[string]any{"type": "any", "disable_parallel_tool_use": true},
		"max_tokens":     float64(77),
		"temperature":    0.5,
		"top_p":          0.9,
		"stop_sequences": []any{"END"},
		"metadata":       map[string]any{"user_id": "opaque-user"},
	}
	if !reflect.DeepEqual(body, want) {
		got, _ := json.MarshalIndent(body, "", " ")
		t.Errorf("upstream received\n%s", got)
	}
}

func TestAnthropicToolChoice(t *testing.T) {
	f := newFakeAnthropic(t, antJSON("end_turn"))
	c := newTestAnthropic(t, f, AnthropicOptions{})
	tests := []struct {
		choice   string
		parallel *bool
		want     any
	}{
		{choice: `"auto"`, want: map[string]any{"type": "auto"}},
		{choice: `"none"`, want: map[string]any{"type": "none"}},
		{choice: `{"type":"function","function":{"name":"weather"}}`, want: map[string]any{"type": "tool", "name": "weather"}},
		{parallel: ptr(false), want: map[string]any{"type": "auto", "disable_parallel_tool_use": true}},
		{parallel: ptr(true), want: nil},
		{want: nil},
	}
	for _, tt := range tests {
		o := Options{ParallelToolCalls: tt.parallel}
		if tt.choice != "" {
			o.ToolChoice = json.RawMessage(tt.choice)
		}
		if _, err := c.Chat(t.Context(), Request{Model: "m", Messages: []Message{{Role: "user", Content: "hi"}}, Options: o}, nil); err != nil {
			t.Fatal(err)
		}
		body, _ := f.last(t)
		if got := body["tool_choice"]; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("tool_choice %s parallel %v: sent %v, want %v", tt.choice, tt.parallel, got, tt.want)
		}
		if body["max_tokens"] != float64(4096) {
			t.Errorf("max_tokens = %v, want the default 4096", body["max_tokens"])
		}
	}
}

// TestAnthropicRefusesOptions checks each option the Messages API cannot
// honour is refused by name before any upstream call, never dropped.
func TestAnthropicRefusesOptions(t *testing.T) {
	f := newFakeAnthropic(t, antJSON("end_turn"))
	c := newTestAnthropic(t, f, AnthropicOptions{})
	tests := []struct {
		field string
		opts  Options
	}{
		{"logprobs", Options{Logprobs: ptr(true)}},
		{"n", Options{N: ptr(2)}},
		{"logit_bias", Options{LogitBias: json.RawMessage(`{"50256":-100}`)}},
		{"response_format", Options{ResponseFormat: json.RawMessage(`{"type":"json_schema","json_schema":{"name":"x","schema":{}}}`)}},
		{"response_format", Options{ResponseFormat: json.RawMessage(`{"type":"json_object"}`)}},
		{"seed", Options{Seed: ptr(int64(1))}},
		{"frequency_penalty", Options{FrequencyPenalty: ptr(0.5)}},
		{"presence_penalty", Options{PresencePenalty: ptr(-0.5)}},
		{"metadata", Options{Metadata: json.RawMessage(`{"a":"b"}`)}},
		{"reasoning_effort", Options{ReasoningEffort: "low"}},
		{"store", Options{Store: ptr(true)}},
		{"stop", Options{Stop: json.RawMessage(`[1]`)}},
		{"tool_choice", Options{ToolChoice: json.RawMessage(`"sometimes"`)}},
		{"parallel_tool_calls", Options{ToolChoice: json.RawMessage(`"none"`), ParallelToolCalls: ptr(false)}},
	}
	for _, tt := range tests {
		_, err := c.Chat(t.Context(), Request{Model: "m", Messages: []Message{{Role: "user", Content: "hi"}}, Options: tt.opts}, nil)
		var ue *UnsupportedError
		if !errors.As(err, &ue) || ue.Field != tt.field || !strings.HasPrefix(err.Error(), tt.field+":") {
			t.Errorf("%s: err = %v, want an UnsupportedError naming it", tt.field, err)
		}
	}
	if n := f.calls(); n != 0 {
		t.Errorf("%d upstream calls, want none", n)
	}
}

func TestAnthropicResponse(t *testing.T) {
	tests := []struct {
		stop, want string
	}{
		{"end_turn", "stop"}, {"max_tokens", "length"}, {"tool_use", "tool_calls"}, {"stop_sequence", "stop"}, {"refusal", "content_filter"},
	}
	for _, tt := range tests {
		f := newFakeAnthropic(t, antJSON(tt.stop,
			map[string]any{"type": "text", "text": "Let me check. "},
			map[string]any{"type": "tool_use", "id": "toolu_9", "name": "weather", "input": map[string]any{"city": "Oslo"}},
			map[string]any{"type": "text", "text": "Done."}))
		c := newTestAnthropic(t, f, AnthropicOptions{})
		var streamed []string
		resp, err := c.Chat(t.Context(), Request{Model: "m"}, func(s string) error { streamed = append(streamed, s); return nil })
		if err != nil {
			t.Fatal(err)
		}
		wantCalls := []ToolCall{{ID: "toolu_9", Type: "function", Function: FunctionCall{Name: "weather", Arguments: `{"city":"Oslo"}`}}}
		if resp.FinishReason != tt.want || resp.Message.Content != "Let me check. Done." || !reflect.DeepEqual(resp.Message.ToolCalls, wantCalls) {
			t.Errorf("stop %s: %+v", tt.stop, resp)
		}
		if resp.Usage != (Usage{PromptTokens: 111, CompletionTokens: 5, TotalTokens: 116, PromptTokensDetails: PromptTokensDetails{CachedTokens: 100}}) {
			t.Errorf("usage %+v", resp.Usage)
		}
		if !reflect.DeepEqual(streamed, []string{"Let me check. Done."}) {
			t.Errorf("JSON answer to a stream: deltas %q", streamed)
		}
	}
}

// TestAnthropicStream checks streamed text and a streamed tool call built
// from input_json_delta pieces, with the stop reason and usage.
func TestAnthropicStream(t *testing.T) {
	f := newFakeAnthropic(t, antSSE(
		map[string]any{"type": "message_start", "message": map[string]any{"model": "claude-test-2", "usage": map[string]int{"input_tokens": 20, "output_tokens": 1, "cache_read_input_tokens": 5}}},
		map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}},
		map[string]any{"type": "ping"},
		map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": "Hel"}},
		map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": "lo"}},
		map[string]any{"type": "content_block_stop", "index": 0},
		map[string]any{"type": "content_block_start", "index": 1, "content_block": map[string]any{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": map[string]any{}}},
		map[string]any{"type": "content_block_delta", "index": 1, "delta": map[string]any{"type": "input_json_delta", "partial_json": `{"ci`}},
		map[string]any{"type": "content_block_delta", "index": 1, "delta": map[string]any{"type": "input_json_delta", "partial_json": `ty":"Oslo"}`}},
		map[string]any{"type": "content_block_stop", "index": 1},
		map[string]any{"type": "content_block_start", "index": 2, "content_block": map[string]any{"type": "tool_use", "id": "toolu_2", "name": "now", "input": map[string]any{}}},
		map[string]any{"type": "content_block_stop", "index": 2},
		map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": "tool_use"}, "usage": map[string]int{"output_tokens": 30}},
		map[string]any{"type": "message_stop"},
	))
	c := newTestAnthropic(t, f, AnthropicOptions{})
	started := 0
	var pieces []string
	resp, err := c.Chat(t.Context(), Request{Model: "m", Started: func() { started++ }}, func(s string) error { pieces = append(pieces, s); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if body, h := f.last(t); body["stream"] != true || h.Get("Accept") != "text/event-stream" {
		t.Errorf("stream not asked for: %v %v", body["stream"], h)
	}
	want := Response{
		Message: Message{Role: "assistant", Content: "Hello", ToolCalls: []ToolCall{
			{ID: "toolu_1", Type: "function", Function: FunctionCall{Name: "weather", Arguments: `{"city":"Oslo"}`}},
			{ID: "toolu_2", Type: "function", Function: FunctionCall{Name: "now", Arguments: `{}`}},
		}},
		FinishReason: "tool_calls", Model: "claude-test-2",
		Usage: Usage{PromptTokens: 25, CompletionTokens: 30, TotalTokens: 55, PromptTokensDetails: PromptTokensDetails{CachedTokens: 5}},
	}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("got %+v\nwant %+v", resp, want)
	}
	if !reflect.DeepEqual(pieces, []string{"Hel", "lo"}) || started != 1 {
		t.Errorf("deltas %q, started %d", pieces, started)
	}
}

func TestAnthropicStreamFailures(t *testing.T) {
	start := map[string]any{"type": "message_start", "message": map[string]any{"model": "m", "usage": map[string]int{}}}
	tests := []struct {
		name   string
		events []map[string]any
		want   string
	}{
		{"cut short", []map[string]any{start, {"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": "Hi"}}}, "unexpected EOF"},
		{"error event", []map[string]any{start, {"type": "error", "error": map[string]any{"type": "overloaded_error", "message": "Overloaded " + testKey}}}, "Overloaded [REDACTED"},
		{"orphan input", []map[string]any{start, {"type": "content_block_delta", "index": 3, "delta": map[string]any{"type": "input_json_delta", "partial_json": "{}"}}}, "no tool call"},
	}
	for _, tt := range tests {
		f := newFakeAnthropic(t, antSSE(tt.events...))
		c := newTestAnthropic(t, f, AnthropicOptions{APIKey: testKey})
		_, err := c.Chat(t.Context(), Request{Model: "m"}, func(string) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), testKey) {
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// TestAnthropicErrors checks upstream failures: a 429 comes back at once
// with its Retry-After; 529 and 5xx are retried, unless NoRetry; the key is
// never in the message.
func TestAnthropicErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		noRetry   bool
		wantCalls int
	}{
		{"429", 429, false, 1},
		{"529 retried", 529, false, 3},
		{"503 retried", 503, false, 3},
		{"503 no retry", 503, true, 1},
		{"400", 400, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAnthropic(t, func(w http.ResponseWriter, _ map[string]any) {
				w.Header().Set("Retry-After", "0")
				if tt.status == 429 {
					w.Header().Set("Retry-After", "17")
				}
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, `{"type":"error","error":{"type":"x_error","message":"nope %s"}}`, testKey)
			})
			c := newTestAnthropic(t, f, AnthropicOptions{APIKey: testKey})
			_, err := c.Chat(t.Context(), Request{Model: "m", NoRetry: tt.noRetry}, nil)
			var se *StatusError
			if !errors.As(err, &se) || se.StatusCode != tt.status || !strings.HasPrefix(se.Message, "nope ") || strings.Contains(se.Message, testKey) {
				t.Fatalf("err = %#v", err)
			}
			if tt.status == 429 && (!se.HasRetryAfter || se.RetryAfter != 17*time.Second) {
				t.Errorf("Retry-After %v %v, want 17s", se.RetryAfter, se.HasRetryAfter)
			}
			if n := f.calls(); n != tt.wantCalls {
				t.Errorf("%d upstream calls, want %d", n, tt.wantCalls)
			}
		})
	}
}

// TestAnthropicBYOK checks a request's own key replaces the configured one
// for that request only.
func TestAnthropicBYOK(t *testing.T) {
	f := newFakeAnthropic(t, antJSON("end_turn"))
	c := newTestAnthropic(t, f, AnthropicOptions{APIKey: "configured-key"})
	if _, err := c.Chat(t.Context(), Request{Model: "m", APIKey: secret.New("tenant-own-key")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, h := f.last(t); h.Get("x-api-key") != "tenant-own-key" {
		t.Errorf("x-api-key %q, want the tenant's", h.Get("x-api-key"))
	}
	if _, err := c.Chat(t.Context(), Request{Model: "m"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, h := f.last(t); h.Get("x-api-key") != "configured-key" {
		t.Errorf("x-api-key %q, want the configured one", h.Get("x-api-key"))
	}
}
