package llm

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/secret"
)

const testKey = "sk-test-SECRET-1234567890"

// newTestOpenAI returns a client for srv with tiny backoff waits.
func newTestOpenAI(t testing.TB, baseURL string, opts OpenAIOptions) *OpenAI {
	t.Helper()
	opts.BaseURL = baseURL
	c, err := NewOpenAI(opts)
	if err != nil {
		t.Fatalf("NewOpenAI: %v", err)
	}
	c.base = time.Millisecond
	return c
}

func ptr[T any](v T) *T { return &v }

func TestNewOpenAI(t *testing.T) {
	tests := []struct {
		name    string
		opts    OpenAIOptions
		wantErr bool
		wantEP  string
	}{
		{name: "http", opts: OpenAIOptions{BaseURL: "http://127.0.0.1:9000/v1"}, wantEP: "http://127.0.0.1:9000/v1/chat/completions"},
		{name: "https trailing slash", opts: OpenAIOptions{BaseURL: "https://api.example.com/v1/"}, wantEP: "https://api.example.com/v1/chat/completions"},
		{name: "empty", opts: OpenAIOptions{}, wantErr: true},
		{name: "no scheme", opts: OpenAIOptions{BaseURL: "127.0.0.1:9000/v1"}, wantErr: true},
		{name: "ftp", opts: OpenAIOptions{BaseURL: "ftp://example.com"}, wantErr: true},
		{name: "no host", opts: OpenAIOptions{BaseURL: "http:///v1"}, wantErr: true},
		{name: "user info", opts: OpenAIOptions{BaseURL: "http://u:" + testKey + "@example.com/v1"}, wantErr: true},
		{name: "query", opts: OpenAIOptions{BaseURL: "http://example.com/v1?key=x"}, wantErr: true},
		{name: "negative timeout", opts: OpenAIOptions{BaseURL: "http://example.com", Timeout: -1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewOpenAI(tt.opts)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("NewOpenAI(%q) = nil error, want error", tt.opts.BaseURL)
				}
				if strings.Contains(err.Error(), testKey) {
					t.Errorf("error %q contains the API key", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewOpenAI: %v", err)
			}
			if c.endpoint != tt.wantEP {
				t.Errorf("endpoint = %q, want %q", c.endpoint, tt.wantEP)
			}
		})
	}
}

func TestNewOpenAIDefaults(t *testing.T) {
	tests := []struct {
		retries, wantRetries int
	}{{0, 2}, {-1, 0}, {5, 5}}
	for _, tt := range tests {
		c, err := NewOpenAI(OpenAIOptions{BaseURL: "http://x", MaxRetries: tt.retries})
		if err != nil {
			t.Fatal(err)
		}
		if c.maxRetries != tt.wantRetries || c.timeout != 120*time.Second {
			t.Errorf("MaxRetries %d: got retries %d timeout %s, want %d 2m0s", tt.retries, c.maxRetries, c.timeout, tt.wantRetries)
		}
	}
}

