// Package agent runs one turn of a tenant's agent: it builds the model's
// context from the caller's own profile, history and request, calls the model
// and records the turn. Everything it reads is chosen by the Scope, never by
// the model or the request body.
package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/cache"
	"github.com/bulkhead-ai/bulkhead/internal/guard"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/label"
	"github.com/bulkhead-ai/bulkhead/internal/layers"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/policy"
	"github.com/bulkhead-ai/bulkhead/internal/quota"
	"github.com/bulkhead-ai/bulkhead/internal/redact"
	"github.com/bulkhead-ai/bulkhead/internal/requestid"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/textnorm"
)

// History is the per-tenant session store.
type History interface {
	AppendMessages(ctx context.Context, scope auth.Scope, session tenant.SessionID, msgs []store.Message) error
	Messages(ctx context.Context, scope auth.Scope, session tenant.SessionID, limit int) ([]store.Message, error)
}

// Models resolves "provider/model" names.
type Models interface {
	Resolve(model string) (llm.Route, error)
}

// Secrets reads a tenant's credentials, decrypted.
type Secrets interface {
	Secrets(ctx context.Context, scope auth.Scope) ([]store.Secret, error)
}

// Profile is the agent configuration a turn runs with.
type Profile struct {
	Name string
	// ID is the model as the client named it: Name, or
	// "<Name>/<provider>/<model>" when the request picked one of the
	// profile's models (Prepare), which Model then is.
	ID           string
	SystemPrompt string
	Model        string // "provider/model"
	// Fallbacks are "provider/model" names tried in order when Model's
	// provider is limiting, failing or slow (see chatChain); at most
	// MaxFallbacks.
	Fallbacks []string
	// KeySecret names the tenant secret holding the model provider's API key
	// (bring your own key); empty means the provider's own setting.
	// KeyProvider is the provider it is a key of: the profile's own model's,
	// which a picked model need not share (empty: Model's).
	KeySecret   tenant.SecretName
	KeyProvider string
	// Tools names the catalog tools the profile offers, and Policy is the
	// tenant's compiled policy set that every offer and call must pass. With
	// no Policy no tool is offered.
	Tools  []string
	Policy *policy.Set
	// NoClientTools refuses requests that declare client tools.
	NoClientTools bool
	// Limits are the tenant's; every turn is admitted against them.
	Limits quota.Limits
	// NoCache turns the response cache off; CacheToolAnswers lets answers
	// that used tools be cached. Version changes whenever anything that
	// shapes answers (profile, policy) changes.
	NoCache, CacheToolAnswers bool
	Version                   string
	// AllowedHosts may appear in links and images of answers; Canary is
	// planted in the system prompt, to be recognized if it ever leaks.
	AllowedHosts []string
	Canary       string
}

// OutputGuard checks everything that leaves: answers and tool arguments,
// knowing what the turn's own inputs carry (see inputs.go).
type OutputGuard interface {
	Inputs(id tenant.ID, base *guard.Inputs, texts ...string) *guard.Inputs
	CheckFrom(id tenant.ID, text string, allowHosts []string, in *guard.Inputs) guard.Verdict
	StreamFrom(id tenant.ID, allowHosts []string, in *guard.Inputs) *guard.Stream
}

// withheld replaces an answer the guard blocked.
const withheld = "[This answer was withheld: it contained data this assistant may not share.]"

// ResponseCache holds answers per tenant, sealed with the tenant's key.
type ResponseCache interface {
	Get(ctx context.Context, c *keyring.Cipher, req cache.Request) (cache.Value, bool, error)
	Put(ctx context.Context, c *keyring.Cipher, req cache.Request, v cache.Value) error
}

// Ciphers gives a tenant's cipher.
type Ciphers interface {
	Cipher(ctx context.Context, inc tenant.Incarnation) (*keyring.Cipher, error)
}

// Quota admits turns against a tenant's limits.
type Quota interface {
	Admit(ctx context.Context, inc tenant.Incarnation, l quota.Limits) (release func(), err error)
	Spend(ctx context.Context, inc tenant.Incarnation, l quota.Limits, tokens int) error
}

