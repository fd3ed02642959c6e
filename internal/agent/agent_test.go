package agent_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/quota"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/store"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// memHistory is an in-memory History keyed the way real stores key sessions.
type memHistory struct {
	mu   sync.Mutex
	msgs map[string][]store.Message
}

func key(scope auth.Scope, session tenant.SessionID) string {
	return string(scope.Tenant()) + "\x00" + string(scope.User()) + "\x00" + string(session)
}

func (h *memHistory) AppendMessages(_ context.Context, scope auth.Scope, session tenant.SessionID, msgs []store.Message) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs[key(scope, session)] = append(h.msgs[key(scope, session)], msgs...)
	return nil
}

func (h *memHistory) Messages(_ context.Context, scope auth.Scope, session tenant.SessionID, limit int) ([]store.Message, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.msgs[key(scope, session)]
	if limit > 0 && len(m) > limit {
		m = m[len(m)-limit:]
	}
	return append([]store.Message(nil), m...), nil
}

// memSecrets holds each tenant's secrets.
type memSecrets map[tenant.ID][]store.Secret

func (m memSecrets) Secrets(_ context.Context, scope auth.Scope) ([]store.Secret, error) {
	return m[scope.Tenant()], nil
}

// capture is a provider that records its request and answers with reply.
type capture struct {
	req   llm.Request
	reply string
}

func (c *capture) Chat(_ context.Context, req llm.Request, onDelta func(string) error) (llm.Response, error) {
	c.req = req
	if onDelta != nil {
		// Split the reply in two, mid-way, as a stream could.
		half := len(c.reply) / 2
		if err := onDelta(c.reply[:half]); err != nil {
			return llm.Response{}, err
		}
		if err := onDelta(c.reply[half:]); err != nil {
			return llm.Response{}, err
		}
	}
	return llm.Response{Message: llm.Message{Role: "assistant", Content: c.reply}}, nil
}

type failing struct{ err error }

func (f failing) Chat(context.Context, llm.Request, func(string) error) (llm.Response, error) {
	return llm.Response{}, f.err
}

