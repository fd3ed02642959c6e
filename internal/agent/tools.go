package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/guard"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/label"
	"github.com/bulkhead-ai/bulkhead/internal/layers"
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
	// client holds the request's client tools by the name the model
	// calls them (clienttools.go).
	client map[string]*tools.Tool
	// oneCall returns at most one client call per answer (the legacy
	// functions API); a step calling more is held back (clientStep).
	oneCall bool
	offered []llm.Tool
	// allowHosts is the profile's allow-list for links and images, in tool
	// arguments as in answers.
	allowHosts []string
	// inputs is what the turn's own inputs carry so far (see inputs.go),
	// for the arguments of external tools.
	inputs *guard.Inputs
	// read is the join of the labels of what the model has read so far
	// (labels.go); every decision is asked with it. It changes only
	// between steps, never while a step's calls run; the step's results
	// are noted in pending meanwhile.
	read    label.Label
	pending pending
	// refs are the turn's held results (refs.go).
	refs refs
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
	f := t.Flow()
	return policy.Resource{Name: t.Name, Scope: string(t.Scope), Owner: t.Owner, Consequential: f.Consequential, Egress: f.Egress}
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
			text := b.call(ctx, tc)
			if layers.Off("guard.toolresults") { // redteamswitch builds only: the raw result reaches the model
				out[i] = toolMessage(tc, text)
				return
			}
			out[i] = toolMessage(tc, b.red.String(textnorm.StripInvisibleRuns(text)))
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
// Every call, from a model step or an MCP client, is observed here.
func (b *toolbox) call(ctx context.Context, tc llm.ToolCall) string {
	start := time.Now()
	text, tool, decision := b.decide(ctx, tc)
	b.a.Observer.ToolCall(ctx, tool, decision, time.Since(start))
	return text
}

// decide is call, also returning the tool's name for metrics ("unknown" if
// it was not offered) and the decision.
func (b *toolbox) decide(ctx context.Context, tc llm.ToolCall) (text, tool, decision string) {
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
		b.a.audit(ctx, b.scope, "tool.call", b.labelFields(map[string]any{"tool": "unknown", "decision": "deny", "reasons": []string{"not offered to this agent"}}, b.read))
		return notAvailable, "unknown", DecisionDeny
	}
	log := b.a.Logger.With("tenant", b.scope.Tenant(), "tool", name)
	args, used, log, msg, ok := b.authorize(ctx, log, t, tc.Function.Arguments)
	if !ok {
		return msg, name, DecisionDeny
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
			return fmt.Sprintf("error: the tool is not configured for this tenant (secret %q is not set)", n), name, DecisionError
		}
		call.Secrets[n] = v
	}
	exec, err := b.a.executor(t)
	if err != nil {
		log.ErrorContext(ctx, "tool call failed", "error", err.Error())
		return "error: the tool cannot be run", name, DecisionError
	}
	start := time.Now()
	res, err := exec.Execute(ctx, call)
	if t.Builtin != "" {
		// The builtins search the knowledge base and memories; a whole
		// tool step is the tools stage (agent.run).
		b.a.observe(ctx, StageRetrieval, start)
	}
	if errors.Is(err, tools.ErrPlaceholderValue) {
		// A runtime value (the chat's user, a secret) would leave its URL
		// segment or add a header parameter: a denial, audited as such.
		// The message names placeholders, never values.
		log.WarnContext(ctx, "tool call denied", "reasons", []string{tools.ReasonPlaceholder}, "error", b.red.String(err.Error()))
		b.a.audit(ctx, b.scope, "tool.call", b.labelFields(map[string]any{"tool": name, "decision": "deny", "reasons": []string{tools.ReasonPlaceholder}}, b.read.Join(used)))
		return "error: the tool cannot be called with this request's values (" + tools.ReasonPlaceholder + ")", name, DecisionDeny
	}
	if err != nil {
		log.WarnContext(ctx, "tool call failed", "error", b.red.String(err.Error()))
		if t.Builtin != "" && errors.Is(err, kind.Invalid) {
			// A builtin refusing its arguments says why, in words of the
			// runtime's own, so the model can correct them; words that may
			// quote held values filled in (an embedder's 400) are held.
			text := "error: " + b.red.String(err.Error())
			if used != (label.Label{}) {
				text = "error: the tool refused its arguments; its message is " + b.refs.hold(text, label.Result(t.Flow().Result).Join(used), false)
			}
			return text, name, DecisionAllow
		}
		// Other executors' errors can name upstream hosts: the log gets
		// them, the model a generic message.
		return "error: the tool failed to run", name, DecisionAllow
	}
	log.InfoContext(ctx, "tool call", "decision", "allow", "is_error", res.IsError)
	content := res.Content
	if res.IsError {
		content = "error: " + content
	}
	if res.Truncated {
		// The cut may have left the start of a secret at the end, which
		// no redaction of the whole can recognise: redact it as a stream
		// cut short, which withholds any tail a secret could still begin
		// in.
		content = b.red.Stream().Write(textnorm.StripInvisibleRuns(content)) + tools.TruncatedMark
	}
	// What the tool returns is as confidential as it declares, and as the
	// held values it was given; it is untrusted.
	read := label.Result(t.Flow().Result).Join(used)
	// A result computed from held values is held too, whatever the tool
	// declares: a tool that echoes, quotes or translates what it was sent
	// would otherwise hand the held text to the model. (A held value's
	// label is always untrusted, so used is zero only when none was used.)
	if t.Held || used != (label.Label{}) {
		// An error result is the tool's text too (an HTTP error page, an
		// MCP isError): the model reads that it failed, never what it said.
		ref := b.refs.hold(b.red.String(textnorm.StripInvisibleRuns(content)), read, t.Builtin == "")
		if res.IsError {
			ref = "error: the tool reported an error; its message is " + ref
		}
		return ref, name, DecisionAllow
	}
	b.pending.note(read)
	return content, name, DecisionAllow
}

