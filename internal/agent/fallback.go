package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/redact"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// MaxFallbacks bounds a profile's fallbacks, and so the upstream calls one
// model step may cost (1+MaxFallbacks).
const MaxFallbacks = 4

// candidate is one model a step may be answered by: the profile's model
// first, then its fallbacks in order.
type candidate struct {
	model string // "provider/model"
	route llm.Route
}

// modelChain resolves the profile's model and its fallbacks.
func (a *Agent) modelChain(profile Profile) ([]candidate, error) {
	if len(profile.Fallbacks) > MaxFallbacks {
		return nil, fmt.Errorf("%w: profile %q: more than %d fallbacks", kind.Invalid, profile.Name, MaxFallbacks)
	}
	chain := make([]candidate, 0, 1+len(profile.Fallbacks))
	for _, m := range append([]string{profile.Model}, profile.Fallbacks...) {
		route, err := a.Models.Resolve(m)
		if err != nil {
			return nil, fmt.Errorf("%w: profile %q: %w", kind.NotFound, profile.Name, err)
		}
		chain = append(chain, candidate{model: m, route: route})
	}
	return chain, nil
}

// candidateKey is the API key to send to c. The profile's own key secret
// belongs to the provider of the profile's own model (KeyProvider): any
// candidate on another provider (a fallback, a picked model) uses only that
// provider's setting, so one provider's key is never sent to another, and
// every candidate on that provider gets the tenant's key, never the
// provider's shared one.
func candidateKey(profile Profile, c candidate, secrets []store.Secret) (llm.Credential, error) {
	if providerName(c.model) != cmp.Or(profile.KeyProvider, providerName(profile.Model)) {
		profile.KeySecret = ""
	}
	return providerKey(profile, c.route, secrets)
}

func providerName(model string) string {
	name, _, _ := strings.Cut(model, "/")
	return name
}

// chatChain makes one model step: the profile's model, then each fallback in
// order while the last one failed in a way another model may not (a 429, a
// 5xx, a timeout or an unreachable host) and nothing of its answer was
// streamed yet (a half-sent answer cannot be taken back). With fallbacks,
// providers do not retry themselves: a step costs at most len(chain) calls.
// The answer's Model is the model that gave it; a fallback, and running out
// of them, is audited.
func (a *Agent) chatChain(ctx context.Context, scope auth.Scope, profile Profile, chain []candidate, secrets []store.Secret,
	req llm.Request, red *redact.Redactor, onDelta func(string) error) (llm.Response, error) {
	req.NoRetry = len(chain) > 1
	var failed []string
	for i, c := range chain {
		key, err := candidateKey(profile, c, secrets)
		if err != nil {
			return llm.Response{}, err
		}
		req.Model, req.APIKey = c.route.Model, key
		w := &watched{Provider: c.route.Provider}
		route := c.route
		route.Provider = w
		resp, err := a.chat(ctx, route, req, red, onDelta)
		if w.err != nil && ctx.Err() == nil {
			a.Observer.Event(ctx, EventUpstreamError, failureName(w.err))
		}
		if err == nil {
			// Every answered call is paid for, whatever the guard makes of it.
			a.paid(ctx, scope, profile, c.model, resp.Usage)
			if i > 0 {
				if resp.Model == "" {
					resp.Model = c.route.Model
				}
				a.Logger.InfoContext(ctx, "model fallback answered", "tenant", scope.Tenant(), "profile", profile.Name, "model", c.model, "failed", failed)
				a.audit(ctx, scope, "model.fallback", map[string]any{"profile": profile.Name, "answered": c.model, "failed": failed})
			}
			return resp, nil
		}
		if w.streamed || ctx.Err() != nil {
			// A call cut short, by the client hanging up or the guard
			// stopping the stream, gave (part of) an answer the provider
			// charges for but whose usage it never reported: it is paid
			// for as estimated, or hanging up would make answers free.
			a.paid(ctx, scope, profile, c.model, llm.EstimateUsage(req.Messages, w.streamedBytes))
		}
		var unsupported *llm.UnsupportedError
		if errors.As(w.err, &unsupported) {
			return llm.Response{}, fmt.Errorf("%w: %w", kind.Invalid, unsupported)
		}
		if w.streamed || ctx.Err() != nil || !fallbackWorthy(ctx, w.err) {
			return llm.Response{}, err
		}
		failed = append(failed, c.model+" ("+failureName(w.err)+")")
		if i == len(chain)-1 {
			if i > 0 {
				a.Logger.WarnContext(ctx, "every model fallback failed", "tenant", scope.Tenant(), "profile", profile.Name, "failed", failed)
				a.audit(ctx, scope, "model.fallback", map[string]any{"profile": profile.Name, "answered": "", "failed": failed})
			}
			return llm.Response{}, err
		}
	}
	return llm.Response{}, errors.New("agent: empty model chain") // unreachable: the chain holds the profile's model
}

// fallbackWorthy reports whether a provider's failure is one another model
// may not share: the provider's limit (429), its failure (5xx, 529), a
// timeout of its own, or a host that could not be reached. A request the
// provider refused (4xx) would be refused again, or should be fixed.
func fallbackWorthy(ctx context.Context, err error) bool {
	var se *llm.StatusError
	if errors.As(err, &se) {
		return se.StatusCode == 429 || se.StatusCode >= 500
	}
	var ue *url.Error
	return (errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) || errors.As(err, &ue)
}

// failureName says in a word why a model failed, for the log and audit:
// never the provider's message, which may echo what the tenant sent.
func failureName(err error) string {
	var se *llm.StatusError
	switch {
	case errors.As(err, &se):
		return strconv.Itoa(se.StatusCode)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "unreachable"
}

// watched is a Provider that remembers whether any content was streamed and
// the provider's own error, before the agent classifies it.
type watched struct {
	llm.Provider
	streamed      bool
	streamedBytes int
	err           error
}

func (w *watched) Chat(ctx context.Context, req llm.Request, onDelta func(string) error) (llm.Response, error) {
	deltas := onDelta
	if onDelta != nil {
		deltas = func(s string) error {
			w.streamed = true
			w.streamedBytes += len(s)
			return onDelta(s)
		}
	}
	resp, err := w.Provider.Chat(ctx, req, deltas)
	w.err = err
	return resp, err
}
