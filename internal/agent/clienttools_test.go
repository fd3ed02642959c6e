package agent

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

func clientDecl(name string) llm.Tool {
	return llm.Tool{Type: "function", Function: llm.FunctionDef{Name: name,
		Parameters: json.RawMessage(`{"type":"object","properties":{"to":{"type":"string"}}}`)}}
}

func toolCall(id, name, args string) llm.ToolCall {
	return llm.ToolCall{ID: id, Type: "function", Function: llm.FunctionCall{Name: name, Arguments: args}}
}

// TestClientStep checks which steps are returned to the client: only
// those of client calls alone, every one passing; in the others, client
// calls are answered to the model and server-side ones run.
func TestClientStep(t *testing.T) {
	tests := []struct {
		name       string
		calls      []llm.ToolCall
		returned   int
		held       []string // per call: prefix of the held message, "" for a server call
		serverRuns int64
	}{
		{"client calls only", []llm.ToolCall{toolCall("m1", "send_email", `{"to":"a"}`), toolCall("m2", "send_email", `{"to":"b"}`)}, 2, nil, 0},
		{"server calls only", []llm.ToolCall{toolCall("m1", "crm_lookup", `{"customer":"c"}`)}, 0, nil, 1},
		{"mixed", []llm.ToolCall{toolCall("m1", "crm_lookup", `{"customer":"c"}`), toolCall("m2", "send_email", `{"to":"a"}`)}, 0, []string{"", heldMixed}, 1},
		{"one refused", []llm.ToolCall{toolCall("m1", "send_email", `{"to":"a"}`), toolCall("m2", "send_email", `{"to":1}`)}, 0, []string{heldRefused, "error: refused"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, rec := newToolbox(t, 0)
			if err := b.addClientTools(Profile{Name: "default", Tools: []string{"crm_lookup"}}, []llm.Tool{clientDecl("send_email")}); err != nil {
				t.Fatal(err)
			}
			returned, held := b.clientStep(t.Context(), tt.calls)
			if len(returned) != tt.returned {
				t.Fatalf("returned %d calls, want %d", len(returned), tt.returned)
			}
			for i, c := range returned {
				if c.ID == tt.calls[i].ID || !strings.HasPrefix(c.ID, "call_") {
					t.Errorf("returned call id %q, want a fresh one", c.ID)
				}
			}
			if tt.returned > 0 {
				return
			}
			msgs := b.runStep(t.Context(), tt.calls, held)
			if len(msgs) != len(tt.calls) {
				t.Fatalf("got %d tool messages for %d calls", len(msgs), len(tt.calls))
			}
			for i, m := range msgs {
				if m.ToolCallID != tt.calls[i].ID {
					t.Errorf("message %d answers %q, want %q", i, m.ToolCallID, tt.calls[i].ID)
				}
				if tt.held != nil && tt.held[i] != "" && !strings.HasPrefix(m.Content, tt.held[i]) {
					t.Errorf("message %d = %q, want it to start with %q", i, m.Content, tt.held[i])
				}
			}
			if got := rec.calls.Load(); got != tt.serverRuns {
				t.Errorf("server-side tool ran %d times, want %d", got, tt.serverRuns)
			}
		})
	}
}

func TestWithoutRepeat(t *testing.T) {
	call := []llm.ToolCall{toolCall("call_a", "send_email", "{}")}
	stored := []llm.Message{{Role: "user", Content: "hi"}, {Role: "assistant", ToolCalls: call}}
	result := llm.Message{Role: "tool", ToolCallID: "call_a", Content: "ok"}
	tests := []struct {
		name          string
		stored, fresh []llm.Message
		want          int
	}{
		{"repeated call message dropped", stored, []llm.Message{{Role: "assistant", ToolCalls: call}, result}, 1},
		{"results only", stored, []llm.Message{result}, 1},
		{"other call kept", stored, []llm.Message{{Role: "assistant", ToolCalls: []llm.ToolCall{toolCall("call_b", "x", "{}")}}, result}, 2},
		{"no history", nil, []llm.Message{{Role: "assistant", ToolCalls: call}, result}, 2},
		{"legacy call repeated without id", stored, []llm.Message{{Role: "assistant", ToolCalls: []llm.ToolCall{toolCall("", "send_email", "{}")}}, result}, 1},
		{"legacy call with other arguments kept", stored, []llm.Message{{Role: "assistant", ToolCalls: []llm.ToolCall{toolCall("", "send_email", `{"to":"x"}`)}}, result}, 2},
	}
	for _, tt := range tests {
		if got := withoutRepeat(tt.stored, tt.fresh); len(got) != tt.want {
			t.Errorf("%s: got %d messages, want %d", tt.name, len(got), tt.want)
		}
	}
}

// TestLinkLegacy checks the legacy functions API's calls and results get
// linked ids: a result answers the open call of its function in the
// assistant message before it, and one that answers none is refused.
func TestLinkLegacy(t *testing.T) {
	fnResult := func(name string) llm.Message { return llm.Message{Role: "tool", Name: name, Content: "ok"} }
	tests := []struct {
		name    string
		msgs    []llm.Message
		wantErr bool
	}{
		{"stateless", []llm.Message{{Role: "user"}, {Role: "assistant", ToolCalls: []llm.ToolCall{toolCall("", "send_email", "{}")}}, fnResult("send_email")}, false},
		{"stored call with its id", []llm.Message{{Role: "assistant", ToolCalls: []llm.ToolCall{toolCall("call_x", "send_email", "{}")}}, fnResult("send_email")}, false},
		{"two rounds", []llm.Message{{Role: "assistant", ToolCalls: []llm.ToolCall{toolCall("", "f", "{}")}}, fnResult("f"),
			{Role: "assistant", ToolCalls: []llm.ToolCall{toolCall("", "f", "{}")}}, fnResult("f")}, false},
		{"no call", []llm.Message{{Role: "user"}, fnResult("send_email")}, true},
		{"other function", []llm.Message{{Role: "assistant", ToolCalls: []llm.ToolCall{toolCall("", "f", "{}")}}, fnResult("g")}, true},
		{"answered twice", []llm.Message{{Role: "assistant", ToolCalls: []llm.ToolCall{toolCall("", "f", "{}")}}, fnResult("f"), fnResult("f")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := linkLegacy(tt.msgs)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			ids := map[string]bool{}
			for _, m := range tt.msgs {
				for _, tc := range m.ToolCalls {
					if tc.ID == "" || ids[tc.ID] {
						t.Fatalf("call id %q empty or repeated in %+v", tc.ID, tt.msgs)
					}
					ids[tc.ID] = true
				}
				if m.Role == "tool" && !ids[m.ToolCallID] {
					t.Errorf("result answers %q, not a call before it (%+v)", m.ToolCallID, tt.msgs)
				}
			}
		})
	}
}