// mustNew returns an Agent for d, with the explicit no-op guard, quota and
// audit where d leaves them out.
func mustNew(t *testing.T, d agent.Deps) *agent.Agent {
	t.Helper()
	d.Guard = cmp.Or(d.Guard, agent.NoGuard)
	d.Quota = cmp.Or(d.Quota, agent.NoQuota)
	d.Audit = cmp.Or(d.Audit, agent.NoAudit)
	a, err := agent.New(d)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newAgent(t *testing.T) (*agent.Agent, *memHistory) {
	t.Helper()
	reg := llm.NewRegistry()
	for name, p := range map[string]llm.Provider{
		"offline": llm.NewScripted(),
		"down":    failing{&llm.StatusError{StatusCode: 503, Message: "overloaded"}},
	} {
		if err := reg.Add(name, p); err != nil {
			t.Fatal(err)
		}
	}
	h := &memHistory{msgs: map[string][]store.Message{}}
	return mustNew(t, agent.Deps{Models: reg, History: h, Secrets: memSecrets{}, HistoryMessages: 10}), h
}

func user(text string) []llm.Message { return []llm.Message{{Role: "user", Content: text}} }

// echoContext runs "/echo" and returns the messages the model was given.
func echoContext(t *testing.T, a *agent.Agent, scope auth.Scope, p agent.Profile, session tenant.SessionID) []llm.Message {
	t.Helper()
	res, err := a.Run(context.Background(), scope, p, agent.Turn{Messages: user("/echo"), Session: session})
	if err != nil {
		t.Fatal(err)
	}
	var ctx struct{ Messages []llm.Message }
	if err := json.Unmarshal([]byte(res.Message.Content), &ctx); err != nil {
		t.Fatalf("echo reply is not JSON: %v: %s", err, res.Message.Content)
	}
	return ctx.Messages
}

func TestRunBuildsContextFromOwnProfileAndHistory(t *testing.T) {
	a, _ := newAgent(t)
	acme := authtest.Scope(t, "acme", "alice")
	globex := authtest.Scope(t, "globex", "alice")
	acmeP := agent.Profile{Name: "default", SystemPrompt: "ACME PROMPT", Model: "offline/x"}
	globexP := agent.Profile{Name: "default", SystemPrompt: "GLOBEX PROMPT", Model: "offline/x"}
	ctx := context.Background()
	if _, err := a.Run(ctx, acme, acmeP, agent.Turn{Messages: user("acme fact"), Session: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Run(ctx, globex, globexP, agent.Turn{Messages: user("globex fact"), Session: "s1"}); err != nil {
		t.Fatal(err)
	}

	got := echoContext(t, a, acme, acmeP, "s1")
	var roles []string
	var all strings.Builder
	for _, m := range got {
		roles = append(roles, m.Role)
		all.WriteString(m.Content + "\n")
	}
	if want := "system user assistant user"; strings.Join(roles, " ") != want {
		t.Fatalf("context roles = %v, want %s", roles, want)
	}
	if got[0].Content != "ACME PROMPT" || got[1].Content != "acme fact" {
		t.Fatalf("context = %+v", got)
	}
	if s := all.String(); strings.Contains(s, "GLOBEX") || strings.Contains(s, "globex") {
		t.Fatalf("acme's context holds globex's data: %s", s)
	}

	// Another end user of the same tenant, same session id: a fresh conversation.
	if got := echoContext(t, a, acme.WithUser("bob"), acmeP, "s1"); len(got) != 2 {
		t.Fatalf("bob's context has %d messages, want 2 (system + /echo): %+v", len(got), got)
	}
}

func TestRunWithoutSessionKeepsNothing(t *testing.T) {
	a, h := newAgent(t)
	scope := authtest.Scope(t, "acme", "alice")
	if _, err := a.Run(context.Background(), scope, agent.Profile{Model: "offline/x"}, agent.Turn{Messages: user("hi")}); err != nil {
		t.Fatal(err)
	}
	if len(h.msgs) != 0 {
		t.Fatalf("history written without a session: %v", h.msgs)
	}
}

func TestRunStreams(t *testing.T) {
	a, _ := newAgent(t)
	var got strings.Builder
	res, err := a.Run(context.Background(), authtest.Scope(t, "acme", ""), agent.Profile{Model: "offline/x"},
		agent.Turn{Messages: user("/say one two three"), OnDelta: func(s string) error { got.WriteString(s); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != "one two three" || res.Message.Content != "one two three" {
		t.Fatalf("streamed %q, final %q, want %q", got.String(), res.Message.Content, "one two three")
	}
}

func TestRunErrors(t *testing.T) {
	a, _ := newAgent(t)
	tests := []struct {
		name    string
		scope   auth.Scope
		model   string
		wantErr error
	}{
		{"no scope", auth.Scope{}, "offline/x", store.ErrNoScope},
		{"unknown provider", authtest.Scope(t, "acme", ""), "nosuch/x", kind.NotFound},
		{"provider down", authtest.Scope(t, "acme", ""), "down/x", kind.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Run(context.Background(), tt.scope, agent.Profile{Model: tt.model}, agent.Turn{Messages: user("hi"), Session: "s"})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

const crmToken = "crm-token-acme-7f3a9c"

func TestRunRedactsSecrets(t *testing.T) {
	echo := &capture{reply: "the token is " + crmToken + ", base64 " + "Y3JtLXRva2VuLWFjbWUtN2YzYTlj" + "."}
	reg := llm.NewRegistry()
	if err := reg.Add("up", echo); err != nil {
		t.Fatal(err)
	}
	h := &memHistory{msgs: map[string][]store.Message{}}
	secrets := memSecrets{"acme": {{Name: "crm", Value: secret.New(crmToken)}}}
	a := mustNew(t, agent.Deps{Models: reg, History: h, Secrets: secrets, HistoryMessages: 10})
	scope := authtest.Scope(t, "acme", "alice")
	want := "the token is [REDACTED:crm], base64 [REDACTED:crm]."
	for _, stream := range []bool{false, true} {
		var streamed strings.Builder
		turn := agent.Turn{Messages: user("my token is " + crmToken), Session: "s"}
		if stream {
			turn.OnDelta = func(s string) error { streamed.WriteString(s); return nil }
		}
		res, err := a.Run(context.Background(), scope, agent.Profile{Model: "up/x"}, turn)
		if err != nil {
			t.Fatal(err)
		}
		if res.Message.Content != want {
			t.Fatalf("stream=%v: content %q, want %q", stream, res.Message.Content, want)
		}
		if stream && streamed.String() != want {
			t.Fatalf("streamed %q, want %q", streamed.String(), want)
		}
		for _, m := range echo.req.Messages {
			if strings.Contains(m.Content, crmToken) {
				t.Fatalf("the model was sent the secret: %q", m.Content)
			}
		}
	}
	for _, m := range h.msgs[key(scope, "s")] {
		if strings.Contains(m.Content, crmToken) {
			t.Fatalf("history stores the secret: %q", m.Content)
		}
	}
}

func TestRunBYOK(t *testing.T) {
	up := &capture{reply: "ok"}
	reg := llm.NewRegistry()
	if err := reg.AddBYOK("byok", up, "openai_key"); err != nil {
		t.Fatal(err)
	}
	secrets := memSecrets{"acme": {{Name: "openai_key", Value: secret.New("sk-acme-own-key-123")}, {Name: "alt", Value: secret.New("sk-acme-alt-key-456")}}}
	a := mustNew(t, agent.Deps{Models: reg, History: &memHistory{msgs: map[string][]store.Message{}}, Secrets: secrets, HistoryMessages: 10})
	tests := []struct {
		name    string
		scope   auth.Scope
		profile agent.Profile
		wantKey string
		wantErr error
	}{
		{"provider's secret", authtest.Scope(t, "acme", ""), agent.Profile{Model: "byok/m"}, "sk-acme-own-key-123", nil},
		{"profile overrides", authtest.Scope(t, "acme", ""), agent.Profile{Model: "byok/m", KeySecret: "alt"}, "sk-acme-alt-key-456", nil},
		{"tenant without the secret", authtest.Scope(t, "globex", ""), agent.Profile{Model: "byok/m"}, "", kind.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.req = llm.Request{}
			_, err := a.Run(context.Background(), tt.scope, tt.profile, agent.Turn{Messages: user("hi")})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if up.req.APIKey.Reveal() != tt.wantKey {
				t.Fatalf("provider got a %d-byte key, want %q", up.req.APIKey.Len(), tt.wantKey)
			}
		})
	}
}

// TestNewRequiresSecurityLayers: leaving out the guard, the quota or the
// audit is an error, not a layer silently switched off.
func TestNewRequiresSecurityLayers(t *testing.T) {
	full := agent.Deps{Models: llm.NewRegistry(), History: &memHistory{}, Secrets: memSecrets{},
		Guard: agent.NoGuard, Quota: agent.NoQuota, Audit: agent.NoAudit}
	if _, err := agent.New(full); err != nil {
		t.Fatalf("New with every layer: %v", err)
	}
	for _, tt := range []struct {
		name string
		drop func(*agent.Deps)
	}{
		{"Guard", func(d *agent.Deps) { d.Guard = nil }},
		{"Quota", func(d *agent.Deps) { d.Quota = nil }},
		{"Audit", func(d *agent.Deps) { d.Audit = nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := full
			tt.drop(&d)
			a, err := agent.New(d)
			if err == nil || a != nil {
				t.Fatalf("New without %s = %v, %v; want an error", tt.name, a, err)
			}
			if !strings.Contains(err.Error(), tt.name) {
				t.Fatalf("error %q does not name %s", err, tt.name)
			}
		})
	}
}

// recordingMeter records every call and refuses with refuse, if set.
type recordingMeter struct {
	calls  []string // "tenant user model prompt completion"
	refuse error
}

func (m *recordingMeter) CheckSpend(context.Context, auth.Scope, quota.Limits) error { return m.refuse }

func (m *recordingMeter) Record(scope auth.Scope, model string, u llm.Usage) {
	m.calls = append(m.calls, fmt.Sprintf("%s %s %s %d %d", scope.Tenant(), scope.User(), model, u.PromptTokens, u.CompletionTokens))
}

func TestRunMeters(t *testing.T) {
	reg := llm.NewRegistry()
	for name, p := range map[string]llm.Provider{"offline": llm.NewScripted(), "down": failing{&llm.StatusError{StatusCode: 503, Message: "overloaded"}}} {
		if err := reg.Add(name, p); err != nil {
			t.Fatal(err)
		}
	}
	h := &memHistory{msgs: map[string][]store.Message{}}
	scope := authtest.Scope(t, "acme", "alice")
	budget := quota.Limits{EndUserSpendPerDayMicroUSD: 1}
	t.Run("every answered call is recorded under the model that answered", func(t *testing.T) {
		m := &recordingMeter{}
		a := mustNew(t, agent.Deps{Models: reg, History: h, Secrets: memSecrets{}, Meter: m})
		p := agent.Profile{Name: "default", Model: "down/x", Fallbacks: []string{"offline/y"}}
		res, err := a.Run(context.Background(), scope, p, agent.Turn{Messages: user("hello")})
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("acme alice offline/y %d %d", res.Usage.PromptTokens, res.Usage.CompletionTokens)
		if len(m.calls) != 1 || m.calls[0] != want {
			t.Errorf("recorded %q, want [%q]", m.calls, want)
		}
	})
	t.Run("a spent budget refuses before the model is called", func(t *testing.T) {
		m := &recordingMeter{refuse: &quota.LimitedError{Limit: quota.LimitEndUserSpendPerDay, RetryAfter: time.Hour}}
		a := mustNew(t, agent.Deps{Models: reg, History: h, Secrets: memSecrets{}, Meter: m})
		_, err := a.Run(context.Background(), scope, agent.Profile{Name: "default", Model: "offline/x", Limits: budget}, agent.Turn{Messages: user("hello")})
		if !errors.Is(err, kind.Limited) || len(m.calls) != 0 {
			t.Errorf("Run = %v with %d calls recorded; want Limited and none", err, len(m.calls))
		}
	})
	t.Run("a budget without a meter fails closed", func(t *testing.T) {
		a := mustNew(t, agent.Deps{Models: reg, History: h, Secrets: memSecrets{}})
		if _, err := a.Run(context.Background(), scope, agent.Profile{Name: "default", Model: "offline/x", Limits: budget}, agent.Turn{Messages: user("hello")}); err == nil {
			t.Error("Run under a money budget with no meter succeeded")
		}
		if _, err := a.Run(context.Background(), scope, agent.Profile{Name: "default", Model: "offline/x"}, agent.Turn{Messages: user("hello")}); err != nil {
			t.Errorf("Run with no budget and no meter: %v", err)
		}
	})
}
