package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/cache"
	"github.com/bulkhead-ai/bulkhead/internal/keyring"
	"github.com/bulkhead-ai/bulkhead/internal/label"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// cacheTarget is where a turn's answer may be cached, and the tenant's
// partition of the provider's prompt cache.
type cacheTarget struct {
	ok        bool
	cipher    *keyring.Cipher
	req       cache.Request
	promptKey string
}

// cached looks the turn up in the response cache. A hit costs no model call
// and no tokens; it still passes the output checks the caller applies.
func (a *Agent) cached(ctx context.Context, scope auth.Scope, profile Profile, turn Turn, msgs []llm.Message, box *toolbox) (*Result, cacheTarget, error) {
	var t cacheTarget
	if a.Ciphers == nil {
		return nil, t, nil
	}
	c, err := a.Ciphers.Cipher(ctx, scope.Incarnation())
	if err != nil {
		return nil, t, fmt.Errorf("response cache: %w", err)
	}
	t.promptKey = cache.PromptCacheKey(c, profile.Name)
	// A turn with client tools is not cached: its answer depends on their
	// declarations, which the key does not hold, and may be calls to them.
	if a.Cache == nil || profile.NoCache || !deterministic(turn) || len(turn.ClientTools) > 0 {
		return nil, t, nil
	}
	options, err := json.Marshal(turn.Options)
	if err != nil {
		return nil, t, fmt.Errorf("response cache: encode options: %w", err)
	}
	tools := make([]string, len(box.offered))
	for i, o := range box.offered {
		tools[i] = o.Function.Name
	}
	t.ok, t.cipher = true, c
	t.req = cache.Request{
		// The end user is part of the key: two users never share an answer.
		Profile: profile.Name + "\x00" + string(scope.User()), Model: profile.Model,
		Messages: msgs, Tools: tools, PolicyVersion: profile.Version,
		MaxTokens: turn.MaxTokens, Temperature: turn.Temperature, Options: string(options),
	}
	if turn.NoCacheRead {
		return nil, t, nil
	}
	v, hit, err := a.Cache.Get(ctx, c, t.req)
	switch {
	case errors.Is(err, cache.ErrForeignEntry):
		a.Logger.WarnContext(ctx, "response cache entry refused", "tenant", scope.Tenant(), "error", err.Error())
		a.audit(ctx, scope, "cache.refused", map[string]any{"profile": profile.Name})
	case err != nil:
		a.Logger.WarnContext(ctx, "response cache lookup failed", "tenant", scope.Tenant(), "error", err.Error())
	}
	if !hit {
		return nil, t, nil
	}
	a.Logger.InfoContext(ctx, "response cache hit", "tenant", scope.Tenant(), "profile", profile.Name)
	a.audit(ctx, scope, "cache.hit", map[string]any{"profile": profile.Name})
	return &Result{Message: llm.Message{Role: "assistant", Content: v.Content}, FinishReason: v.FinishReason,
		Usage: v.Usage, Model: v.Model, SystemFingerprint: v.SystemFingerprint, Cached: true}, t, nil
}

// deterministic reports whether the client asked for a repeatable answer:
// temperature 0, or a seed (OpenAI's "same seed and parameters, same
// answer"). Anything else is sampled afresh each time, and a cached answer
// would be a wrong one.
func deterministic(turn Turn) bool {
	return (turn.Temperature != nil && *turn.Temperature == 0) || turn.Options.Seed != nil
}

// record appends the turn to the session's history, if it has one.
// Every message is stored with read, the label of the whole turn: an
// answer is derived from all the turn read, and a later turn reading any of
// it reads at least that.
func (a *Agent) record(ctx context.Context, scope auth.Scope, turn Turn, newMsgs []llm.Message, answer llm.Message, read label.Label) error {
	if turn.Session == "" {
		return nil
	}
	record := make([]store.Message, 0, len(newMsgs)+1)
	for _, m := range append(newMsgs, answer) {
		sm, err := toStored(m, read)
		if err != nil {
			return fmt.Errorf("save session history: %w", err)
		}
		record = append(record, sm)
	}
	// The answer is already computed; a cancelled client must not lose the
	// turn from its history, so the write ignores cancellation.
	start := time.Now()
	err := a.History.AppendMessages(context.WithoutCancel(ctx), scope, turn.Session, record)
	a.observe(ctx, StageHistory, start)
	if err != nil {
		return fmt.Errorf("save session history: %w", err)
	}
	return nil
}