func TestOpenAIChatNonStream(t *testing.T) {
	weather := Tool{Type: "function", Function: FunctionDef{
		Name: "weather", Description: "Look up weather",
		Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}}}`),
	}}
	tests := []struct {
		name     string
		req      Request
		apiKey   string
		reply    string
		wantBody map[string]any // subset of the request body
		absent   []string       // keys that must not be in the request body
		want     Response
	}{
		{
			name: "content with tools and user",
			req: Request{
				Model: "gpt-test", User: "u-123", MaxTokens: 50, Temperature: ptr(0.25),
				Messages: []Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}},
				Tools:    []Tool{weather},
			},
			apiKey: testKey,
			reply:  `{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}`,
			wantBody: map[string]any{
				"model": "gpt-test", "user": "u-123", "stream": false, "max_tokens": 50.0, "temperature": 0.25,
			},
			absent: []string{"stream_options"},
			want: Response{
				Message:      Message{Role: "assistant", Content: "hello"},
				FinishReason: "stop",
				Usage:        Usage{PromptTokens: 7, CompletionTokens: 2, TotalTokens: 9},
			},
		},
		{
			name: "null content with tool calls, no tools or user sent",
			req: Request{Model: "m", Messages: []Message{
				{Role: "user", Content: "weather?"},
				{Role: "assistant", ToolCalls: []ToolCall{{ID: "a", Type: "function", Function: FunctionCall{Name: "weather", Arguments: "{}"}}}},
				{Role: "tool", ToolCallID: "a", Content: "sunny"},
			}},
			reply:  `{"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_9","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}},{"function":{"name":"time","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`,
			absent: []string{"user", "tools", "max_tokens", "temperature", "stream_options"},
			want: Response{
				Message: Message{Role: "assistant", ToolCalls: []ToolCall{
					{ID: "call_9", Type: "function", Function: FunctionCall{Name: "weather", Arguments: `{"city":"Oslo"}`}},
					{ID: "call_2", Type: "function", Function: FunctionCall{Name: "time", Arguments: "{}"}},
				}},
				FinishReason: "tool_calls",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotBody map[string]any
			var gotRaw []byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
					t.Errorf("request %s %s, want POST /v1/chat/completions", r.Method, r.URL.Path)
				}
				wantAuth := ""
				if tt.apiKey != "" {
					wantAuth = "Bearer " + tt.apiKey
				}
				if got := r.Header.Get("Authorization"); got != wantAuth {
					t.Errorf("Authorization = %q, want %q", got, wantAuth)
				}
				if got := r.Header.Get("Content-Type"); got != "application/json" {
					t.Errorf("Content-Type = %q", got)
				}
				gotRaw, _ = io.ReadAll(r.Body)
				if err := json.Unmarshal(gotRaw, &gotBody); err != nil {
					t.Errorf("request body: %v", err)
				}
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, tt.reply)
			}))
			defer srv.Close()

			c := newTestOpenAI(t, srv.URL+"/v1", OpenAIOptions{APIKey: tt.apiKey})
			got, err := c.Chat(context.Background(), tt.req, nil)
			if err != nil {
				t.Fatalf("Chat: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Chat() =\n%+v\nwant\n%+v", got, tt.want)
			}
			for k, v := range tt.wantBody {
				if !reflect.DeepEqual(gotBody[k], v) {
					t.Errorf("body[%q] = %#v, want %#v", k, gotBody[k], v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := gotBody[k]; ok {
					t.Errorf("body has %q, want absent: %s", k, gotRaw)
				}
			}
			// Messages and tools round-trip in OpenAI's shape.
			var wire struct {
				Messages []Message `json:"messages"`
				Tools    []Tool    `json:"tools"`
			}
			if err := json.Unmarshal(gotRaw, &wire); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(wire.Messages, tt.req.Messages) {
				t.Errorf("messages sent = %+v, want %+v", wire.Messages, tt.req.Messages)
			}
			if len(tt.req.Tools) > 0 {
				if len(wire.Tools) != 1 || wire.Tools[0].Function.Name != "weather" || wire.Tools[0].Type != "function" {
					t.Errorf("tools sent = %+v", wire.Tools)
				}
				if !json.Valid(wire.Tools[0].Function.Parameters) || !bytes.Contains(wire.Tools[0].Function.Parameters, []byte(`"city"`)) {
					t.Errorf("tool parameters sent = %s", wire.Tools[0].Function.Parameters)
				}
			}
		})
	}
}

// sse formats data lines as server-sent events.
func sse(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\n")
	}
	return b.String()
}

func TestOpenAIChatStream(t *testing.T) {
	body := sse(
		": keep-alive comment",
		"",
		`data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`,
		"",
		"event: message",
		"id: 1",
		`data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}`,
		"",
		`data:{"choices":[{"index":0,"delta":{"content":"lo "}}]}`,
		"",
		`data: {"choices":[{"index":0,"delta":{"content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"weather","arguments":""}}]}}]}`,
		`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]}}]}`,
		`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"time","arguments":"{\"tz\":"}}]}}]}`,
		`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Oslo\"}"}}]}}]}`,
		`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"ignored","function":{"name":"ignored","arguments":"\"UTC\"}"}}]}}]}`,
		`data: {"choices":[{"index":1,"delta":{"content":"other choice"}}]}`,
		`data: {"choices":[{"index":0,"delta":{"content":"world"},"finish_reason":"tool_calls"}]}`,
		"",
		`data: {"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16}}`,
		"",
		"data: [DONE]",
		"",
		`data: {"choices":[{"index":0,"delta":{"content":"after done"}}]}`,
	)
	var gotBody map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Accept"); got != "text/event-stream" {
			t.Errorf("Accept = %q", got)
		}
		raw, _ := io.ReadAll(r.Body)
		json.Unmarshal(raw, &gotBody)
		w.Header().Set("Content-Type", "text/event-stream")
		// Write in small pieces so lines span reads.
		for i := 0; i < len(body); i += 7 {
			io.WriteString(w, body[i:min(i+7, len(body))])
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()

	c := newTestOpenAI(t, srv.URL, OpenAIOptions{APIKey: testKey})
	var deltas []string
	got, err := c.Chat(context.Background(), Request{Model: "m", Messages: []Message{{Role: "user", Content: "hi"}}},
		func(s string) error { deltas = append(deltas, s); return nil })
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	want := Response{
		Message: Message{Role: "assistant", Content: "Hello world", ToolCalls: []ToolCall{
			{ID: "call_a", Type: "function", Function: FunctionCall{Name: "weather", Arguments: `{"city":"Oslo"}`}},
			{ID: "call_b", Type: "function", Function: FunctionCall{Name: "time", Arguments: `{"tz":"UTC"}`}},
		}},
		FinishReason: "tool_calls",
		Usage:        Usage{PromptTokens: 11, CompletionTokens: 5, TotalTokens: 16},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Chat() =\n%+v\nwant\n%+v", got, want)
	}
	if wantDeltas := []string{"Hel", "lo ", "world"}; !reflect.DeepEqual(deltas, wantDeltas) {
		t.Errorf("deltas = %q, want %q", deltas, wantDeltas)
	}
	if gotBody["stream"] != true || !reflect.DeepEqual(gotBody["stream_options"], map[string]any{"include_usage": true}) {
		t.Errorf("stream fields = %v, %v", gotBody["stream"], gotBody["stream_options"])
	}
}

func TestOpenAIStreamErrors(t *testing.T) {
	errStop := errors.New("stop now")
	tests := []struct {
		name    string
		body    string
		onDelta func(string) error
		wantErr string
		wantIs  error
	}{
		{
			name:    "truncated without done or finish",
			body:    sse(`data: {"choices":[{"index":0,"delta":{"content":"par"}}]}`),
			wantErr: "unexpected EOF",
		},
		{
			name: "finish without done is accepted",
			body: sse(`data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}`),
		},
		{
			name:    "malformed chunk",
			body:    sse(`data: {not json`),
			wantErr: "malformed stream chunk",
		},
		{
			name:    "error event",
			body:    sse(`data: {"error":{"message":"overloaded"}}`),
			wantErr: "upstream stream error: overloaded",
		},
		{
			name:    "line too long",
			body:    "data: \"" + strings.Repeat("x", maxSSELineBytes+10) + "\"\n",
			wantErr: "exceeds 1 MiB",
		},
		{
			name:    "onDelta error stops the stream",
			body:    sse(`data: {"choices":[{"index":0,"delta":{"content":"a"}}]}`, `data: {"choices":[{"index":0,"delta":{"content":"b"}}]}`, "data: [DONE]"),
			onDelta: func(string) error { return errStop },
			wantIs:  errStop,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c := newTestOpenAI(t, srv.URL, OpenAIOptions{})
			onDelta := tt.onDelta
			if onDelta == nil {
				onDelta = func(string) error { return nil }
			}
			_, err := c.Chat(context.Background(), Request{Model: "m"}, onDelta)
			switch {
			case tt.wantErr == "" && tt.wantIs == nil:
				if err != nil {
					t.Fatalf("Chat: %v", err)
				}
			case err == nil:
				t.Fatalf("Chat: nil error, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
				t.Errorf("error = %v, want %v", err, tt.wantIs)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("upstream called %d times, want 1 (no retry after a 2xx)", n)
			}
		})
	}
}

func TestOpenAIRetries(t *testing.T) {
	ok := `{"choices":[{"index":0,"message":{"content":"ok"},"finish_reason":"stop"}]}`
	type reply struct {
		status     int
		retryAfter string
		body       string
	}
	tests := []struct {
		name       string
		maxRetries int
		replies    []reply
		wantCalls  int
		wantStatus int    // 0: success
		wantMsg    string // StatusError message
	}{
		{name: "503 then 200", replies: []reply{{503, "", "busy"}, {200, "", ok}}, wantCalls: 2},
		{name: "429 not retried", replies: []reply{{429, "0", `{"error":{"message":"slow down"}}`}, {200, "", ok}}, wantCalls: 1, wantStatus: 429, wantMsg: "slow down"},
		{name: "503 retry-after 0 then 200", replies: []reply{{503, "0", `{"error":{"message":"busy"}}`}, {200, "", ok}}, wantCalls: 2},
		{name: "500 502 504 then 200", maxRetries: 3, replies: []reply{{500, "", ""}, {502, "", ""}, {504, "", ""}, {200, "", ok}}, wantCalls: 4},
		{name: "400 not retried", replies: []reply{{400, "", `{"error":{"message":"bad model name","type":"invalid_request_error"}}`}}, wantCalls: 1, wantStatus: 400, wantMsg: "bad model name"},
		{name: "401 not retried", replies: []reply{{401, "", `{"error":"no key"}`}}, wantCalls: 1, wantStatus: 401, wantMsg: "no key"},
		{name: "retries exhausted", replies: []reply{{503, "", "a"}, {503, "", "b"}, {503, "", "c"}, {200, "", ok}}, wantCalls: 3, wantStatus: 503, wantMsg: "c"},
		{name: "retries disabled", maxRetries: -1, replies: []reply{{503, "", "down"}, {200, "", ok}}, wantCalls: 1, wantStatus: 503, wantMsg: "down"},
		{name: "redirect not followed", replies: []reply{{307, "", ""}}, wantCalls: 1, wantStatus: 307, wantMsg: "Temporary Redirect"},
		{name: "top-level message", replies: []reply{{422, "", `{"object":"error","message":"too long"}`}}, wantCalls: 1, wantStatus: 422, wantMsg: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1)) - 1
				rp := tt.replies[min(n, len(tt.replies)-1)]
				if rp.retryAfter != "" {
					w.Header().Set("Retry-After", rp.retryAfter)
				}
				if rp.status == 307 {
					w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
				}
				w.WriteHeader(rp.status)
				io.WriteString(w, rp.body)
			}))
			defer srv.Close()
			c := newTestOpenAI(t, srv.URL, OpenAIOptions{MaxRetries: tt.maxRetries})
			got, err := c.Chat(context.Background(), Request{Model: "m"}, nil)
			if n := int(calls.Load()); n != tt.wantCalls {
				t.Errorf("upstream called %d times, want %d", n, tt.wantCalls)
			}
			if tt.wantStatus == 0 {
				if err != nil || got.Message.Content != "ok" {
					t.Fatalf("Chat() = %+v, %v; want content ok", got, err)
				}
				return
			}
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("Chat error = %v, want *StatusError", err)
			}
			if se.StatusCode != tt.wantStatus || se.Message != tt.wantMsg {
				t.Errorf("StatusError = %d %q, want %d %q", se.StatusCode, se.Message, tt.wantStatus, tt.wantMsg)
			}
			if want := fmt.Sprintf("upstream returned %d: %s", tt.wantStatus, tt.wantMsg); err.Error() != want {
				t.Errorf("Error() = %q, want %q", err, want)
			}
		})
	}
}

