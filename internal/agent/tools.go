package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/policy"
	"github.com/bulkhead-ai/bulkhead/internal/redact"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

// Catalog finds tools by name.
type Catalog interface {
	Tool(name string) (*tools.Tool, bool)
}

// Executor runs one authorized tool call.
type Executor interface {
	Execute(ctx context.Context, call tools.Call) (tools.Result, error)
}

// maxCallsPerStep bounds the tool calls one model answer may make, and
// maxParallel how many of them run at once.
const (
	maxCallsPerStep = 16
	maxParallel     = 8
)

// toolbox is one turn's view of the tools: what was offered to the model,
// and everything needed to check and run a call.
type toolbox struct {
	a         *Agent
	scope     auth.Scope
	principal policy.Principal
	set       *policy.Set
	secrets   map[tenant.SecretName]secret.Value
	red       *redact.Redactor
	tools     map[string]*tools.Tool // offered, by name
	offered   []llm.Tool
}

// toolbox offers the profile's tools that the tenant's policy permits, with
// bound parameters hidden from the model.
func (a *Agent) toolbox(ctx context.Context, scope auth.Scope, profile Profile, secrets []store.Secret, red *redact.Redactor) *toolbox {
	b := &toolbox{a: a, scope: scope, set: profile.Policy, red: red, tools: map[string]*tools.Tool{},
		principal: policy.Principal{Tenant: scope.Tenant(), Profile: profile.Name, User: scope.User()},
		secrets:   make(map[tenant.SecretName]secret.Value, len(secrets))}
	for _, s := range secrets {
		b.secrets[s.Name] = s.Value
	}
	if b.set == nil || a.Tools == nil {
		return b
	}
	for _, name := range profile.Tools {
		t, ok := a.Tools.Tool(name)
		if !ok {
			a.Logger.WarnContext(ctx, "profile names a tool not in the catalog", "tenant", scope.Tenant(), "profile", profile.Name, "tool", name)
			continue
		}
		if ok, _ := b.set.Listable(b.principal, resource(t)); !ok {
			continue
		}
		b.tools[name] = t
		b.offered = append(b.offered, llm.Tool{Type: "function", Function: llm.FunctionDef{
			Name: t.Name, Description: t.Description, Parameters: t.VisibleParameters()}})
	}
	return b
}

func resource(t *tools.Tool) policy.Resource {
	return policy.Resource{Name: t.Name, Scope: string(t.Scope), Owner: t.Owner}
}

// run executes a model answer's tool calls, in parallel, and returns the tool
// messages in the calls' order. A refused or failed call becomes an error
// message the model can read and recover from.
func (b *toolbox) run(ctx context.Context, calls []llm.ToolCall) []llm.Message {
	out := make([]llm.Message, len(calls))
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i, tc := range calls {
		if i >= maxCallsPerStep {
			out[i] = toolMessage(tc, fmt.Sprintf("error: more than %d tool calls in one step; this one was not run", maxCallsPerStep))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = toolMessage(tc, b.red.String(b.call(ctx, tc)))
		}()
	}
	wg.Wait()
	return out
}

func toolMessage(tc llm.ToolCall, content string) llm.Message {
	return llm.Message{Role: "tool", ToolCallID: tc.ID, Name: tc.Function.Name, Content: content}
}

