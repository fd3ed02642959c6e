package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/label"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

// A client outside a turn (an MCP client of Bulkhead's /mcp) may list a
// profile's tools and call them. It gets exactly what the model would be
// offered, and its calls take the model's path (toolbox.call): schema,
// binding, policy with the arguments, secrets injected, redaction, the guard
// on the arguments, audit. What it gets back is checked as an answer is,
// since nothing stands between the result and the client.

// ToolResult is the answer to a CallTool. IsError marks a refusal or a
// failure; Text is then what the model would have read.
type ToolResult struct {
	Text    string
	IsError bool
}

// OfferedTools returns the tools profile offers scope, as a turn offers them to
// the model: policy permits them, bound parameters are hidden.
func (a *Agent) OfferedTools(ctx context.Context, scope auth.Scope, profile Profile) []llm.Tool {
	if !scope.Valid() {
		return nil
	}
	return a.toolbox(ctx, scope, profile, nil, nil).offered
}

// CallTool runs one call of a profile's tool for scope, as a chat turn runs
// the model's call, admitted against the tenant's limits as a turn is. A
// refused or failed call is a ToolResult with IsError and the model's text;
// a tool that is not offered (unknown, another tenant's, forbidden) is "not
// available", the same for each. The error is for what fails the request
// itself: a limit, the tenant's secrets unreadable.
func (a *Agent) CallTool(ctx context.Context, scope auth.Scope, profile Profile, name string, args json.RawMessage) (ToolResult, error) {
	if !scope.Valid() {
		return ToolResult{}, fmt.Errorf("call tool: %w", store.ErrNoScope)
	}
	if a.Tools == nil {
		return ToolResult{Text: notAvailable, IsError: true}, nil
	}
	release, err := a.Quota.Admit(ctx, scope.Incarnation(), profile.Limits)
	if err != nil {
		return ToolResult{}, err
	}
	defer release()
	secrets, err := a.Secrets.Secrets(ctx, scope)
	if err != nil {
		return ToolResult{}, fmt.Errorf("load tenant secrets: %w", err)
	}
	red := redactor(secrets)
	box := a.toolbox(ctx, scope, profile, secrets, red)
	// The client wrote the call: its arguments are read as client
	// messages are (labels.go).
	box.read = label.Client
	if len(args) == 0 {
		args = json.RawMessage("{}") // MCP's arguments are optional
	}
	// The client wrote the call: its name and arguments are its own
	// inputs, as a chat client's messages are (inputs.go).
	in := a.Guard.Inputs(scope.Tenant(), nil, name, string(args))
	box.inputs = in
	tc := llm.ToolCall{ID: newCallID(), Type: "function", Function: llm.FunctionCall{Name: name, Arguments: string(args)}}
	out := red.String(textnorm.StripInvisibleRuns(box.call(ctx, tc)))
	// Every refusal and failure of toolbox.call, and every error result of
	// a tool, is written "error: …" for the model.
	isError := strings.HasPrefix(out, "error: ")
	// The result goes to the client as an answer would. An external tool's
	// result is an input (the tenant chose that server), a builtin's is not:
	// a canary in a stored document is the leak the guard is for.
	if a.external(name) {
		in = a.Guard.Inputs(scope.Tenant(), in, out)
	}
	msg, finish := llm.Message{Role: "assistant", Content: out}, ""
	a.guardAnswer(ctx, scope, profile, in, &msg, &finish)
	if finish == "content_filter" {
		isError = true
	}
	return ToolResult{Text: msg.Content, IsError: isError}, nil
}