func TestOpenAIRetryTransportError(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close() // no response at all
			return
		}
		io.WriteString(w, `{"choices":[{"message":{"content":"ok"},"finish_reason":"stop"}]}`)
	}))
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL, OpenAIOptions{})
	got, err := c.Chat(context.Background(), Request{Model: "m"}, nil)
	if err != nil || got.Message.Content != "ok" {
		t.Fatalf("Chat() = %+v, %v", got, err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("upstream called %d times, want 2", n)
	}
}

func TestOpenAIStatusMessageTruncated(t *testing.T) {
	long := strings.Repeat("é", 400) // 800 bytes
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, long+"\n\x1b[31m")
	}))
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL, OpenAIOptions{})
	_, err := c.Chat(context.Background(), Request{Model: "m"}, nil)
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("error = %v, want *StatusError", err)
	}
	if len(se.Message) > maxErrorMessage || !strings.HasPrefix(long, se.Message) || len(se.Message) < maxErrorMessage-1 {
		t.Errorf("message has %d bytes, want a %d-byte prefix of the body", len(se.Message), maxErrorMessage)
	}
}

func TestOpenAICancelMidStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":"first"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // stall until the client goes away
	}))
	defer srv.Close()

	tests := []struct {
		name    string
		timeout time.Duration
		cancel  bool
		wantIs  error
	}{
		{name: "caller cancels", cancel: true, wantIs: context.Canceled},
		{name: "attempt timeout", timeout: 100 * time.Millisecond, wantIs: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestOpenAI(t, srv.URL, OpenAIOptions{Timeout: tt.timeout})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			start := time.Now()
			_, err := c.Chat(ctx, Request{Model: "m"}, func(string) error {
				if tt.cancel {
					go func() { time.Sleep(20 * time.Millisecond); cancel() }()
				}
				return nil
			})
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error = %v, want %v", err, tt.wantIs)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Chat returned after %s, want promptly", d)
			}
		})
	}
}