// Meter records what each model call used and cost, and holds turns to
// the tenant's money budgets.
type Meter interface {
	// CheckSpend refuses a turn of scope (a *quota.LimitedError) when a
	// money budget of l is spent; any other error also denies.
	CheckSpend(ctx context.Context, scope auth.Scope, l quota.Limits) error
	// Record adds one model call of model ("provider/model") for scope.
	Record(scope auth.Scope, model string, u llm.Usage)
}

// Turn is one request to the agent.
type Turn struct {
	Messages    []llm.Message    // new messages from the client
	Session     tenant.SessionID // empty: no server-side history
	MaxTokens   int              // 0: provider default
	Temperature *float64         // nil: provider default
	// Options are the client's other request fields, sent to the provider
	// on every model call of the turn. A ToolChoice must name an offered
	// tool; with no tool offered, "none" and "auto" (and ParallelToolCalls)
	// mean nothing and are not sent, and anything else is refused.
	Options llm.Options
	// ClientTools are the tools the client declared and runs itself (see
	// clienttools.go); a call to one ends the turn with finish reason
	// "tool_calls", the checked calls in Result.Message.ToolCalls.
	ClientTools []llm.Tool
	// LegacyFunctions marks a request of OpenAI's legacy functions API: at
	// most one client call is returned per answer, tool choice errors name
	// function_call, and function results without a call id are linked to
	// their calls (linkLegacy).
	LegacyFunctions bool
	// NoCacheRead skips the response cache lookup (Cache-Control: no-cache);
	// NoCacheWrite keeps the answer out of it (no-store).
	NoCacheRead, NoCacheWrite bool
	OnDelta                   func(string) error // non-nil: stream assistant content
	// OnStart, if set with OnDelta, is called when the answer is certain to
	// begin: the provider accepted a call (cached false), or the cache
	// answers (cached true). It may be called more than once.
	OnStart func(cached bool)
}

// Result is the agent's answer.
type Result struct {
	Message      llm.Message
	FinishReason string
	// Usage is what the answer cost upstream: on a cache hit, what it cost
	// when it was first made (nothing is spent again).
	Usage  llm.Usage
	Cached bool // served from the response cache
	// Model and SystemFingerprint are what the provider reported for the
	// last model call.
	Model, SystemFingerprint string
}

// LimitedError reports that the model provider refused a call with 429. It
// is a kind.Limited error whose message holds nothing the upstream said;
// RetryAfter is the provider's Retry-After, when HasRetryAfter.
type LimitedError struct {
	RetryAfter    time.Duration
	HasRetryAfter bool
}

func (e *LimitedError) Error() string {
	return "rate limited: the model provider is limiting requests; try again later"
}

// Unwrap makes a LimitedError a kind.Limited.
func (e *LimitedError) Unwrap() error { return kind.Limited }

// Deps is what an Agent needs.
type Deps struct {
	Models  Models
	History History
	Secrets Secrets
	Tools   Catalog
	// Executors run tools by kind: HTTP, MCP, and builtins by name.
	HTTP, MCP Executor
	Builtins  map[string]Executor
	Logger    *slog.Logger // nil: discard
	// HistoryMessages bounds how much stored history the model sees.
	HistoryMessages int
	// MaxSteps bounds model calls per turn when tools are used; 0 means 8.
	MaxSteps int
	// Quota admits each turn. Required: NoQuota admits everything.
	Quota Quota
	// Meter records usage and spend and enforces money budgets; nil
	// records nothing, and then a money budget cannot be enforced: a turn
	// under one is refused.
	Meter Meter
	// Cache and Ciphers serve repeated questions; nil Cache disables it.
	Cache   ResponseCache
	Ciphers Ciphers
	// Audit records decisions in the tenant's log. Required: NoAudit
	// records nothing.
	Audit Auditor
	// Guard checks answers and tool arguments. Required: NoGuard checks
	// nothing.
	Guard OutputGuard
	// Observer sees the turn's stages and decisions, for metrics and
	// traces; nil is NoObserver.
	Observer Observer
	// Definitions and Policies give Prepare the tenant's profiles and
	// compiled policy; without them Prepare fails.
	Definitions Definitions
	Policies    Policies
}