// call checks and runs one tool call and returns the text for the model.
func (b *toolbox) call(ctx context.Context, tc llm.ToolCall) string {
	name := tc.Function.Name
	log := b.a.Logger.With("tenant", b.scope.Tenant(), "tool", name)
	t, offered := b.tools[name]
	if !offered {
		// Not offered: not in the profile, or refused by policy. Ask the
		// policy anyway when the tool exists, so the refusal names a reason.
		reasons := []string{"not offered to this agent"}
		if ct, ok := b.a.Tools.Tool(name); ok && b.set != nil {
			reasons = append(reasons, b.set.Authorize(b.principal, resource(ct), nil).Reasons...)
		}
		log.WarnContext(ctx, "tool call denied", "reasons", reasons)
		b.a.audit(ctx, b.scope, "tool.call", map[string]any{"tool": name, "decision": "deny", "reasons": reasons})
		return fmt.Sprintf("error: tool %q is not available to you", name)
	}

	args, err := t.Arguments(tc.Function.Arguments, b.bind)
	if errors.Is(err, tools.ErrBoundByModel) {
		log.WarnContext(ctx, "tool call denied", "reasons", []string{"model supplied a bound parameter"}, "error", err.Error())
		b.a.audit(ctx, b.scope, "tool.call", map[string]any{"tool": name, "decision": "deny", "reasons": []string{"model supplied a bound parameter"}})
		return "error: refused: " + err.Error() + "; it is set by the system, never by you"
	}
	if err != nil {
		log.InfoContext(ctx, "tool call rejected", "error", err.Error())
		b.a.audit(ctx, b.scope, "tool.call", map[string]any{"tool": name, "decision": "invalid_arguments"})
		return "error: " + err.Error()
	}
	decision := b.set.Authorize(b.principal, resource(t), args)
	log = log.With("args", argShape(args), "reasons", decision.Reasons)
	b.a.audit(ctx, b.scope, "tool.call", map[string]any{"tool": name, "args": argShape(args),
		"decision": map[bool]string{true: "allow", false: "deny"}[decision.Allow], "reasons": decision.Reasons, "errors": decision.Errors})
	if !decision.Allow {
		log.WarnContext(ctx, "tool call denied", "errors", decision.Errors)
		return fmt.Sprintf("error: denied by policy (%s)", strings.Join(decision.Reasons, ", "))
	}

	if b.a.Guard != nil {
		// Arguments leave for another system: they must not carry another
		// tenant's data either.
		if v := b.a.Guard.Check(b.scope.Tenant(), tc.Function.Arguments, nil); v.Blocked {
			log.WarnContext(ctx, "tool call blocked by the output guard", "reasons", v.Reasons)
			b.a.audit(ctx, b.scope, "guard.block", map[string]any{"tool": name, "reasons": v.Reasons})
			return "error: refused: the arguments carry data that may not leave"
		}
	}
	call := tools.Call{Tool: t, Scope: b.scope, Tenant: b.scope.Tenant(), Args: args, Bound: map[string]string{}, Secrets: map[tenant.SecretName]secret.Value{}}
	for param := range t.Bound {
		if s, ok := args[param].(string); ok {
			call.Bound[param] = s
		}
	}
	for _, n := range t.SecretNames() {
		v, ok := b.secrets[n]
		if !ok {
			log.WarnContext(ctx, "tool call failed", "error", "missing secret", "secret", n)
			return fmt.Sprintf("error: the tool is not configured for this tenant (secret %q is not set)", n)
		}
		call.Secrets[n] = v
	}
	exec, err := b.a.executor(t)
	if err != nil {
		log.ErrorContext(ctx, "tool call failed", "error", err.Error())
		return "error: the tool cannot be run"
	}
	res, err := exec.Execute(ctx, call)
	if err != nil {
		// Executor errors can name upstream hosts: the log gets them, the
		// model a generic message.
		log.WarnContext(ctx, "tool call failed", "error", b.red.String(err.Error()))
		return "error: the tool failed to run"
	}
	log.InfoContext(ctx, "tool call", "decision", "allow", "is_error", res.IsError)
	if res.IsError {
		return "error: " + res.Content
	}
	return res.Content
}

// bind gives a bound parameter its value from the Scope or the tenant's
// secrets; the model has no say.
func (b *toolbox) bind(source string) (string, error) {
	switch source {
	case tools.BindTenantID:
		return string(b.scope.Tenant()), nil
	case tools.BindUserID:
		return string(b.scope.User()), nil
	}
	if name, ok := strings.CutPrefix(source, tools.BindSecretPrefix); ok {
		if v, ok := b.secrets[tenant.SecretName(name)]; ok {
			return v.Reveal(), nil // injected: bound into the call's arguments
		}
		return "", fmt.Errorf("secret %q is not set", name)
	}
	return "", fmt.Errorf("unknown source %q", source)
}

func (a *Agent) executor(t *tools.Tool) (Executor, error) {
	var e Executor
	switch {
	case t.HTTP != nil:
		e = a.HTTP
	case t.MCP != nil:
		e = a.MCP
	case t.Builtin != "":
		e = a.Builtins[t.Builtin]
	}
	if e == nil {
		return nil, fmt.Errorf("no executor for tool %q", t.Name)
	}
	return e, nil
}

// argShape describes arguments without their values, for logs and audit.
func argShape(args map[string]any) []string {
	keys := slices.Sorted(maps.Keys(args))
	for i, k := range keys {
		keys[i] = k + ":" + jsonType(args[k])
	}
	return keys
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case nil:
		return "null"
	}
	return "other"
}
