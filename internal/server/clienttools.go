package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// clientToolDecl is one entry of a request's "tools", in OpenAI's shape.
// Any other member (a "bound" map, say) is refused by name: a client tool
// has no runtime-filled parameters.
type clientToolDecl struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

// maxClientTools bounds the tools one request may declare (OpenAI's limit).
const maxClientTools = 128

// clientTools decodes the request's client tools. Their names and schemas
// are checked by the agent against the profile (clienttools.go there).
func (req chatRequest) clientTools() ([]llm.Tool, error) {
	raw := bytes.TrimSpace(req.Tools)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var decls []clientToolDecl
	if err := jsonv2.Unmarshal(raw, &decls, jsonv2.RejectUnknownMembers(true)); err != nil {
		var se *jsonv2.SemanticError
		if errors.As(err, &se) && se.JSONPointer != "" {
			return nil, fmt.Errorf("%w: tools%s: not accepted (each tool is {\"type\":\"function\",\"function\":{\"name\",\"description\",\"parameters\",\"strict\"}})", kind.Invalid, se.JSONPointer)
		}
		return nil, fmt.Errorf("%w: tools must be an array of {\"type\":\"function\",\"function\":{…}}", kind.Invalid)
	}
	if len(decls) > maxClientTools {
		return nil, fmt.Errorf("%w: tools: more than %d", kind.Invalid, maxClientTools)
	}
	out := make([]llm.Tool, 0, len(decls))
	for i, d := range decls {
		if d.Type != "function" {
			return nil, fmt.Errorf("%w: tools[%d]: type must be \"function\"", kind.Invalid, i)
		}
		out = append(out, llm.Tool{Type: "function", Function: llm.FunctionDef{Name: d.Function.Name,
			Description: d.Function.Description, Parameters: d.Function.Parameters, Strict: d.Function.Strict}})
	}
	return out, nil
}

// chatToolCall is a tool call in an assistant message the client sends
// back.
type chatToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// toolParts checks and copies the tool parts of m: tool calls on an
// assistant message only, a tool_call_id on (and only on) a tool message.
func (m chatMessage) toolParts(out *llm.Message) error {
	switch {
	case len(m.ToolCalls) > 0 && m.Role != "assistant":
		return errors.New("only assistant messages carry tool_calls")
	case m.Role == "tool" && m.ToolCallID == "":
		return errors.New("a tool message needs its tool_call_id")
	case m.Role != "tool" && m.ToolCallID != "":
		return errors.New("only tool messages carry a tool_call_id")
	}
	out.ToolCallID = m.ToolCallID
	for j, tc := range m.ToolCalls {
		if tc.ID == "" || tc.Type != "function" || tc.Function.Name == "" {
			return fmt.Errorf("tool_calls[%d] needs an id, type \"function\" and a function name", j)
		}
		out.ToolCalls = append(out.ToolCalls, llm.ToolCall{ID: tc.ID, Type: "function",
			Function: llm.FunctionCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments}})
	}
	return nil
}

// toolCallDelta is a tool call in a streamed chunk, in OpenAI's shape.
type toolCallDelta struct {
	Index    int              `json:"index"`
	ID       string           `json:"id"`
	Type     string           `json:"type"`
	Function llm.FunctionCall `json:"function"`
}

// toolCallDeltas streams client tool calls one chunk each, whole: the
// arguments were checked as a whole and are sent only then.
func toolCallDeltas(calls []llm.ToolCall) []*chatDelta {
	out := make([]*chatDelta, len(calls))
	for i, tc := range calls {
		out[i] = &chatDelta{ToolCalls: []toolCallDelta{{Index: i, ID: tc.ID, Type: "function", Function: tc.Function}}}
	}
	return out
}
