package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
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

type failing struct{ err error }

func (f failing) Chat(context.Context, llm.Request, func(string) error) (llm.Response, error) {
	return llm.Response{}, f.err
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
	return agent.New(reg, h, nil, 10), h
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
	acme := auth.TestScope(t, "acme", "alice")
	globex := auth.TestScope(t, "globex", "alice")
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
	scope := auth.TestScope(t, "acme", "alice")
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
	res, err := a.Run(context.Background(), auth.TestScope(t, "acme", ""), agent.Profile{Model: "offline/x"},
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
		{"unknown provider", auth.TestScope(t, "acme", ""), "nosuch/x", kind.NotFound},
		{"provider down", auth.TestScope(t, "acme", ""), "down/x", kind.Unavailable},
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
