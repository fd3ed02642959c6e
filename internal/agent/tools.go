package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
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
	// allowHosts is the profile's allow-list for links and images, in tool
	// arguments as in answers.
	allowHosts []string
	// authorized, when set (by tests), sees every call's arguments as
	// policy is asked about them.
	authorized func(tool string, args tools.Args)
}

// toolbox offers the profile's tools that the tenant's policy permits, with
// bound parameters hidden from the model.
func (a *Agent) toolbox(ctx context.Context, scope auth.Scope, profile Profile, secrets []store.Secret, red *redact.Redactor) *toolbox {
	b := &toolbox{a: a, scope: scope, set: profile.Policy, red: red, tools: map[string]*tools.Tool{}, allowHosts: profile.AllowedHosts,
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
			out[i] = toolMessage(tc, b.red.String(textnorm.StripInvisibleRuns(b.call(ctx, tc))))
		}()
	}
	wg.Wait()
	return out
}

func toolMessage(tc llm.ToolCall, content string) llm.Message {
	return llm.Message{Role: "tool", ToolCallID: tc.ID, Name: tc.Function.Name, Content: content}
}

// notAvailable is the whole answer to a call of a tool that was not offered:
// the same whether the tool does not exist, belongs to another tenant or is
// refused by policy, so that neither it nor the audit record tells them
// apart.
const notAvailable = "error: that tool is not available to you"

