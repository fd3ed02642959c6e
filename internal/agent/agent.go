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

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/redact"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
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
	Name         string
	SystemPrompt string
	Model        string // "provider/model"
	// KeySecret names the tenant secret holding the model provider's API key
	// (bring your own key); empty means the provider's own setting.
	KeySecret tenant.SecretName
}

// Turn is one request to the agent.
type Turn struct {
	Messages    []llm.Message      // new messages from the client
	Session     tenant.SessionID   // empty: no server-side history
	MaxTokens   int                // 0: provider default
	Temperature *float64           // nil: provider default
	OnDelta     func(string) error // non-nil: stream assistant content
}

// Result is the agent's answer.
type Result struct {
	Message      llm.Message
	FinishReason string
	Usage        llm.Usage
}

// Agent runs turns. It is safe for concurrent use.
type Agent struct {
	models          Models
	history         History
	secrets         Secrets
	logger          *slog.Logger
	historyMessages int
}

// New returns an Agent. historyMessages bounds how much stored history the
// model sees.
func New(models Models, history History, secrets Secrets, logger *slog.Logger, historyMessages int) *Agent {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{models: models, history: history, secrets: secrets, logger: logger, historyMessages: historyMessages}
}

// Run executes one turn for scope with profile.
func (a *Agent) Run(ctx context.Context, scope auth.Scope, profile Profile, turn Turn) (Result, error) {
	if !scope.Valid() {
		return Result{}, fmt.Errorf("run agent: %w", store.ErrNoScope)
	}
	route, err := a.models.Resolve(profile.Model)
	if err != nil {
		return Result{}, fmt.Errorf("%w: profile %q: %w", kind.NotFound, profile.Name, err)
	}
	// Every secret the tenant holds is removed from what reaches the model
	// and from what comes back, whatever the model was told or tricked into.
	secrets, err := a.secrets.Secrets(ctx, scope)
	if err != nil {
		return Result{}, fmt.Errorf("load tenant secrets: %w", err)
	}
	red := redactor(secrets)
	apiKey, err := providerKey(profile, route, secrets)
	if err != nil {
		return Result{}, err
	}

	msgs := make([]llm.Message, 0, 1+a.historyMessages+len(turn.Messages))
	if profile.SystemPrompt != "" {
		msgs = append(msgs, llm.Message{Role: "system", Content: profile.SystemPrompt})
	}
	if turn.Session != "" {
		stored, err := a.history.Messages(ctx, scope, turn.Session, a.historyMessages)
		if err != nil {
			return Result{}, fmt.Errorf("load session history: %w", err)
		}
		for _, m := range stored {
			lm, err := fromStored(m)
			if err != nil {
				return Result{}, fmt.Errorf("load session history: %w", err)
			}
			msgs = append(msgs, lm)
		}
	}
	msgs = append(msgs, turn.Messages...)
	for i := range msgs {
		msgs[i].Content = red.String(msgs[i].Content)
	}

	var onDelta func(string) error
	var stream *redact.Stream
	if turn.OnDelta != nil {
		stream = red.Stream()
		onDelta = func(s string) error {
			if out := stream.Write(s); out != "" {
				return turn.OnDelta(out)
			}
			return nil
		}
	}
	resp, err := route.Provider.Chat(ctx, llm.Request{
		Model:       route.Model,
		Messages:    msgs,
		MaxTokens:   turn.MaxTokens,
		Temperature: turn.Temperature,
		APIKey:      apiKey,
		User:        upstreamUser(scope),
	}, onDelta)
	if err != nil {
		return Result{}, modelError(err)
	}
	if stream != nil {
		if tail := stream.Flush(); tail != "" {
			if err := turn.OnDelta(tail); err != nil {
				return Result{}, err
			}
		}
	}
	resp.Message.Role = "assistant"
	resp.Message.Content = red.String(resp.Message.Content)
	for i := range resp.Message.ToolCalls {
		resp.Message.ToolCalls[i].Function.Arguments = red.String(resp.Message.ToolCalls[i].Function.Arguments)
	}

	if turn.Session != "" {
		record := make([]store.Message, 0, len(turn.Messages)+1)
		for _, m := range append(msgs[len(msgs)-len(turn.Messages):], resp.Message) {
			sm, err := toStored(m)
			if err != nil {
				return Result{}, fmt.Errorf("save session history: %w", err)
			}
			record = append(record, sm)
		}
		// The answer is already computed; a cancelled client must not lose
		// the turn from its history, so the write ignores cancellation.
		if err := a.history.AppendMessages(context.WithoutCancel(ctx), scope, turn.Session, record); err != nil {
			return Result{}, fmt.Errorf("save session history: %w", err)
		}
	}
	return Result{Message: resp.Message, FinishReason: resp.FinishReason, Usage: resp.Usage}, nil
}

func redactor(secrets []store.Secret) *redact.Redactor {
	if len(secrets) == 0 {
		return nil
	}
	rs := make([]redact.Secret, len(secrets))
	for i, s := range secrets {
		rs[i] = redact.Secret{Name: string(s.Name), Value: string(s.Value)}
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
		return "", nil
	}
	for _, s := range secrets {
		if s.Name == name {
			return llm.Credential(s.Value), nil
		}
	}
	return "", fmt.Errorf("%w: the model provider needs the tenant secret %q (its own API key), which is not set", kind.Invalid, name)
}

// upstreamUser is the opaque per-(tenant, end user) tag sent to providers; it
// lets them attribute traffic without learning tenant or user names.
func upstreamUser(scope auth.Scope) string {
	sum := sha256.Sum256([]byte("bulkhead-user\x00" + string(scope.Tenant()) + "\x00" + string(scope.User())))
	return hex.EncodeToString(sum[:16])
}

func modelError(err error) error {
	var se *llm.StatusError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: model provider returned %d", kind.Unavailable, se.StatusCode)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: model provider: %w", kind.Unavailable, err)
}

// meta is the part of a message the store keeps as opaque JSON.
type meta struct {
	Name       string         `json:"name,omitempty"`
	ToolCalls  []llm.ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

func toStored(m llm.Message) (store.Message, error) {
	sm := store.Message{Role: m.Role, Content: m.Content}
	if m.Name != "" || len(m.ToolCalls) > 0 || m.ToolCallID != "" {
		b, err := json.Marshal(meta{Name: m.Name, ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID})
		if err != nil {
			return store.Message{}, err
		}
		sm.Meta = b
	}
	return sm, nil
}

func fromStored(sm store.Message) (llm.Message, error) {
	m := llm.Message{Role: sm.Role, Content: sm.Content}
	if len(sm.Meta) > 0 {
		var md meta
		if err := json.Unmarshal(sm.Meta, &md); err != nil {
			return llm.Message{}, fmt.Errorf("decode message metadata: %w", err)
		}
		m.Name, m.ToolCalls, m.ToolCallID = md.Name, md.ToolCalls, md.ToolCallID
	}
	return m, nil
}
