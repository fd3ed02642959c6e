package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/guard"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// refusal is a provider's 400/422. Its Error names only the status: the
// provider's words (detail) may quote the request — the system prompt,
// documents, tool results, another tenant's canary — and reach the client
// only after screenRefusal has passed them, so a path that forgets to
// screen fails closed.
type refusal struct {
	status int
	detail string // the provider's message, redacted of the tenant's secrets
}

func (e *refusal) Error() string {
	return fmt.Sprintf("%v: the model provider refused the request (status %d)", kind.Invalid, e.status)
}

func (e *refusal) Unwrap() error { return kind.Invalid }

// screened is a refusal whose provider message passed the output guard and
// quotes nothing of the request.
type screened struct{ *refusal }

func (e screened) Error() string {
	return kind.Invalid.Error() + ": the model provider refused the request: " + e.detail
}

// quoteRun is the shortest run of the request's text whose appearance in a
// provider's message counts as quoting it: long enough that "messages[0]"
// or a field name is no quote, short enough that a sentence is.
const quoteRun = 24

// screenRefusal lets a provider's refusal say why, in the provider's words,
// only when those words would leave as an answer would (the same output
// guard, whose block is audited and told to the owner of what it caught)
// and quote no run of the request's messages or tool descriptions (the
// system prompt is no end user's to read). Otherwise the client is told
// only the status. Any other error is returned as it is.
func (a *Agent) screenRefusal(ctx context.Context, scope auth.Scope, profile Profile, in *guard.Inputs, req llm.Request, err error) error {
	var r *refusal
	if !errors.As(err, &r) || r.detail == "" {
		return err
	}
	v := a.Guard.CheckFrom(scope.Tenant(), r.detail, profile.AllowedHosts, in)
	a.logCarried(ctx, scope, v)
	if v.Blocked {
		a.Logger.WarnContext(ctx, "provider error blocked", "tenant", scope.Tenant(), "reasons", v.Reasons)
		a.audit(ctx, scope, "guard.block", map[string]any{"profile": profile.Name, "reasons": v.Reasons, "provider_error": r.status})
		a.recordLeaks(ctx, scope, v, false)
		return r
	}
	if quotesRequest(v.Text, req) {
		return r
	}
	return screened{&refusal{status: r.status, detail: v.Text}}
}

// quotesRequest reports whether msg holds a run of quoteRun bytes of any
// text sent to the provider.
func quotesRequest(msg string, req llm.Request) bool {
	if len(msg) < quoteRun {
		return false
	}
	texts := make([]string, 0, len(req.Messages)+len(req.Tools))
	for _, m := range req.Messages {
		texts = append(texts, m.Content)
		for _, c := range m.ToolCalls {
			texts = append(texts, c.Function.Arguments)
		}
	}
	for _, t := range req.Tools {
		texts = append(texts, t.Function.Description, string(t.Function.Parameters))
	}
	for i := 0; i+quoteRun <= len(msg); i++ {
		run := msg[i : i+quoteRun]
		for _, t := range texts {
			if strings.Contains(t, run) {
				return true
			}
		}
	}
	return false
}
