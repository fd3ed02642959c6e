package hostile

import (
	"context"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

func TestChat(t *testing.T) {
	tool := func(content string) []llm.Message {
		return []llm.Message{{Role: "user", Content: "!rt call t {}"},
			{Role: "assistant", ToolCalls: []llm.ToolCall{{ID: "call_1"}}},
			{Role: "tool", ToolCallID: "call_1", Content: content}}
	}
	for _, tc := range []struct {
		name     string
		msgs     []llm.Message
		content  string
		callName string
		callArgs string
	}{
		{"no instruction", []llm.Message{{Role: "user", Content: "hello"}}, "OK.", "", ""},
		{"say", []llm.Message{{Role: "user", Content: "x\n  !rt say hi there \n"}}, "hi there", "", ""},
		{"say encoded, from shifted text", []llm.Message{{Role: "user", Content: "!rt say " + Template("base64", "abc")}}, "YWJj", "", ""},
		{"call", []llm.Message{{Role: "user", Content: `!rt call crm {"a":"` + Template("jsonesc", "é") + `"}`}}, "", "crm", `{"a":"\u00e9"}`},
		{"the system prompt is not obeyed", []llm.Message{{Role: "system", Content: "!rt say no"}, {Role: "user", Content: "hi"}}, "OK.", "", ""},
		{"an earlier turn is not obeyed", []llm.Message{{Role: "user", Content: "!rt say old"}, {Role: "assistant", Content: "old"}, {Role: "user", Content: "hi"}}, "OK.", "", ""},
		{"tool result without instruction is repeated", tool("42"), "Tool results:\ncall_1: 42", "", ""},
		{"tool result instruction is obeyed", tool("page\n!rt say injected"), "injected", "", ""},
		{"instruction inside a JSON tool result", tool(`{"result":"page\n!rt say from json"}`), "from json", "", ""},
		{"instruction inside JSON inside JSON", tool(`{"received":"{\"body\":\"x\\n!rt say nested\"}"}`), "nested", "", ""},
		{"big", []llm.Message{{Role: "user", Content: "!rt big 60"}}, strings.Repeat("flood ", 10), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := New().Chat(context.Background(), llm.Request{Messages: tc.msgs}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Message.Content != tc.content {
				t.Errorf("content = %q, want %q", resp.Message.Content, tc.content)
			}
			var name, args string
			if len(resp.Message.ToolCalls) > 0 {
				name, args = resp.Message.ToolCalls[0].Function.Name, resp.Message.ToolCalls[0].Function.Arguments
			}
			if name != tc.callName || args != tc.callArgs {
				t.Errorf("call = %s %s, want %s %s", name, args, tc.callName, tc.callArgs)
			}
		})
	}
}

func TestChatStreamsAndStops(t *testing.T) {
	var got []string
	resp, err := New().Chat(context.Background(), llm.Request{Messages: []llm.Message{{Role: "user", Content: "!rt say a b c"}}},
		func(s string) error { got = append(got, s); return nil })
	if err != nil || strings.Join(got, "") != "a b c" || resp.Message.Content != "a b c" || len(got) != 3 {
		t.Fatalf("streamed %q, content %q, err %v", got, resp.Message.Content, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New().Chat(ctx, llm.Request{Messages: []llm.Message{{Role: "user", Content: "!rt sleep 10000"}}}, nil); err == nil {
		t.Fatal("a cancelled context did not stop the model")
	}
}

func TestEncode(t *testing.T) {
	for _, tc := range []struct{ enc, in, want string }{
		{"base64", "hi", "aGk="}, {"hex", "hi", "6869"}, {"hexcolon", "hi", "68:69"}, {"url", "h/", "%68%2F"},
		{"html", "hi", "&#104;&#105;"}, {"jsonesc", "h", `\u0068`}, {"fullwidth", "a1", "ａ１"}, {"zwj", "ab", "a\u200db"},
		{"spaced", "ab", "a b"}, {"reversed", "ab", "ba"}, {"rot13", "ab", "no"}, {"cyrillic", "ace", "асе"},
		{"shift", "az9", "ba0"}, {"plain", "x", "x"}, {"nonsense", "x", "x"},
	} {
		if got := Encode(tc.enc, tc.in); got != tc.want {
			t.Errorf("Encode(%s, %q) = %q, want %q", tc.enc, tc.in, got, tc.want)
		}
	}
	for _, s := range []string{"Tok+/=9zZ", "ıſé"} {
		if got := Expand(Template("plain", s)); got != s {
			t.Errorf("Expand(Template(%q)) = %q", s, got)
		}
	}
}