// The explicit opt-outs of the required layers, like slog.DiscardHandler: a
// nil layer is refused by New, so switching one off is always written down.
var (
	// NoGuard lets every answer and tool argument through unchecked.
	NoGuard OutputGuard = noGuard{}
	// NoQuota admits every turn and counts nothing.
	NoQuota Quota = noQuota{}
	// NoAudit records nothing.
	NoAudit Auditor = noAudit{}
)

type noGuard struct{}

func (noGuard) Inputs(tenant.ID, *guard.Inputs, ...string) *guard.Inputs { return nil }

func (noGuard) CheckFrom(_ tenant.ID, text string, _ []string, _ *guard.Inputs) guard.Verdict {
	return guard.Verdict{Text: text}
}

// StreamFrom is never called: the agent does not stream through NoGuard.
func (noGuard) StreamFrom(tenant.ID, []string, *guard.Inputs) *guard.Stream { return nil }

type noQuota struct{}

func (noQuota) Admit(context.Context, tenant.Incarnation, quota.Limits) (func(), error) {
	return func() {}, nil
}
func (noQuota) Spend(context.Context, tenant.Incarnation, quota.Limits, int) error { return nil }

type noAudit struct{}

func (noAudit) Record(auth.Scope, audit.Event) error            { return nil }
func (noAudit) RecordForeignLeak(tenant.ID, string, bool) error { return nil }

// Auditor appends to a tenant's audit log.
type Auditor interface {
	Record(scope auth.Scope, e audit.Event) error
	// RecordForeignLeak tells owner, in its own log, that its data (kind:
	// "canary" or "secret") was caught leaving towards another tenant,
	// without naming that tenant. The agent holds no Scope for owner, and
	// this is all it may write there.
	RecordForeignLeak(owner tenant.ID, kind string, streamed bool) error
}

// audit records e, logging (never hiding) a failure to record.
func (a *Agent) audit(ctx context.Context, scope auth.Scope, typ string, data map[string]any) {
	start := time.Now()
	err := a.Audit.Record(scope, audit.Event{Type: typ, Data: requestid.Annotate(ctx, data)})
	a.observe(ctx, StageAudit, start)
	if err != nil {
		a.Logger.ErrorContext(ctx, "audit record failed", "tenant", scope.Tenant(), "type", typ, "error", err.Error())
	}
}

// Agent runs turns. It is safe for concurrent use.
type Agent struct {
	Deps
}

