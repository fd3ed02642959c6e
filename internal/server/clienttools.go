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

// present reports whether a raw field was given a value other than null.
func present(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// clientTools decodes the request's client tools, from tools or from the
// legacy functions. Their names and schemas are checked by the agent
// against the profile (clienttools.go there), the same whichever field
// declared them.
func (req chatRequest) clientTools() ([]llm.Tool, error) {
	if err := req.checkLegacy(); err != nil {
		return nil, err
	}
	if present(req.Functions) {
		return req.functions()
	}
	raw := bytes.TrimSpace(req.Tools)
	if !present(raw) {
		return nil, nil
	}
	decls, err := decodeDecls[clientToolDecl](raw, "tools", `{"type":"function","function":{"name","description","parameters","strict"}}`)
	if err != nil {
		return nil, err
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

// decodeDecls decodes field, an array of at most maxClientTools entries
// of the given shape; any other member is refused by its JSON pointer.
func decodeDecls[T any](raw json.RawMessage, field, shape string) ([]T, error) {
	var decls []T
	if err := jsonv2.Unmarshal(bytes.TrimSpace(raw), &decls, jsonv2.RejectUnknownMembers(true)); err != nil {
		var se *jsonv2.SemanticError
		if errors.As(err, &se) && se.JSONPointer != "" {
			return nil, fmt.Errorf("%w: %s%s: not accepted (each entry is %s)", kind.Invalid, field, se.JSONPointer, shape)
		}
		return nil, fmt.Errorf("%w: %s must be an array of %s", kind.Invalid, field, shape)
	}
	if len(decls) > maxClientTools {
		return nil, fmt.Errorf("%w: %s: more than %d", kind.Invalid, field, maxClientTools)
	}
	return decls, nil
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
// A legacy function_call becomes a tool call without an id, and a
// "function" message a tool message naming its function; the agent links
// the two (agent.linkLegacy).
func (m chatMessage) toolParts(out *llm.Message) error {
	switch {
	case len(m.ToolCalls) > 0 && m.Role != "assistant":
		return errors.New("only assistant messages carry tool_calls")
	case m.FunctionCall != nil && m.Role != "assistant":
		return errors.New("only assistant messages carry a function_call")
	case m.FunctionCall != nil && len(m.ToolCalls) > 0:
		return errors.New("a message carries tool_calls or a function_call, not both")
	case m.FunctionCall != nil && m.FunctionCall.Name == "":
		return errors.New("function_call needs the function's name")
	case m.Role == "function" && m.Name == "":
		return errors.New("a function message needs the name of its function")
	case m.Role == "tool" && m.ToolCallID == "":
		return errors.New("a tool message needs its tool_call_id")
	case m.Role != "tool" && m.ToolCallID != "":
		return errors.New("only tool messages carry a tool_call_id")
	}
	if m.Role == "function" {
		out.Role = "tool"
	}
	if m.FunctionCall != nil {
		out.ToolCalls = []llm.ToolCall{{Type: "function", Function: *m.FunctionCall}}
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
// arguments were checked as a whole and are sent only then. A legacy
// answer has one call (agent.Turn.LegacyFunctions), as a function_call.
func toolCallDeltas(calls []llm.ToolCall, legacy bool) []*chatDelta {
	if legacy && len(calls) > 0 {
		return []*chatDelta{{FunctionCall: &calls[0].Function}}
	}
	out := make([]*chatDelta, len(calls))
	for i, tc := range calls {
		out[i] = &chatDelta{ToolCalls: []toolCallDelta{{Index: i, ID: tc.ID, Type: "function", Function: tc.Function}}}
	}
	return out
}

// legacyFunction is one entry of a request's legacy "functions".
type legacyFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
}

// legacy reports whether req uses OpenAI's legacy functions API: it
// declares functions or a function_call, or its messages carry function
// calls or results. Its answer then has the legacy shape too.
func (req chatRequest) legacy() bool {
	if present(req.Functions) || present(req.FunctionCall) {
		return true
	}
	for _, m := range req.Messages {
		if m.Role == "function" || m.FunctionCall != nil {
			return true
		}
	}
	return false
}

// checkLegacy refuses a request that mixes the functions API with the tools
// API, naming the field: which shape to answer in would be a guess.
func (req chatRequest) checkLegacy() error {
	fns := present(req.Functions) || present(req.FunctionCall)
	switch {
	case present(req.Functions) && present(req.Tools):
		return fmt.Errorf("%w: functions: not accepted together with tools; declare client tools in one of them", kind.Invalid)
	case present(req.FunctionCall) && !present(req.Functions):
		return fmt.Errorf("%w: function_call goes with functions (with tools, use tool_choice)", kind.Invalid)
	case fns && present(req.ToolChoice):
		return fmt.Errorf("%w: tool_choice goes with tools (with functions, use function_call)", kind.Invalid)
	case req.legacy() && present(req.Tools):
		return fmt.Errorf("%w: messages: function messages and function_call go with functions, not with tools", kind.Invalid)
	case req.legacy() && req.ParallelToolCalls != nil && *req.ParallelToolCalls:
		return fmt.Errorf("%w: parallel_tool_calls: the functions API answers with one function_call at a time", kind.Invalid)
	}
	return nil
}

// functions decodes the legacy functions as client tools.
func (req chatRequest) functions() ([]llm.Tool, error) {
	decls, err := decodeDecls[legacyFunction](req.Functions, "functions", `{"name","description","parameters"}`)
	if err != nil {
		return nil, err
	}
	out := make([]llm.Tool, 0, len(decls))
	for _, d := range decls {
		out = append(out, llm.Tool{Type: "function", Function: llm.FunctionDef{Name: d.Name,
			Description: d.Description, Parameters: d.Parameters}})
	}
	return out, nil
}

// functionChoice is the legacy function_call as a tool_choice: "none",
// "auto" or {"name": …}.
func (req chatRequest) functionChoice() (json.RawMessage, error) {
	raw := bytes.TrimSpace(req.FunctionCall)
	if !present(raw) {
		return nil, nil
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		if mode != "none" && mode != "auto" {
			return nil, fmt.Errorf("%w: function_call must be \"none\", \"auto\" or {\"name\":…}", kind.Invalid)
		}
		return raw, nil
	}
	var named struct {
		Name string `json:"name"`
	}
	if err := jsonv2.Unmarshal(raw, &named, jsonv2.RejectUnknownMembers(true)); err != nil || named.Name == "" {
		return nil, fmt.Errorf("%w: function_call must be \"none\", \"auto\" or {\"name\":…}", kind.Invalid)
	}
	b, err := json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": named.Name}})
	if err != nil {
		return nil, fmt.Errorf("encode function_call: %w", err)
	}
	return b, nil
}

// legacyMessage is an answer's message in the functions API's shape: the
// one call as function_call, no tool_calls.
func legacyMessage(m llm.Message) answerMessage {
	out := answerMessage{Message: m}
	if len(m.ToolCalls) > 0 {
		out.FunctionCall = &m.ToolCalls[0].Function
		out.ToolCalls = nil
	}
	return out
}
