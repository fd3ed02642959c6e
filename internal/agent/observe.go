package agent

import (
	"context"
	"strings"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/guard"
)

// Stage names, the labels of Observer.Stage.
const (
	StageQuota     = "quota"
	StageHistory   = "history"
	StageRetrieval = "retrieval"
	StageCache     = "cache"
	StageModel     = "model"
	StageTools     = "tools"
	StageGuard     = "guard"
	StageAudit     = "audit"
)

// Events counted by Observer.Event, with their details.
const (
	// EventCache: detail "hit" or "miss", for turns that looked up the
	// response cache.
	EventCache = "cache"
	// EventGuardBlock: an answer or a tool call's arguments withheld;
	// detail is the kind (GuardKind).
	EventGuardBlock = "guard_block"
	// EventQuotaRefused: the tenant's limits refused the turn.
	EventQuotaRefused = "quota_refused"
	// EventUpstreamError: a model provider failed a call; detail is the
	// failure in a word (a status code, "timeout", "unreachable").
	EventUpstreamError = "upstream_error"
)

// Tool decisions reported by Observer.ToolCall.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
	DecisionError = "error"
)

// Observer watches a turn for metrics and traces: stage names, durations,
// decisions and counts, never content, arguments or secrets. Its methods
// are called on the request's goroutines and must be fast. NoObserver
// ignores everything.
type Observer interface {
	// Stage reports that one stage of the turn took d, ending now.
	Stage(ctx context.Context, name string, d time.Duration)
	// ToolCall reports one tool call: the catalog name ("unknown" for a
	// name the model made up), the decision and how long it took, ending
	// now.
	ToolCall(ctx context.Context, tool, decision string, d time.Duration)
	// Event counts one event of the turn.
	Event(ctx context.Context, name, detail string)
}

// NoObserver observes nothing; it is what a nil Deps.Observer means.
var NoObserver Observer = noObserver{}

type noObserver struct{}

func (noObserver) Stage(context.Context, string, time.Duration)            {}
func (noObserver) ToolCall(context.Context, string, string, time.Duration) {}
func (noObserver) Event(context.Context, string, string)                   {}

// observe reports the stage name as having taken the time since start.
func (a *Agent) observe(ctx context.Context, name string, start time.Time) {
	a.Observer.Stage(ctx, name, time.Since(start))
}

// GuardKind names a guard block's kind from its reasons, in one of a few
// words, so that a metric's label never holds a host or anything the
// answer said: "canary", "secret", "link" or "other".
func GuardKind(reasons []string) string {
	kind := "other"
	for _, r := range reasons {
		switch {
		case r == guard.ReasonForeignCanary || r == guard.ReasonFormedCanary:
			return "canary"
		case r == guard.ReasonForeignSecret || strings.Contains(r, "secret"):
			return "secret"
		case strings.Contains(r, "link") || strings.Contains(r, "image"):
			kind = "link"
		}
	}
	return kind
}