// New returns an Agent. Guard, Quota and Audit are required: a missing
// security layer is an error, never a layer silently switched off (pass
// NoGuard, NoQuota or NoAudit to mean it).
func New(d Deps) (*Agent, error) {
	var missing []string
	for _, dep := range []struct {
		name string
		nil  bool
	}{
		{"Guard", d.Guard == nil}, {"Quota", d.Quota == nil}, {"Audit", d.Audit == nil},
	} {
		if dep.nil {
			missing = append(missing, dep.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("new agent: %s required (use agent.NoGuard, NoQuota or NoAudit to opt out explicitly)", strings.Join(missing, ", "))
	}
	if d.Cache != nil && d.Ciphers == nil {
		return nil, errors.New("new agent: a Cache needs Ciphers to seal its entries")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	d.Logger = slog.New(requestid.Handler(d.Logger.Handler()))
	if d.MaxSteps <= 0 {
		d.MaxSteps = 8
	}
	if d.Observer == nil {
		d.Observer = NoObserver
	}
	return &Agent{Deps: d}, nil
}

// Run executes one turn for scope with profile.
func (a *Agent) Run(ctx context.Context, scope auth.Scope, profile Profile, turn Turn) (Result, error) {
	if !scope.Valid() {
		return Result{}, fmt.Errorf("run agent: %w", store.ErrNoScope)
	}
	if err := a.checkSpend(ctx, scope, profile.Limits); err != nil {
		a.Observer.Event(ctx, EventQuotaRefused, "")
		return Result{}, err
	}
	start := time.Now()
	release, err := a.Quota.Admit(ctx, scope.Incarnation(), profile.Limits)
	a.observe(ctx, StageQuota, start)
	if err != nil {
		if errors.Is(err, kind.Limited) {
			a.Observer.Event(ctx, EventQuotaRefused, "")
		}
		return Result{}, err
	}
	defer release()
	return a.run(ctx, scope, profile, turn)
}

// checkSpend holds the turn to the money budgets, failing closed: with a
// budget set and no Meter to count against it, the turn is refused.
func (a *Agent) checkSpend(ctx context.Context, scope auth.Scope, l quota.Limits) error {
	if !l.HasSpendBudget() {
		return nil
	}
	if a.Meter == nil {
		return errors.New("check spend budget: no usage meter is configured")
	}
	if err := a.Meter.CheckSpend(ctx, scope, l); err != nil {
		if errors.Is(err, kind.Limited) {
			return err
		}
		return fmt.Errorf("check spend budget: %w", err)
	}
	return nil
}

// paid counts one model call's usage, as it is made: its tokens against
// the token rate and budget, and its usage and spend in the Meter, if one
// is set. Counting per call, not per turn, keeps the calls of a turn that
// fails later (a tool loop cancelled, a stream cut) counted. The call is
// made; a failure to count it is logged, not returned.
func (a *Agent) paid(ctx context.Context, scope auth.Scope, profile Profile, model string, u llm.Usage) {
	if err := a.Quota.Spend(context.WithoutCancel(ctx), scope.Incarnation(), profile.Limits, u.TotalTokens); err != nil {
		a.Logger.ErrorContext(ctx, "record token use", "tenant", scope.Tenant(), "error", err.Error())
	}
	if a.Meter != nil {
		a.Meter.Record(scope, model, u)
	}
}

func (a *Agent) run(ctx context.Context, scope auth.Scope, profile Profile, turn Turn) (Result, error) {
	chain, err := a.modelChain(profile)
	if err != nil {
		return Result{}, err
	}
	// Every secret the tenant holds is removed from what reaches the model
	// and from what comes back, whatever the model was told or tricked into.
	secrets, err := a.Secrets.Secrets(ctx, scope)
	if err != nil {
		return Result{}, fmt.Errorf("load tenant secrets: %w", err)
	}
	red := redactor(secrets)
	if _, err := candidateKey(profile, chain[0], secrets); err != nil {
		return Result{}, err
	}
	box := a.toolbox(ctx, scope, profile, secrets, red)
	if err := box.addClientTools(profile, turn.ClientTools); err != nil {
		return Result{}, err
	}
	box.oneCall = turn.LegacyFunctions
	opts, err := offeredOptions(turn.Options, box.offered)
	if err != nil {
		if turn.LegacyFunctions {
			err = fmt.Errorf("function_call: %w", err)
		}
		return Result{}, err
	}

	msgs := make([]llm.Message, 0, 1+a.HistoryMessages+len(turn.Messages))
	// read is the join of the labels of what the model reads (labels.go).
	var read label.Label
	if system := plantCanary(profile.SystemPrompt, profile.Canary); system != "" {
		msgs = append(msgs, llm.Message{Role: "system", Content: system})
		read = label.Profile
	}
	historyFrom := len(msgs)
	if turn.Session != "" {
		start := time.Now()
		stored, err := a.History.Messages(ctx, scope, turn.Session, a.HistoryMessages)
		a.observe(ctx, StageHistory, start)
		if err != nil {
			return Result{}, fmt.Errorf("load session history: %w", err)
		}
		for _, m := range stored {
			lm, l, err := fromStored(m)
			if err != nil {
				return Result{}, fmt.Errorf("load session history: %w", err)
			}
			msgs = append(msgs, lm)
			read = read.Join(l)
		}
	}
	newFrom := len(msgs)
	msgs = append(msgs, withoutRepeat(msgs[:newFrom], turn.Messages)...)
	if len(msgs) > newFrom {
		read = read.Join(label.Client)
	}
	box.read = read
	for i := range msgs {
		msgs[i].Content = red.String(msgs[i].Content)
		msgs[i].ToolCalls = slices.Clone(msgs[i].ToolCalls) // the caller's are not rewritten
		for j := range msgs[i].ToolCalls {
			msgs[i].ToolCalls[j].Function.Arguments = red.String(msgs[i].ToolCalls[j].Function.Arguments)
		}
	}
	if turn.LegacyFunctions {
		if err := linkLegacy(msgs[historyFrom:]); err != nil {
			return Result{}, err
		}
	}
	in := a.Guard.Inputs(scope.Tenant(), nil, a.turnInputs(msgs[historyFrom:newFrom], msgs[newFrom:])...)
	box.inputs = in

	start := time.Now()
	cached, cacheFor, err := a.cached(ctx, scope, profile, turn, msgs, box)
	a.observe(ctx, StageCache, start)
	if err != nil {
		return Result{}, err
	}
	if cacheFor.ok && !turn.NoCacheRead {
		a.Observer.Event(ctx, EventCache, map[bool]string{true: "hit", false: "miss"}[cached != nil])
	}
	if cached != nil {
		a.guardAnswer(ctx, scope, profile, in, &cached.Message, &cached.FinishReason)
		if turn.OnDelta != nil && turn.OnStart != nil {
			turn.OnStart(true)
		}
		if turn.OnDelta != nil && cached.Message.Content != "" {
			if err := turn.OnDelta(cached.Message.Content); err != nil {
				return Result{}, err
			}
		}
		return *cached, a.record(ctx, scope, turn, msgs[newFrom:], cached.Message, cachedLabel(profile, read))
	}

	var resp llm.Response
	var usage llm.Usage
	steps := 0
	for step := 1; ; step++ {
		steps = step
		deltas, flushGuard := a.guardStream(ctx, scope, profile, in, turn.OnDelta)
		req := llm.Request{
			Messages:       msgs,
			Tools:          box.offered,
			MaxTokens:      turn.MaxTokens,
			Temperature:    turn.Temperature,
			User:           upstreamUser(scope),
			PromptCacheKey: cacheFor.promptKey,
			Options:        opts,
			Started:        started(turn),
		}
		start := time.Now()
		resp, err = a.chatChain(ctx, scope, profile, chain, secrets, req, red, deltas)
		a.observe(ctx, StageModel, start)
		if err == nil {
			err = flushGuard()
		} else {
			err = a.screenRefusal(ctx, scope, profile, in, req, err)
		}
		if errors.Is(err, errBlocked) {
			resp = llm.Response{Message: llm.Message{Role: "assistant", Content: withheld}, FinishReason: "content_filter"}
			a.audit(ctx, scope, "guard.block", map[string]any{"profile": profile.Name, "streamed": true})
			a.Observer.Event(ctx, EventGuardBlock, "stream")
			if err := turn.OnDelta("\n" + withheld); err != nil {
				return Result{}, err
			}
			break
		}
		if err != nil {
			return Result{}, err
		}
		usage = usage.Add(resp.Usage)
		if len(resp.Message.ToolCalls) == 0 {
			break
		}
		returned, held := box.clientStep(ctx, resp.Message.ToolCalls)
		if returned != nil {
			resp.Message.ToolCalls, resp.FinishReason = returned, "tool_calls"
			break
		}
		if step == a.MaxSteps {
			resp.Message = llm.Message{Role: "assistant",
				Content: fmt.Sprintf("I stopped after %d tool steps without finishing.", a.MaxSteps)}
			resp.FinishReason = "length"
			break
		}
		msgs = append(msgs, resp.Message)
		start = time.Now()
		results := box.runStep(ctx, resp.Message.ToolCalls, held)
		a.observe(ctx, StageTools, start)
		msgs = append(msgs, results...)
		box.read = box.read.Join(box.pending.take())
		// Held results are inputs too: whether the model reads a result
		// must not change what the guard lets it pass on.
		if more := append(a.toolInputs(results), box.refs.takeInputs()...); len(more) > 0 {
			in = a.Guard.Inputs(scope.Tenant(), in, more...)
			box.inputs = in
		}
		// A tenant deleted or suspended, or a key revoked, cancels ctx:
		// the loop stops here rather than asking the model again.
		if ctx.Err() != nil {
			return Result{}, context.Cause(ctx)
		}
	}
	resp.Usage = usage
	// An answer passed only because this turn's inputs carried another
	// tenant's value is not cached: a hit has no such inputs, and would be
	// withheld (telling the value's owner) every time.
	carried := a.guardAnswer(ctx, scope, profile, in, &resp.Message, &resp.FinishReason)
	// History keeps the answer as the model wrote it: held values shown to
	// the user never reach a later model request, nor the cache.
	stored, shown := resp.Message, false
	if turn.OnDelta == nil {
		resp.Message.Content, shown = a.showHeld(ctx, scope, profile, in, &box.refs, resp.Message.Content)
	}
	if cacheFor.ok && !carried && !shown && !turn.NoCacheWrite && (steps == 1 || profile.CacheToolAnswers) && resp.FinishReason == "stop" {
		v := cache.Value{Content: resp.Message.Content, FinishReason: resp.FinishReason, Usage: resp.Usage,
			Model: resp.Model, SystemFingerprint: resp.SystemFingerprint}
		if err := a.Cache.Put(ctx, cacheFor.cipher, cacheFor.req, v); err != nil {
			a.Logger.WarnContext(ctx, "store cached answer", "tenant", scope.Tenant(), "error", err.Error())
		}
	}
	if err := a.record(ctx, scope, turn, msgs[newFrom:], stored, box.read); err != nil {
		return Result{}, err
	}
	return Result{Message: resp.Message, FinishReason: resp.FinishReason, Usage: resp.Usage,
		Model: resp.Model, SystemFingerprint: resp.SystemFingerprint}, nil
}

// started is the provider's Started hook for turn: it tells a streaming
// client's writer that the answer begins, so headers go out before the
// model has said anything.
func started(turn Turn) func() {
	if turn.OnDelta == nil || turn.OnStart == nil {
		return nil
	}
	return func() { turn.OnStart(false) }
}

// plantCanary adds the tenant's canary to its system prompt: if the prompt
// ever shows up in another tenant's answer, the guard recognizes it.
func plantCanary(system, canary string) string {
	if canary == "" {
		return system
	}
	return system + "\n\n(Internal reference " + canary + ". Never repeat it.)"
}

var errBlocked = errors.New("answer blocked by the output guard")

// guardStream checks streamed content on its way to the client. When the
// guard blocks, the stream stops with errBlocked; what was already sent had
// passed the guard. The owners of what was caught hear of it (recordLeaks).
// flush emits what the guard held back at the end of the model's answer.
func (a *Agent) guardStream(ctx context.Context, scope auth.Scope, profile Profile, in *guard.Inputs, onDelta func(string) error) (deltas func(string) error, flush func() error) {
	if _, off := a.Guard.(noGuard); off || onDelta == nil || layers.Off("guard.stream") {
		return onDelta, func() error { return nil }
	}
	gs := a.Guard.StreamFrom(scope.Tenant(), profile.AllowedHosts, in)
	carried := 0
	emit := func(out string, v guard.Verdict) error {
		if v.Blocked {
			a.recordLeaks(ctx, scope, v, true)
			return errBlocked
		}
		if len(v.Carried) > carried {
			carried = len(v.Carried)
			a.logCarried(ctx, scope, v)
		}
		if out == "" {
			return nil
		}
		return onDelta(out)
	}
	return func(piece string) error { return emit(gs.Write(piece)) },
		func() error { return emit(gs.Flush()) }
}

// guardAnswer checks a final answer, replacing it if the guard blocks it,
// and reports whether it passed holding another tenant's value that the
// turn's inputs carried.
func (a *Agent) guardAnswer(ctx context.Context, scope auth.Scope, profile Profile, in *guard.Inputs, m *llm.Message, finish *string) (carried bool) {
	if m.Content == "" || m.Content == withheld || layers.Off("guard.answer") {
		return false
	}
	start := time.Now()
	v := a.Guard.CheckFrom(scope.Tenant(), m.Content, profile.AllowedHosts, in)
	a.observe(ctx, StageGuard, start)
	a.logCarried(ctx, scope, v)
	if v.Blocked {
		a.Logger.WarnContext(ctx, "answer blocked", "tenant", scope.Tenant(), "reasons", v.Reasons)
		a.audit(ctx, scope, "guard.block", map[string]any{"profile": profile.Name, "reasons": v.Reasons})
		a.Observer.Event(ctx, EventGuardBlock, GuardKind(v.Reasons))
		a.recordLeaks(ctx, scope, v, false)
		m.Content, *finish = withheld, "content_filter"
		return false
	}
	if len(v.Reasons) > 0 {
		a.audit(ctx, scope, "guard.rewrite", map[string]any{"profile": profile.Name, "reasons": v.Reasons})
	}
	m.Content = v.Text
	return len(v.Carried) > 0
}

// logCarried tells the operator, and only the operator, of other tenants'
// canaries and secrets that passed because the turn's own inputs carried
// them (see inputs.go): the owner's log must not hear of it, or a tenant
// that planted its canary where another's model reads would learn each time
// it was quoted; the receiver's, because nothing it sees may depend on them.
func (a *Agent) logCarried(ctx context.Context, scope auth.Scope, v guard.Verdict) {
	for _, l := range v.Carried {
		a.Logger.InfoContext(ctx, "another tenant's data passed: the request's own inputs carried it", "tenant", scope.Tenant(), "owner", l.Owner, "kind", string(l.Kind))
	}
}

// recordLeaks tells each tenant whose canary or secret the guard caught
// leaving towards scope's tenant, in the owner's own audit log and without
// naming the receiver; the receiver's log has its guard.block record, and
// the operator's log names both.
func (a *Agent) recordLeaks(ctx context.Context, scope auth.Scope, v guard.Verdict, streamed bool) {
	for _, l := range v.Leaks {
		a.Logger.WarnContext(ctx, "another tenant's data caught leaving", "tenant", scope.Tenant(), "owner", l.Owner, "kind", string(l.Kind))
		if a.Audit == nil {
			continue
		}
		if err := a.Audit.RecordForeignLeak(l.Owner, string(l.Kind), streamed); err != nil {
			a.Logger.ErrorContext(ctx, "audit record failed", "tenant", l.Owner, "type", "guard.foreign_leak", "error", err.Error())
		}
	}
}

// chat makes one model call, streaming its content through the redactor.
func (a *Agent) chat(ctx context.Context, route llm.Route, req llm.Request, red *redact.Redactor, onDelta func(string) error) (llm.Response, error) {
	// Long invisible runs go first: padding the characters of a secret or a
	// canary with them would hide it from the redactor and the guard.
	var invisible textnorm.InvisibleFilter
	var stream *redact.Stream
	var deltas func(string) error
	if onDelta != nil {
		stream = red.Stream()
		deltas = func(s string) error {
			if out := stream.Write(invisible.Write(s)); out != "" {
				return onDelta(out)
			}
			return nil
		}
	}
	resp, err := route.Provider.Chat(ctx, req, deltas)
	if err != nil {
		return llm.Response{}, modelError(err, red)
	}
	// What the provider says it used is counted, metered and shown only
	// within bounds: a negative or huge count would refund or wrap spend.
	resp.Usage = resp.Usage.Bounded()
	if stream != nil {
		if tail := stream.Write(invisible.Flush()) + stream.Flush(); tail != "" {
			if err := onDelta(tail); err != nil {
				return llm.Response{}, err
			}
		}
	}
	resp.Message.Role = "assistant"
	resp.Message.Content = red.String(textnorm.StripInvisibleRuns(resp.Message.Content))
	for i := range resp.Message.ToolCalls {
		resp.Message.ToolCalls[i].Function.Arguments = red.String(resp.Message.ToolCalls[i].Function.Arguments)
	}
	return resp, nil
}

func redactor(secrets []store.Secret) *redact.Redactor {
	if len(secrets) == 0 || layers.Off("redaction") {
		return nil
	}
	rs := make([]redact.Secret, len(secrets))
	for i, s := range secrets {
		rs[i] = redact.Secret{Name: string(s.Name), Value: s.Value.Reveal()}
	}
	return redact.New(rs)
}

// providerKey finds the tenant's own API key when the profile or provider
// asks for one. A missing key fails the turn: falling back to a shared key
// would bill (and expose) the wrong account.
func providerKey(profile Profile, route llm.Route, secrets []store.Secret) (llm.Credential, error) {
	name := profile.KeySecret
	if name == "" {
		name = route.KeySecret
	}
	if name == "" {
		return llm.Credential{}, nil
	}
	for _, s := range secrets {
		if s.Name == name {
			return s.Value, nil
		}
	}
	return llm.Credential{}, fmt.Errorf("%w: the model provider needs the tenant secret %q (its own API key), which is not set", kind.Invalid, name)
}

// upstreamUser is the opaque per-(tenant, end user) tag sent to providers; it
// lets them attribute traffic without learning tenant or user names.
func upstreamUser(scope auth.Scope) string {
	sum := sha256.Sum256([]byte("bulkhead-user\x00" + string(scope.Tenant()) + "\x00" + string(scope.User())))
	return hex.EncodeToString(sum[:16])
}

// modelError classifies a provider failure. A 429 is the provider's limit,
// with its Retry-After. A 400 or 422 is the provider refusing what the
// client asked for (a schema it will not take, a stop list too long): a
// refusal, whose provider words (the tenant's secrets removed) the client
// sees only once screenRefusal passed them. Anything else is the provider failing, and its words go to the
// log only.
func modelError(err error, red *redact.Redactor) error {
	var se *llm.StatusError
	if errors.As(err, &se) && se.StatusCode == 429 {
		return &LimitedError{RetryAfter: se.RetryAfter, HasRetryAfter: se.HasRetryAfter}
	}
	if errors.As(err, &se) && (se.StatusCode == 400 || se.StatusCode == 422) {
		// The provider's words reach the client only through screenRefusal.
		return &refusal{status: se.StatusCode, detail: red.String(se.Message)}
	}
	if errors.As(err, &se) {
		return fmt.Errorf("%w: model provider returned %d", kind.Unavailable, se.StatusCode)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: model provider: %w", kind.Unavailable, err)
}

// meta is the part of a message the store keeps as opaque JSON. Label is
// what the runtime computed for the turn that stored it (labels.go).
type meta struct {
	Name       string         `json:"name,omitempty"`
	ToolCalls  []llm.ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
	Label      *label.Label   `json:"label,omitempty"`
}

func toStored(m llm.Message, l label.Label) (store.Message, error) {
	sm := store.Message{Role: m.Role, Content: m.Content}
	b, err := json.Marshal(meta{Name: m.Name, ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID, Label: &l})
	if err != nil {
		return store.Message{}, err
	}
	sm.Meta = b
	return sm, nil
}

// fromStored decodes a stored message and its label; a message stored
// without one (before labels existed) is label.Unknown.
func fromStored(sm store.Message) (llm.Message, label.Label, error) {
	m := llm.Message{Role: sm.Role, Content: sm.Content}
	l := label.Unknown
	if len(sm.Meta) > 0 {
		var md meta
		if err := json.Unmarshal(sm.Meta, &md); err != nil {
			return llm.Message{}, label.Label{}, fmt.Errorf("decode message metadata: %w", err)
		}
		m.Name, m.ToolCalls, m.ToolCallID = md.Name, md.ToolCalls, md.ToolCallID
		if md.Label != nil {
			l = *md.Label
		}
	}
	return m, l, nil
}