func TestOpenAICancelDuringBackoff(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "10")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL, OpenAIOptions{})

	// A deadline shorter than Retry-After returns the upstream error at once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Chat(ctx, Request{Model: "m"}, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 503 {
		t.Errorf("error = %v, want 503 StatusError", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("took %s, want no wait", d)
	}

	// Cancellation during the wait returns promptly.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel2)
	start = time.Now()
	_, err = c.Chat(ctx2, Request{Model: "m"}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s, want prompt return", d)
	}
}

func TestOpenAIKeyNeverInErrors(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte(testKey))
	tests := []struct {
		name    string
		handler http.HandlerFunc
		stream  bool
	}{
		{name: "401 echoing the header as JSON", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(401)
			json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"message": "bad key " + r.Header.Get("Authorization")}})
		}},
		{name: "500 echoing the key as text and base64", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			io.WriteString(w, "auth="+r.Header.Get("Authorization")+" b64="+b64)
		}},
		{name: "stream error event echoing the key", stream: true, handler: func(w http.ResponseWriter, r *http.Request) {
			msg, _ := json.Marshal("key " + r.Header.Get("Authorization"))
			io.WriteString(w, `data: {"error":{"message":`+string(msg)+`}}`+"\n")
		}},
		{name: "200 with error echoing the key", handler: func(w http.ResponseWriter, r *http.Request) {
			msg, _ := json.Marshal("key " + r.Header.Get("Authorization"))
			io.WriteString(w, `{"error":{"message":`+string(msg)+`}}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c := newTestOpenAI(t, srv.URL, OpenAIOptions{APIKey: testKey, MaxRetries: -1})
			var onDelta func(string) error
			if tt.stream {
				onDelta = func(string) error { return nil }
			}
			_, err := c.Chat(context.Background(), Request{Model: "m"}, onDelta)
			if err == nil {
				t.Fatal("Chat: nil error")
			}
			if s := err.Error(); strings.Contains(s, testKey) || strings.Contains(s, b64) || !strings.Contains(s, "[REDACTED") {
				t.Errorf("error %q leaks the key or lacks [REDACTED", s)
			}
		})
	}

	t.Run("transport error", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		c := newTestOpenAI(t, url, OpenAIOptions{APIKey: testKey, MaxRetries: 1})
		_, err := c.Chat(context.Background(), Request{Model: "m"}, nil)
		if err == nil || strings.Contains(err.Error(), testKey) {
			t.Errorf("error = %v, want one without the key", err)
		}
	})

	t.Run("printing", func(t *testing.T) {
		opts := OpenAIOptions{BaseURL: "http://example.com/v1", APIKey: testKey}
		c, err := NewOpenAI(opts)
		if err != nil {
			t.Fatal(err)
		}
		var logged bytes.Buffer
		slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "opts", opts, "client", c)
		for _, s := range []string{fmt.Sprint(opts), fmt.Sprintf("%+v", opts), fmt.Sprint(c), fmt.Sprintf("%v", c), logged.String()} {
			if strings.Contains(s, testKey) {
				t.Errorf("%q contains the API key", s)
			}
		}
	})
}

func TestOpenAIResponseTooLarge(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"choices":[{"message":{"content":"`)
		chunk := strings.Repeat("x", 64<<10)
		for i := 0; i <= maxResponseBytes/len(chunk); i++ {
			io.WriteString(w, chunk)
		}
		io.WriteString(w, `"}}]}`)
	}))
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL, OpenAIOptions{})
	_, err := c.Chat(context.Background(), Request{Model: "m"}, nil)
	if err == nil || !strings.Contains(err.Error(), "exceeds 8 MiB") {
		t.Errorf("error = %v, want size limit", err)
	}
}