// authorize takes a call's raw arguments on the checked path: decoded once
// and checked key by key against the schema, their string values passed
// through the guard and the redactor, completed with the bound parameters
// and validated, and authorized, the decision audited. References to held
// results are filled in first (refs.go); used is the join of their labels,
// which the decision sees joined with the turn's. Refused, it returns the
// text for the model and false.
func (b *toolbox) authorize(ctx context.Context, log *slog.Logger, t *tools.Tool, raw string) (_ tools.Args, used label.Label, _ *slog.Logger, _ string, _ bool) {
	args, log, msg, ok := b.authorizeWith(ctx, log, t, raw, &used)
	return args, used, log, msg, ok
}

func (b *toolbox) authorizeWith(ctx context.Context, log *slog.Logger, t *tools.Tool, raw string, used *label.Label) (tools.Args, *slog.Logger, string, bool) {
	name := t.Name
	model, err := t.Decode(raw)
	if err != nil {
		return tools.Args{}, log, b.refuseArguments(ctx, log, name, err), false
	}
	resolved, l, err := b.refs.resolve(model)
	if err != nil {
		log.WarnContext(ctx, "tool call denied", "reasons", []string{reasonUnknownRef})
		b.a.audit(ctx, b.scope, "tool.call", b.labelFields(map[string]any{"tool": name, "decision": "deny", "reasons": []string{reasonUnknownRef}}, b.read))
		return tools.Args{}, log, "error: refused: " + err.Error(), false
	}
	if l != (label.Label{}) && t.Scope == tools.ScopeClient {
		// The client gets the call as checked, values filled in, and the
		// session keeps it: the value would be in the next model request
		// (the client's copy or the history's).
		log.WarnContext(ctx, "tool call denied", "reasons", []string{reasonRefToClient})
		b.a.audit(ctx, b.scope, "tool.call", b.labelFields(map[string]any{"tool": name, "decision": "deny", "reasons": []string{reasonRefToClient}}, b.read.Join(l)))
		return tools.Args{}, log, "error: refused: a held value cannot be passed to a client tool; to show it to the user, name its reference in your answer", false
	}
	model, *used = resolved.(map[string]any), l
	read := b.read.Join(l)
	// The guard and the redactor run before the bound parameters are
	// filled (those are the runtime's own values: a parameter bound to a
	// secret would be redacted) and before policy, so that policy decides on
	// the value as rewritten: the one that is sent.
	if msg, ok := b.checkStrings(ctx, log, t, model); !ok {
		return tools.Args{}, log, msg, false
	}
	args, err := t.Complete(model, b.bind)
	if err != nil {
		msg := b.refuseArguments(ctx, log, name, err)
		var ae *tools.ArgumentError
		if l != (label.Label{}) && errors.As(err, &ae) {
			// Schema errors quote the value (maxLength: "…" contains…): with
			// held values filled in, the model gets the reason only.
			msg = "error: refused: the arguments, with the held values filled in: " + ae.Reason
		}
		return tools.Args{}, log, msg, false
	}
	if msg, ok := b.checkEncoding(ctx, log, t, args); !ok {
		return tools.Args{}, log, msg, false
	}
	if b.authorized != nil {
		b.authorized(name, args)
	}
	shape := argShape(t, args.Value)
	decision := b.set.AuthorizeLabeled(b.principal, resource(t), args.Value, read)
	log = log.With("args", shape, "reasons", decision.Reasons, "integrity", read.Integrity.String(), "confidentiality", read.Confidentiality.String())
	record := map[string]any{"tool": name, "args": shape,
		"decision": map[bool]string{true: "allow", false: "deny"}[decision.Allow], "reasons": decision.Reasons, "errors": decision.Errors}
	if l != (label.Label{}) {
		record["held_values"] = true
	}
	b.a.audit(ctx, b.scope, "tool.call", flowFields(b.labelFields(record, read), t.Flow()))
	if !decision.Allow {
		log.WarnContext(ctx, "tool call denied", "errors", decision.Errors)
		if slices.Contains(decision.Errors, policy.InexactError) {
			return tools.Args{}, log, "error: denied by policy: an argument is a number with more than 4 decimal places or beyond Cedar's range; send it with at most 4", false
		}
		return tools.Args{}, log, fmt.Sprintf("error: denied by policy (%s)", strings.Join(decision.Reasons, ", ")), false
	}
	return args, log, "", true
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
		b.a.audit(ctx, b.scope, "tool.call", b.labelFields(map[string]any{"tool": name, "decision": "error", "reasons": []string{"bound parameter not set"}}, b.read))
		return "error: the tool is not configured for this tenant (" + err.Error() + ")"
	}
	record := b.labelFields(map[string]any{"tool": name, "reasons": []string{ae.Reason}}, b.read)
	if ae.Path != "" {
		record["at"] = ae.Path
	}
	switch ae.Reason {
	case tools.ReasonLookAlike, tools.ReasonBound, tools.ReasonReserved, tools.ReasonControl,
		tools.ReasonPrototype, tools.ReasonNested, tools.ReasonQueryName:
		// An attempt to reach a parameter by another spelling (a nested
		// copy, a C string cut at NUL, a query name a parser folds), to
		// set one the runtime or the tool's URL owns, or to pollute a
		// JavaScript server's prototypes: a denial, whatever the value.
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
// applied; a key that would change, or a block, refuses the call. Then the
// pieces are checked joined (see joinedViews and pairs), since a tool
// server that reads the fields one after the other, or concatenates them,
// gets back what was cut apart; a hit there refuses the call, as no
// rewrite can cut across pieces.
func (b *toolbox) checkStrings(ctx context.Context, log *slog.Logger, t *tools.Tool, model map[string]any) (string, bool) {
	if layers.Off("guard.toolargs") { // redteamswitch builds only; see package layers
		return "", true
	}
	name := t.Name
	var blocked, rewritten []string
	var leaked guard.Verdict
	err := tools.MapStrings(model, func(s string, key bool) (string, error) {
		out := textnorm.StripInvisibleRuns(s)
		if out != s {
			rewritten = append(rewritten, "invisible padding removed")
		}
		// Arguments leave for another system: they must not carry another
		// tenant's data, nor links the tenant does not allow.
		v := b.check(out)
		if v.Blocked {
			blocked, leaked = v.Reasons, v
			return "", errArgBlocked
		}
		if v.Text != out {
			rewritten = append(rewritten, v.Reasons...)
			out = v.Text
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
	if err == nil {
		views := joinedViews(t, model)
		if blocked, leaked = b.checkJoined(views.joined(), reasonSplitSecret); blocked == nil {
			// Every two leaves, keys included, when there are few; else
			// every two values.
			paired := views.all
			if len(paired) > maxPaired {
				paired = views.values
			}
			if len(paired) > 1 {
				blocked, leaked = b.checkJoined(pairs(paired), reasonSplitSecret)
			}
		}
	}
	if blocked != nil {
		return b.refuseBlocked(ctx, log, name, blocked, leaked), false
	}
	if len(rewritten) > 0 {
		rewritten = slices.Compact(slices.Sorted(slices.Values(rewritten)))
		log.InfoContext(ctx, "tool call arguments rewritten by the output guard", "reasons", rewritten)
		b.a.audit(ctx, b.scope, "guard.rewrite", map[string]any{"tool": name, "reasons": rewritten})
	}
	return "", true
}

// Reasons for refusing arguments whose pieces, or whose encoding, hold the
// tenant's own secret: found only once the pieces are joined (or written
// as the encoder writes them), so no rewrite of one piece can remove it.
const (
	reasonSplitSecret   = "tenant secret split over arguments"
	reasonEncodedSecret = "tenant secret in the encoded arguments"
)

// checkEncoding checks the call as it is sent: the canonical encoding,
// after the bound parameters were filled. The strings were checked before;
// this finds what they could not show: numbers (a JSON number whose digits
// round to the secret's is written by the encoder as the secret's digits),
// and pieces the encoding puts side by side. A hit refuses the call.
//
// The guard reads the exact bytes. The redactor reads them without the
// parameters bound to the tenant's secrets, whose values are injected on
// purpose; a secret formed across such a value and its neighbour is not
// found.
func (b *toolbox) checkEncoding(ctx context.Context, log *slog.Logger, t *tools.Tool, args tools.Args) (string, bool) {
	enc := string(args.JSON)
	if v := b.check(enc); v.Blocked {
		return b.refuseBlocked(ctx, log, t.Name, v.Reasons, v), false
	}
	own := args.JSON
	if bound := boundSecrets(t); len(bound) > 0 {
		rest := make(map[string]any, len(args.Value))
		for k, v := range args.Value {
			if !bound[k] {
				rest[k] = v
			}
		}
		var err error
		if own, err = tools.Encode(rest); err != nil {
			return b.refuseBlocked(ctx, log, t.Name, []string{"arguments cannot be encoded"}, guard.Verdict{}), false
		}
	}
	if s := string(own); b.red.String(s) != s {
		return b.refuseBlocked(ctx, log, t.Name, []string{reasonEncodedSecret}, guard.Verdict{}), false
	}
	return "", true
}

// boundSecrets is the set of t's parameters bound to a tenant secret.
func boundSecrets(t *tools.Tool) map[string]bool {
	var out map[string]bool
	for param, source := range t.Bound {
		if strings.HasPrefix(source, tools.BindSecretPrefix) {
			if out == nil {
				out = map[string]bool{}
			}
			out[param] = true
		}
	}
	return out
}

// checkJoined passes each text through the guard and the redactor's check
// and returns the reasons of the first hit (nil for none) with the guard's
// verdict, for the owners of what it found. Only a block or a secret
// counts: a rewrite (a link) computed on joined pieces could not be
// applied to them, and a link split over fields renders in none of them.
func (b *toolbox) checkJoined(texts []string, secretReason string) ([]string, guard.Verdict) {
	for _, text := range texts {
		if v := b.check(text); v.Blocked {
			return v.Reasons, v
		}
		if b.red.String(text) != text {
			return []string{secretReason}, guard.Verdict{}
		}
	}
	return nil, guard.Verdict{}
}

// check passes text bound for a tool through the guard, with what the
// turn's inputs carry. (What a builtin tool would store is screened again
// where it is stored: memory.Screen.)
func (b *toolbox) check(text string) guard.Verdict {
	return b.a.Guard.CheckFrom(b.scope.Tenant(), text, b.allowHosts, b.inputs)
}

// refuseBlocked refuses a call whose arguments carry data that may not
// leave, recording why (reasons name kinds and hosts, never content) and
// telling the owners of what was caught.
func (b *toolbox) refuseBlocked(ctx context.Context, log *slog.Logger, name string, reasons []string, v guard.Verdict) string {
	reasons = slices.Compact(slices.Sorted(slices.Values(reasons)))
	log.WarnContext(ctx, "tool call blocked by the output guard", "reasons", reasons)
	b.a.audit(ctx, b.scope, "guard.block", map[string]any{"tool": name, "reasons": reasons})
	b.a.Observer.Event(ctx, EventGuardBlock, GuardKind(reasons))
	b.a.recordLeaks(ctx, b.scope, v, false)
	return "error: refused: the arguments carry data that may not leave"
}

// views are the leaves of one call's arguments (strings, numbers as the
// encoder writes them, and keys), in the order the canonical encoding
// writes them: object keys sorted, arrays in order, depth first. Top-level
// keys the tool declares are left out: the operator wrote them, so they
// carry nothing of the model's, and between two pieces they would only
// keep the pieces apart.
type views struct {
	all, values, keys []string
}

func joinedViews(t *tools.Tool, model map[string]any) views {
	var v views
	for _, k := range slices.Sorted(maps.Keys(model)) {
		if !t.Declares(k) {
			v.all, v.keys = append(v.all, k), append(v.keys, k)
		}
		v.walk(model[k])
	}
	return v
}

func (v *views) walk(x any) {
	switch x := x.(type) {
	case string:
		v.all, v.values = append(v.all, x), append(v.values, x)
	case float64:
		if b, err := tools.Encode(x); err == nil {
			v.all, v.values = append(v.all, string(b)), append(v.values, string(b))
		}
	case []any:
		for _, e := range x {
			v.walk(e)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			v.all, v.keys = append(v.all, k), append(v.keys, k)
			v.walk(x[k])
		}
	}
}

// joined returns the three views joined, each with a single space between
// pieces: every leaf (a token cut over a key and its value, or over keys
// made of punctuation that read as nothing), the values alone (cut over
// several fields a server reads in turn) and the keys alone. The matchers'
// squeezed view reads through the spaces, so a token cut into any number
// of pieces is found whole when its pieces are consecutive in one view.
//
// Not found: pieces that a server reassembles in another order than the
// encoding's with three or more of them (two are covered by pairs), or
// with other letters or digits between them in every view (a piece in a
// key, the next in a value two fields on).
//
// Each view is also read literally when it holds an escape introducer:
// the matchers decode escapes (%XX, \xXX, &…;), so the digits after a
// '%' can vanish into the decoded byte ("…token-%1234"), while a reader
// that decodes nothing sees them, and the value.
func (v views) joined() []string {
	out := []string{strings.Join(v.all, " ")}
	if len(v.values) > 1 {
		out = append(out, strings.Join(v.values, " "))
	}
	if len(v.keys) > 1 {
		out = append(out, strings.Join(v.keys, " "))
	}
	for _, text := range out {
		if strings.ContainsAny(text, `%\&`) {
			out = append(out, literal.Replace(text))
		}
	}
	return out
}

// literal blanks the characters that start an escape.
var literal = strings.NewReplacer("%", " ", `\`, " ", "&", " ")

// maxPaired is how many leaves (or, beyond it, values) of one call are
// checked joined pairwise; beyond it, all of them are checked joined in
// two orders.
const maxPaired = 12

// pairs returns the texts that join the pieces of one call two at a time,
// in both orders, so a token split across two of them is found whole
// whatever the order a server puts them back in, and whatever lies between
// them in the encoding: what the joined views miss for two pieces (a value
// before its key, two values far apart). With more than maxPaired pieces,
// all of them joined in sorted and reverse order (a split over two pieces
// far apart in that order is not found then).
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