// call checks and runs one tool call and returns the text for the model.
// The arguments take one path: decoded once and checked key by key against
// the schema, their string values passed through the guard and the
// redactor, completed with the bound parameters and validated, authorized,
// and sent as the one canonical encoding policy saw.
func (b *toolbox) call(ctx context.Context, tc llm.ToolCall) string {
	name := tc.Function.Name
	t, offered := b.tools[name]
	if !offered {
		// The operator's log may name a catalog tool; a name the model made
		// up may carry a secret or a canary, so it appears only as a label.
		logName := tools.Opaque(name)
		if _, ok := b.a.Tools.Tool(name); ok {
			logName = name
		}
		b.a.Logger.WarnContext(ctx, "tool call denied", "tenant", b.scope.Tenant(), "tool", logName, "reasons", []string{"not offered to this agent"})
		// The tenant's log says "unknown" whatever the name: a label would
		// differ between names, and a catalog name would tell that the
		// tool exists.
		b.a.audit(ctx, b.scope, "tool.call", map[string]any{"tool": "unknown", "decision": "deny", "reasons": []string{"not offered to this agent"}})
		return notAvailable
	}
	log := b.a.Logger.With("tenant", b.scope.Tenant(), "tool", name)

	model, err := t.Decode(tc.Function.Arguments)
	if err != nil {
		return b.refuseArguments(ctx, log, name, err)
	}
	// The guard and the redactor run before the bound parameters are
	// filled (those are the runtime's own values: a parameter bound to a
	// secret would be redacted) and before policy, so that policy decides on
	// the value as rewritten: the one that is sent.
	if msg, ok := b.checkStrings(ctx, log, name, model); !ok {
		return msg
	}
	args, err := t.Complete(model, b.bind)
	if err != nil {
		return b.refuseArguments(ctx, log, name, err)
	}
	if b.authorized != nil {
		b.authorized(name, args)
	}
	shape := argShape(t, args.Value)
	decision := b.set.Authorize(b.principal, resource(t), args.Value)
	log = log.With("args", shape, "reasons", decision.Reasons)
	b.a.audit(ctx, b.scope, "tool.call", map[string]any{"tool": name, "args": shape,
		"decision": map[bool]string{true: "allow", false: "deny"}[decision.Allow], "reasons": decision.Reasons, "errors": decision.Errors})
	if !decision.Allow {
		log.WarnContext(ctx, "tool call denied", "errors", decision.Errors)
		return fmt.Sprintf("error: denied by policy (%s)", strings.Join(decision.Reasons, ", "))
	}

	call := tools.Call{Tool: t, Scope: b.scope, Tenant: b.scope.Tenant(), Args: args.Value, Body: args.JSON, Bound: map[string]string{}, Secrets: map[tenant.SecretName]secret.Value{}}
	for param := range t.Bound {
		if s, ok := args.Value[param].(string); ok {
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

// refuseArguments answers a call whose arguments were refused, recording
// why. err names declared keys only (tools.ArgumentError), so it may be
// logged; the model gets it to correct its call.
func (b *toolbox) refuseArguments(ctx context.Context, log *slog.Logger, name string, err error) string {
	var ae *tools.ArgumentError
	if !errors.As(err, &ae) {
		// Filling a bound parameter failed: the tool is not configured.
		log.WarnContext(ctx, "tool call failed", "error", err.Error())
		b.a.audit(ctx, b.scope, "tool.call", map[string]any{"tool": name, "decision": "error", "reasons": []string{"bound parameter not set"}})
		return "error: the tool is not configured for this tenant (" + err.Error() + ")"
	}
	record := map[string]any{"tool": name, "reasons": []string{ae.Reason}}
	if ae.Path != "" {
		record["at"] = ae.Path
	}
	switch ae.Reason {
	case tools.ReasonLookAlike, tools.ReasonBound:
		// An attempt to reach a parameter by another spelling, or to set
		// one the runtime owns: a denial, whatever the value.
		record["decision"] = "deny"
		log.WarnContext(ctx, "tool call denied", "reasons", []string{ae.Reason}, "at", ae.Path)
	default:
		record["decision"] = "invalid_arguments"
		log.InfoContext(ctx, "tool call rejected", "reasons", []string{ae.Reason}, "at", ae.Path)
	}
	b.a.audit(ctx, b.scope, "tool.call", record)
	if ae.Reason == tools.ReasonBound {
		return "error: refused: " + ae.Error() + "; it is set by the system, never by you"
	}
	return "error: refused: " + ae.Error()
}

// checkStrings passes every string of the model's decoded arguments, and
// every key, through the guard and the redactor: the values as the tool
// server will read them, not the JSON text where escapes hide them. A
// rewrite of a value (a link or image to a host not allowed, a secret) is
// applied; a key that would change, or a block, refuses the call.
func (b *toolbox) checkStrings(ctx context.Context, log *slog.Logger, name string, model map[string]any) (string, bool) {
	const refused = "error: refused: the arguments carry data that may not leave"
	var blocked, rewritten, values []string
	err := tools.MapStrings(model, func(s string, key bool) (string, error) {
		out := textnorm.StripInvisibleRuns(s)
		if out != s {
			rewritten = append(rewritten, "invisible padding removed")
		}
		if !key {
			defer func() { values = append(values, out) }()
		}
		if b.a.Guard != nil {
			// Arguments leave for another system: they must not carry
			// another tenant's data, nor links the tenant does not allow.
			v := b.a.Guard.Check(b.scope.Tenant(), out, b.allowHosts)
			if v.Blocked {
				blocked = v.Reasons
				return "", errArgBlocked
			}
			if v.Text != out {
				rewritten = append(rewritten, v.Reasons...)
				out = v.Text
			}
		}
		if r := b.red.String(out); r != out {
			rewritten = append(rewritten, "tenant secret redacted")
			out = r
		}
		if key && out != s {
			blocked = []string{"argument key carries data that may not leave"}
			return "", errArgBlocked
		}
		return out, nil
	})
	if err == nil && b.a.Guard != nil && len(values) > 1 {
		// A canary or secret cut in two and spread over two strings reaches
		// the tool server whole all the same: check the strings joined.
		for _, text := range pairs(values) {
			if v := b.a.Guard.Check(b.scope.Tenant(), text, b.allowHosts); v.Blocked {
				blocked, err = v.Reasons, errArgBlocked
				break
			}
		}
	}
	if err != nil {
		blocked = slices.Compact(slices.Sorted(slices.Values(blocked)))
		log.WarnContext(ctx, "tool call blocked by the output guard", "reasons", blocked)
		b.a.audit(ctx, b.scope, "guard.block", map[string]any{"tool": name, "reasons": blocked})
		return refused, false
	}
	if len(rewritten) > 0 {
		rewritten = slices.Compact(slices.Sorted(slices.Values(rewritten)))
		log.InfoContext(ctx, "tool call arguments rewritten by the output guard", "reasons", rewritten)
		b.a.audit(ctx, b.scope, "guard.rewrite", map[string]any{"tool": name, "reasons": rewritten})
	}
	return "", true
}

// maxPaired is how many string values of one call are checked joined pairwise;
// beyond it, all of them are checked joined in two orders.
const maxPaired = 12

// pairs returns the texts that join the strings of one call two at a time,
// in both orders, so a token split across two of them is found whole; with
// more than maxPaired strings, all of them joined in sorted and reverse
// order (a split over three or more strings, or over two far apart in that
// order, is not found then).
func pairs(values []string) []string {
	if len(values) > maxPaired {
		sorted := slices.Sorted(slices.Values(values))
		joined := strings.Join(sorted, "")
		slices.Reverse(sorted)
		return []string{joined, strings.Join(sorted, "")}
	}
	var out []string
	for i, a := range values {
		for j, b := range values {
			if i != j && a != "" && b != "" {
				out = append(out, a+b)
			}
		}
	}
	return out
}

// errArgBlocked stops the walk over arguments at the first block.
var errArgBlocked = errors.New("tool arguments blocked")

// argShape describes arguments without their values, for logs and audit:
// declared keys by name, any other key by its label.
func argShape(t *tools.Tool, args map[string]any) []string {
	keys := make([]string, 0, len(args))
	for k, v := range args {
		if !t.Declares(k) {
			k = tools.Opaque(k)
		}
		keys = append(keys, k+":"+jsonType(v))
	}
	slices.Sort(keys)
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