func TestOpenAIStreamJSONFallback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, `{"choices":[{"message":{"content":"whole"},"finish_reason":"stop"}]}`)
	}))
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL, OpenAIOptions{})
	var deltas []string
	got, err := c.Chat(context.Background(), Request{Model: "m"}, func(s string) error { deltas = append(deltas, s); return nil })
	if err != nil || got.Message.Content != "whole" || !reflect.DeepEqual(deltas, []string{"whole"}) {
		t.Errorf("Chat() = %+v, %v, deltas %q", got, err, deltas)
	}
}

func BenchmarkOpenAIChat(b *testing.B) {
	reply := []byte(`{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog."},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":10,"total_tokens":30}}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(reply)
	}))
	defer srv.Close()
	c := newTestOpenAI(b, srv.URL, OpenAIOptions{APIKey: testKey})
	req := Request{Model: "m", User: "u", Messages: []Message{
		{Role: "system", Content: "You are helpful."},
		{Role: "user", Content: "Say something about foxes."},
	}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Chat(ctx, req, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOpenAIRequestKey checks a per-request key (BYOK) replaces the configured
// one in the header, and is redacted from errors like it.
func TestOpenAIRequestKey(t *testing.T) {
	const tenantKey = "sk-tenant-own-key-0042"
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		w.WriteHeader(401)
		io.WriteString(w, `{"error":{"message":"rejected `+r.Header.Get("Authorization")+`"}}`)
	}))
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL, OpenAIOptions{APIKey: testKey, MaxRetries: -1})
	_, err := c.Chat(context.Background(), Request{Model: "m", APIKey: secret.New(tenantKey)}, nil)
	if err == nil || strings.Contains(err.Error(), tenantKey) || !strings.Contains(err.Error(), "[REDACTED:api_key]") {
		t.Fatalf("error = %v, want the tenant key redacted", err)
	}
	_, _ = c.Chat(context.Background(), Request{Model: "m"}, nil)
	if want := []string{"Bearer " + tenantKey, "Bearer " + testKey}; !slices.Equal(got, want) {
		t.Fatalf("Authorization headers = %q, want %q", got, want)
	}
	if s := fmt.Sprintf("%v %+v", Request{APIKey: secret.New(tenantKey)}, Request{APIKey: secret.New(tenantKey)}); strings.Contains(s, tenantKey) {
		t.Fatalf("formatted Request shows the key: %s", s)
	}
}

// TestOpenAIOptionsForwarded checks every Option goes on the wire as itself
// (max_completion_tokens is not turned into max_tokens) and an unset one not
// at all.
func TestOpenAIOptionsForwarded(t *testing.T) {
	seed, n, mct := int64(7), 1, 99
	topP, fp, pp := 0.5, 0.1, -0.2
	f, tr := false, true
	opts := Options{
		ResponseFormat: json.RawMessage(`{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}`),
		Seed:           &seed, Stop: json.RawMessage(`["END"]`), TopP: &topP, N: &n,
		FrequencyPenalty: &fp, PresencePenalty: &pp, LogitBias: json.RawMessage(`{"1":-100}`),
		Logprobs: &f, ToolChoice: json.RawMessage(`"auto"`), ParallelToolCalls: &tr,
		MaxCompletionTokens: &mct, Metadata: json.RawMessage(`{"k":"v"}`), ReasoningEffort: "low", Store: &f,
	}
	want := map[string]string{
		"response_format": string(opts.ResponseFormat), "seed": "7", "stop": `["END"]`, "top_p": "0.5", "n": "1",
		"frequency_penalty": "0.1", "presence_penalty": "-0.2", "logit_bias": `{"1":-100}`, "logprobs": "false",
		"tool_choice": `"auto"`, "parallel_tool_calls": "true", "max_completion_tokens": "99",
		"metadata": `{"k":"v"}`, "reasoning_effort": `"low"`, "store": "false",
	}
	for _, tt := range []struct {
		name string
		opts Options
		want map[string]string
	}{{"all set", opts, want}, {"none set", Options{}, nil}} {
		t.Run(tt.name, func(t *testing.T) {
			body, err := encodeRequest(Request{Model: "m", Options: tt.opts}, false)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]json.RawMessage
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if string(got[k]) != v {
					t.Errorf("%s = %s, want %s", k, got[k], v)
				}
			}
			for k, v := range got {
				if _, ok := tt.want[k]; !ok && k != "model" && k != "messages" && k != "stream" {
					t.Errorf("unexpected field %s = %s", k, v)
				}
			}
		})
	}
}

// TestOpenAIStartedAndReported checks Started is called once the upstream
// accepted a stream, never for a refused one, and that the provider's model
// and system_fingerprint come back.
func TestOpenAIStartedAndReported(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status != http.StatusOK {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"model":"m-2026","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}`+"\n\ndata: [DONE]\n\n")
	}))
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL, OpenAIOptions{MaxRetries: -1})
	started := 0
	req := Request{Model: "m", Started: func() { started++ }}
	resp, err := c.Chat(context.Background(), req, func(string) error { return nil })
	if err != nil || started != 1 || resp.Model != "m-2026" || resp.SystemFingerprint != "fp_1" {
		t.Fatalf("Chat = %+v, %v, started %d; want model m-2026, fp_1, started once", resp, err, started)
	}
	status = http.StatusTooManyRequests
	_, err = c.Chat(context.Background(), req, func(string) error { return nil })
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 429 || !se.HasRetryAfter || se.RetryAfter != 3*time.Second || started != 1 {
		t.Fatalf("429: err %v, started %d; want a StatusError with Retry-After 3s and no start", err, started)
	}
}

// TestOpenAIDeadlineBoundsRetries checks the overall deadline stops retries
// that would otherwise go on.
func TestOpenAIDeadlineBoundsRetries(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL, OpenAIOptions{MaxRetries: 5, Deadline: 3 * time.Second})
	_, err := c.Chat(context.Background(), Request{Model: "m"}, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 503 {
		t.Fatalf("err %v, want the 503", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d calls, want 2 (the deadline leaves room for one 2s wait)", n)
	}
}
