package server

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// sseStream is a parsed and checked chat completion stream.
type sseStream struct {
	chunks  []wireCompletion
	content string     // the deltas joined
	finish  string     // the finish reason
	usage   *llm.Usage // from the usage chunk, if any
}

// parseSSE checks r is an OpenAI chat completion stream: "data: " events of
// chat.completion.chunk JSON with one id, the first carrying the assistant
// role, one finish reason, an optional usage chunk last, and "data: [DONE]".
func parseSSE(r response) (sseStream, error) {
	var s sseStream
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return s, fmt.Errorf("got Content-Type %q, want text/event-stream (%s)", ct, r.body)
	}
	body := string(r.body)
	if !strings.HasSuffix(body, "\n\ndata: [DONE]\n\n") {
		return s, fmt.Errorf("stream does not end with data: [DONE]: %q", body)
	}
	// SSE comments (": keep-alive", sent while a slow stream has nothing
	// to say) are for proxies; clients skip them.
	var events []string
	for _, ev := range strings.Split(strings.TrimSuffix(body, "\n\ndata: [DONE]\n\n"), "\n\n") {
		if !strings.HasPrefix(ev, ":") {
			events = append(events, ev)
		}
	}
	var b strings.Builder
	for i, ev := range events {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			return s, fmt.Errorf("event %d is not one data line: %q", i, ev)
		}
		var c wireCompletion
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			return s, fmt.Errorf("event %d: %v: %q", i, err, data)
		}
		if c.Object != "chat.completion.chunk" {
			return s, fmt.Errorf("event %d: got object %q, want chat.completion.chunk: %s", i, c.Object, data)
		}
		if !strings.HasPrefix(c.ID, "chatcmpl-") || (i > 0 && c.ID != s.chunks[0].ID) {
			return s, fmt.Errorf("event %d: got id %q, want chatcmpl-… the same in every chunk", i, c.ID)
		}
		if c.Usage != nil {
			if i != len(events)-1 || len(c.Choices) != 0 {
				return s, fmt.Errorf("event %d: usage chunk %s, want it last with no choices", i, data)
			}
			s.usage = c.Usage
		} else if len(c.Choices) != 1 || c.Choices[0].Delta == nil {
			return s, fmt.Errorf("event %d: got %s, want one choice with a delta", i, data)
		}
		for _, ch := range c.Choices {
			d := ch.Delta
			if i == 0 {
				if d.Role == nil || *d.Role != "assistant" || (d.Content != nil && *d.Content != "") {
					return s, fmt.Errorf("first chunk %s, want delta {\"role\":\"assistant\"}", data)
				}
			} else if d.Role != nil {
				return s, fmt.Errorf("event %d: role in a later chunk: %s", i, data)
			}
			if d.Content != nil {
				b.WriteString(*d.Content)
			}
			if ch.FinishReason != nil {
				if s.finish != "" {
					return s, fmt.Errorf("event %d: second finish reason: %s", i, data)
				}
				s.finish = *ch.FinishReason
			} else if s.finish != "" {
				return s, fmt.Errorf("event %d: content after the finish reason: %s", i, data)
			}
		}
		s.chunks = append(s.chunks, c)
	}
	if s.finish == "" {
		return s, fmt.Errorf("stream has no finish reason: %q", body)
	}
	s.content = b.String()
	return s, nil
}

// Markers of the isolation tests: text only one tenant's data holds.
const (
	acmePrompt         = "ACME-PROMPT-7f3a"
	acmeSupportPrompt  = "ACME-SUPPORT-PROMPT-51b0"
	acmeFact           = "ACME-FACT-1111"
	globexPrompt       = "GLOBEX-PROMPT-c91d"
	globexSecretPrompt = "GLOBEX-SECRET-PROMPT-0e77"
	globexFact         = "GLOBEX-FACT-2222"
	globexOnlyFact     = "GLOBEX-ONLY-FACT-3333"
)

// twoTenants makes acme and globex, each with its own prompts and a key.
func twoTenants(t *testing.T, env *testEnv) (acmeKey, globexKey string) {
	t.Helper()
	env.createTenant(t, map[string]any{"id": "acme", "system_prompt": acmePrompt,
		"profiles": map[string]any{"support": map[string]any{"system_prompt": acmeSupportPrompt}}})
	env.createTenant(t, map[string]any{"id": "globex", "system_prompt": globexPrompt,
		"profiles": map[string]any{"secret": map[string]any{"system_prompt": globexSecretPrompt}}})
	_, acmeKey = env.newKey(t, "acme")
	_, globexKey = env.newKey(t, "globex")
	return acmeKey, globexKey
}

func joinContents(msgs []llm.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(m.Content)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestChatIsolation tries every way a tenant backend might name another
// tenant and checks, through the model's whole context, that none of them
// reaches it.
func TestChatIsolation(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := twoTenants(t, env)
	env.say(t, chatCall{key: globexKey, user: "alice", session: "g-only", content: "remember " + globexOnlyFact})

	tests := []struct {
		name       string
		call       chatCall // key, content and session are set by the test
		otherSess  string   // session to use instead of the seeded one
		wantSystem string
		wantFact   bool
	}{
		{name: "own session", wantSystem: acmePrompt, wantFact: true},
		{name: "session only globex has", otherSess: "g-only", wantSystem: acmePrompt},
		{name: "header X-Tenant-Id", call: chatCall{header: map[string]string{"X-Tenant-Id": "globex"}}, wantSystem: acmePrompt, wantFact: true},
		{name: "header X-Tenant", call: chatCall{header: map[string]string{"X-Tenant": "globex"}}, wantSystem: acmePrompt, wantFact: true},
		{name: "header OpenAI-Organization", call: chatCall{header: map[string]string{"OpenAI-Organization": "globex", "OpenAI-Project": "globex"}}, wantSystem: acmePrompt, wantFact: true},
		// A "tenant" or "tenant_id" body field is refused outright
		// (TestUnknownFieldsRefused); in metadata it goes upstream as is.
		{name: "body metadata tenant", call: chatCall{extra: map[string]any{"metadata": map[string]any{"tenant": "globex", "tenant_id": "globex"}}}, wantSystem: acmePrompt, wantFact: true},
		{name: "query tenant", call: chatCall{query: "tenant=globex"}, wantSystem: acmePrompt, wantFact: true},
		{name: "query tenant_id", call: chatCall{query: "tenant_id=globex&tenant=globex"}, wantSystem: acmePrompt, wantFact: true},
		{name: "user globex:alice", call: chatCall{user: "globex:alice"}, wantSystem: acmePrompt},
		{name: "user globex/alice", call: chatCall{user: "globex/alice"}, wantSystem: acmePrompt},
		{name: "all at once, streamed", call: chatCall{stream: true, query: "tenant=globex",
			header: map[string]string{"X-Tenant-Id": "globex"}, extra: map[string]any{"metadata": map[string]any{"tenant": "globex"}}},
			wantSystem: acmePrompt, wantFact: true},
		{name: "own profile support", call: chatCall{model: "support"}, wantSystem: acmeSupportPrompt, wantFact: true},
		{name: "own profile default", call: chatCall{model: "default"}, wantSystem: acmePrompt, wantFact: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Both tenants hold a session of the same user and id, each
			// with its own fact.
			session := fmt.Sprintf("s1-%d", i)
			env.say(t, chatCall{key: acmeKey, user: "alice", session: session, content: "remember " + acmeFact})
			env.say(t, chatCall{key: globexKey, user: "alice", session: session, content: "remember " + globexFact})

			c := tt.call
			c.key, c.content, c.session = acmeKey, "/echo", cmp.Or(tt.otherSess, session)
			if c.user == "" {
				c.user = "alice"
			}
			r := env.chat(t, c)
			if r.status != http.StatusOK {
				t.Fatalf("got %v, want 200", r)
			}
			content := ""
			if c.stream {
				s, err := parseSSE(r)
				if err != nil {
					t.Fatal(err)
				}
				content = s.content
			} else {
				var err error
				if content, err = answer(r); err != nil {
					t.Fatal(err)
				}
			}
			msgs, err := echoed(content)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 || msgs[0].Role != "system" || msgs[0].Content != tt.wantSystem {
				t.Errorf("got context %s, want system prompt %q first", content, tt.wantSystem)
			}
			all := joinContents(msgs)
			if strings.Contains(all, "GLOBEX") || strings.Contains(string(r.body), "GLOBEX") {
				t.Errorf("acme's context holds globex data: %s", content)
			}
			if got := strings.Contains(all, acmeFact); got != tt.wantFact {
				t.Errorf("context holds acme's fact: got %t, want %t (%s)", got, tt.wantFact, content)
			}
		})
	}

	// Profiles and models acme does not have are missing, whatever they are.
	for _, model := range []string{"globex", "secret", "globex/default", "globex/secret", "offline/default", "../globex", "SECRET"} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("model %s stream %t", model, stream), func(t *testing.T) {
				r := env.chat(t, chatCall{key: acmeKey, user: "alice", model: model, stream: stream, content: "/echo"})
				checkAPIError(t, r, http.StatusNotFound, "not_found")
				if strings.Contains(string(r.body), "GLOBEX") {
					t.Errorf("error names globex data: %s", r.body)
				}
			})
		}
	}

	// globex's own data is intact and holds nothing of acme's.
	for _, tt := range []struct{ session, fact, model, prompt string }{
		{"s1-0", globexFact, "", globexPrompt},
		{"g-only", globexOnlyFact, "secret", globexSecretPrompt},
	} {
		msgs := env.echo(t, chatCall{key: globexKey, user: "alice", session: tt.session, model: tt.model})
		all := joinContents(msgs)
		if !strings.Contains(all, tt.fact) || msgs[0].Content != tt.prompt {
			t.Errorf("globex session %s: got context %q, want prompt %q and fact %q", tt.session, all, tt.prompt, tt.fact)
		}
		if strings.Contains(all, "ACME") {
			t.Errorf("globex session %s holds acme data: %q", tt.session, all)
		}
	}
}

// TestChatKeyAndTenantLifecycle revokes keys, suspends, reactivates, deletes
// and re-creates tenants and checks who gets in after each step.
func TestChatKeyAndTenantLifecycle(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	keys := map[string]string{}
	keyIDs := map[string]string{}
	env.createTenant(t, map[string]any{"id": "acme", "system_prompt": acmePrompt})
	env.createTenant(t, map[string]any{"id": "globex", "system_prompt": globexPrompt})
	keyIDs["acme1"], keys["acme1"] = env.newKey(t, "acme")
	keyIDs["acme2"], keys["acme2"] = env.newKey(t, "acme")
	keyIDs["globex1"], keys["globex1"] = env.newKey(t, "globex")
	env.say(t, chatCall{key: keys["acme1"], user: "alice", session: "s1", content: "remember " + acmeFact})
	env.say(t, chatCall{key: keys["globex1"], user: "alice", session: "s1", content: "remember " + globexFact})

	// history returns what the key's tenant remembers of alice's s1.
	history := func(t *testing.T, key string) string {
		return joinContents(env.echo(t, chatCall{key: key, user: "alice", session: "s1"}))
	}

	steps := []struct {
		name   string
		action func(t *testing.T)
		want   map[string]int // key name → status of chat and models
		check  func(t *testing.T)
	}{
		{
			name:   "start",
			action: func(t *testing.T) {},
			want:   map[string]int{"acme1": 200, "acme2": 200, "globex1": 200},
		},
		{
			name: "revoke acme2",
			action: func(t *testing.T) {
				env.admin(t, "DELETE", "/admin/v1/tenants/acme/keys/"+keyIDs["acme2"], nil, http.StatusNoContent)
			},
			want: map[string]int{"acme1": 200, "acme2": 401, "globex1": 200},
		},
		{
			name: "revoke acme2 again",
			action: func(t *testing.T) {
				checkAPIError(t, env.do(t, "DELETE", "/admin/v1/tenants/acme/keys/"+keyIDs["acme2"], testAdminToken, nil, nil), 404, "not_found")
			},
			want: map[string]int{"acme1": 200, "acme2": 401, "globex1": 200},
		},
		{
			name: "revoke globex's key under acme",
			action: func(t *testing.T) {
				checkAPIError(t, env.do(t, "DELETE", "/admin/v1/tenants/acme/keys/"+keyIDs["globex1"], testAdminToken, nil, nil), 404, "not_found")
			},
			want: map[string]int{"acme1": 200, "globex1": 200},
		},
		{
			name: "suspend acme",
			action: func(t *testing.T) {
				env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"status": "suspended"}, http.StatusOK)
			},
			want: map[string]int{"acme1": 403, "acme2": 401, "globex1": 200},
		},
		{
			name: "reactivate acme",
			action: func(t *testing.T) {
				env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"status": "active"}, http.StatusOK)
			},
			want: map[string]int{"acme1": 200, "acme2": 401, "globex1": 200},
			check: func(t *testing.T) {
				if h := history(t, keys["acme1"]); !strings.Contains(h, acmeFact) || strings.Contains(h, "GLOBEX") {
					t.Errorf("acme history after reactivation: got %q, want acme's fact only", h)
				}
			},
		},
		{
			name: "delete globex",
			action: func(t *testing.T) {
				env.admin(t, "DELETE", "/admin/v1/tenants/globex", nil, http.StatusNoContent)
				checkAPIError(t, env.do(t, "POST", "/admin/v1/tenants/globex/keys", testAdminToken, nil, nil), 404, "not_found")
			},
			want: map[string]int{"acme1": 200, "globex1": 401},
		},
		{
			name: "re-create globex",
			action: func(t *testing.T) {
				env.createTenant(t, map[string]any{"id": "globex", "system_prompt": "GLOBEX-REBORN"})
				keyIDs["globex2"], keys["globex2"] = env.newKey(t, "globex")
			},
			want: map[string]int{"acme1": 200, "globex1": 401, "globex2": 200},
			check: func(t *testing.T) {
				h := history(t, keys["globex2"])
				if strings.Contains(h, globexFact) || strings.Contains(h, globexPrompt) || strings.Contains(h, "ACME") {
					t.Errorf("re-created globex remembers: got %q, want a fresh tenant", h)
				}
			},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.action(t)
			for name, want := range st.want {
				r := env.chat(t, chatCall{key: keys[name], user: "alice", content: "/say ok"})
				m := env.do(t, "GET", "/v1/models", keys[name], nil, nil)
				if want == 200 {
					if r.status != 200 || m.status != 200 {
						t.Errorf("key %s: got chat %v, models %v; want 200", name, r, m)
					}
					continue
				}
				code := map[int]string{401: "invalid_api_key", 403: "permission_denied"}[want]
				if err := apiErrorMismatch(r, want, code); err != nil {
					t.Errorf("key %s chat: %v", name, err)
				}
				if err := apiErrorMismatch(m, want, code); err != nil {
					t.Errorf("key %s models: %v", name, err)
				}
			}
			if st.check != nil {
				st.check(t)
			}
		})
	}
}

func TestChatStream(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _ := twoTenants(t, env)
	tests := []struct {
		name, content, model string
	}{
		{"say", "/say hello  big wide world ", ""},
		{"default reply", "what is up", ""},
		{"default reply other profile", "what is up", "support"},
		{"echo", "/echo", ""},
		{"empty answer", "/say ", ""},
		{"one word", "/say word", ""},
	}
	for _, tt := range tests {
		for _, usage := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s usage %t", tt.name, usage), func(t *testing.T) {
				c := chatCall{key: acmeKey, user: "alice", content: tt.content, model: tt.model}
				full := env.chat(t, c)
				want, err := answer(full)
				if err != nil {
					t.Fatal(err)
				}
				var fullResp wireCompletion
				if err := json.Unmarshal(full.body, &fullResp); err != nil {
					t.Fatal(err)
				}

				c.stream, c.usage = true, usage
				r := env.chat(t, c)
				if r.status != http.StatusOK {
					t.Fatalf("got %v, want 200", r)
				}
				s, err := parseSSE(r)
				if err != nil {
					t.Fatal(err)
				}
				if s.content != want {
					t.Errorf("joined deltas: got %q, want the non-streamed content %q", s.content, want)
				}
				if s.finish != "stop" {
					t.Errorf("finish reason: got %q, want stop", s.finish)
				}
				wantModel := cmp.Or(tt.model, "default")
				for i, ch := range s.chunks {
					if ch.Model != wantModel {
						t.Errorf("chunk %d: got model %q, want %q", i, ch.Model, wantModel)
					}
				}
				switch {
				case usage && s.usage == nil:
					t.Errorf("got no usage chunk, want one with include_usage")
				case !usage && s.usage != nil:
					t.Errorf("got usage chunk %+v, want none without include_usage", *s.usage)
				case usage && (fullResp.Usage == nil || *s.usage != *fullResp.Usage):
					t.Errorf("streamed usage: got %+v, want the non-streamed %+v", *s.usage, fullResp.Usage)
				case usage && s.usage.TotalTokens != s.usage.PromptTokens+s.usage.CompletionTokens:
					t.Errorf("usage %+v: total is not prompt + completion", *s.usage)
				}
				if tt.content != "/echo" && !strings.HasPrefix(tt.content, "/say") {
					wantPrompt := acmePrompt
					if tt.model == "support" {
						wantPrompt = acmeSupportPrompt
					}
					if !strings.Contains(s.content, wantPrompt) {
						t.Errorf("streamed reply %q does not name the tenant's prompt %q", s.content, wantPrompt)
					}
				}
			})
		}
	}
}

// TestChatStreamKeepsHistory checks a streamed turn is stored like a
// non-streamed one.
func TestChatStreamKeepsHistory(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _ := twoTenants(t, env)
	r := env.chat(t, chatCall{key: acmeKey, user: "alice", session: "st", stream: true, content: "remember " + acmeFact})
	if _, err := parseSSE(r); err != nil {
		t.Fatal(err)
	}
	msgs := env.echo(t, chatCall{key: acmeKey, user: "alice", session: "st"})
	if len(msgs) != 4 || msgs[1].Content != "remember "+acmeFact || msgs[2].Role != "assistant" {
		t.Errorf("got context %+v, want system, the streamed turn (user, assistant) and /echo", msgs)
	}
}

// TestChatSessions checks history is kept per tenant, end user and session.
func TestChatSessions(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := twoTenants(t, env)
	const fact = "SESSION-FACT-A"
	env.say(t, chatCall{key: acmeKey, user: "alice", session: "s1", content: "remember " + fact})
	got := env.say(t, chatCall{key: acmeKey, user: "alice", session: "s1", content: "what did I say?"})
	if want := `Earlier you said: "remember ` + fact + `".`; !strings.Contains(got, want) {
		t.Errorf("second turn: got %q, want it to contain %q", got, want)
	}
	// Without a session nothing is kept.
	const lost = "NO-SESSION-FACT-B"
	env.say(t, chatCall{key: acmeKey, user: "alice", content: "remember " + lost})

	tests := []struct {
		name          string
		key           string
		user, session string
		wantFact      bool
	}{
		{"same user and session", acmeKey, "alice", "s1", true},
		{"other user same session", acmeKey, "bob", "s1", false},
		{"anonymous user same session", acmeKey, "", "s1", false},
		{"user differs in case", acmeKey, "Alice", "s1", false},
		{"user with padding", acmeKey, "alice ", "s1", false},
		{"other session", acmeKey, "alice", "s2", false},
		{"session differs in case", acmeKey, "alice", "S1", false},
		{"no session", acmeKey, "alice", "", false},
		{"other tenant same user and session", globexKey, "alice", "s1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := env.echo(t, chatCall{key: tt.key, user: tt.user, session: tt.session})
			all := joinContents(msgs)
			if got := strings.Contains(all, fact); got != tt.wantFact {
				t.Errorf("context holds the fact: got %t, want %t (%q)", got, tt.wantFact, all)
			}
			if strings.Contains(all, lost) {
				t.Errorf("context holds a turn sent without a session: %q", all)
			}
			if !tt.wantFact && len(msgs) != 2 {
				t.Errorf("got %d messages in context, want 2 (system and /echo): %q", len(msgs), all)
			}
		})
	}

	// The database holds acme's session turns and nothing of the turn
	// without a session.
	tn, err := env.plane.Tenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(env.dataDir, "tenants", tn.StorageID, "tenant.db")
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var total, stray int
	if err := db.QueryRow(`SELECT count(*), count(CASE WHEN content LIKE '%' || ? || '%' THEN 1 END) FROM messages`, lost).Scan(&total, &stray); err != nil {
		t.Fatalf("count stored messages: %v", err)
	}
	if stray != 0 {
		t.Errorf("got %d stored messages of the turn without a session, want 0", stray)
	}
	// alice/s1: 2 turns + 1 echo; the other acme echo cases: 1 turn each
	// except "no session".
	if want := 2*3 + 2*6; total != want {
		t.Errorf("got %d stored messages, want %d", total, want)
	}
}

func TestChatBadInput(t *testing.T) {
	const maxBody = 4096
	env := newTestEnv(t, envOptions{maxBodyBytes: maxBody})
	acmeKey, _ := twoTenants(t, env)
	msg := func(role string) string {
		return `{"messages":[{"role":"` + role + `","content":"hi"}]}`
	}
	big := strings.Repeat("x", maxBody)
	tests := []struct {
		name       string
		body       string
		session    string
		wantStatus int
		wantCode   string
	}{
		{"empty body", ``, "", 400, "invalid_request"},
		{"malformed JSON", `{"messages":`, "", 400, "invalid_request"},
		{"not JSON", `hello`, "", 400, "invalid_request"},
		{"two JSON values", msg("user") + msg("user"), "", 400, "invalid_request"},
		{"array body", `[]`, "", 400, "invalid_request"},
		{"messages not a list", `{"messages":"hi"}`, "", 400, "invalid_request"},
		{"no messages", `{}`, "", 400, "invalid_request"},
		{"empty messages", `{"messages":[]}`, "", 400, "invalid_request"},
		{"null messages", `{"messages":null}`, "", 400, "invalid_request"},
		{"tool message without tool_call_id", `{"messages":[{"role":"user","content":"hi"},{"role":"tool","content":"42"}]}`, "", 400, "invalid_request"},
		{"tool_call_id on a user message", `{"messages":[{"role":"user","content":"hi","tool_call_id":"call_1"}]}`, "", 400, "invalid_request"},
		{"tool_calls on a user message", `{"messages":[{"role":"user","content":"hi","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, "", 400, "invalid_request"},
		{"tool call without id", `{"messages":[{"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, "", 400, "invalid_request"},
		{"role function", msg("function"), "", 400, "invalid_request"},
		{"role empty", msg(""), "", 400, "invalid_request"},
		{"role unknown", msg("root"), "", 400, "invalid_request"},
		{"client tool with bound parameters", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"steal","parameters":{"type":"object"},"bound":{"tenant_id":"tenant.id"}}}]}`, "", 400, "invalid_request"},
		{"client tool not a function", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"code_interpreter"}]}`, "", 400, "invalid_request"},
		{"client tool schema not an object", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"string"}}}]}`, "", 400, "invalid_request"},
		{"client tools object", `{"messages":[{"role":"user","content":"hi"}],"tools":{"x":1}}`, "", 400, "invalid_request"},
		{"image content", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x"}}]}]}`, "", 400, "invalid_request"},
		{"content number", `{"messages":[{"role":"user","content":42}]}`, "", 400, "invalid_request"},
		{"stream not bool", `{"messages":[{"role":"user","content":"hi"}],"stream":"yes"}`, "", 400, "invalid_request"},
		{"negative max_tokens", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":-1}`, "", 400, "invalid_request"},
		{"user with control character", `{"messages":[{"role":"user","content":"hi"}],"user":"al\u0000ice"}`, "", 400, "invalid_request"},
		{"user too long", `{"messages":[{"role":"user","content":"hi"}],"user":"` + strings.Repeat("u", 257) + `"}`, "", 400, "invalid_request"},
		{"session with slash", msg("user"), "globex/s1", 400, "invalid_request"},
		{"session path traversal", msg("user"), "../s1", 400, "invalid_request"},
		{"session with space", msg("user"), "s 1", 400, "invalid_request"},
		{"session with percent", msg("user"), "s%201", 400, "invalid_request"},
		{"session too long", msg("user"), strings.Repeat("s", 129), 400, "invalid_request"},
		{"body over the cap", `{"messages":[{"role":"user","content":"` + big + `"}]}`, "", 413, "request_too_large"},
		{"streamed body over the cap", `{"stream":true,"messages":[{"role":"user","content":"` + big + `"}]}`, "", 413, "request_too_large"},
		{"huge unknown field", `{"padding":"` + big + `","messages":[{"role":"user","content":"hi"}]}`, "", 413, "request_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := map[string]string{"X-Session-Id": cmp.Or(tt.session, "bad-input")}
			r := env.do(t, "POST", "/v1/chat/completions", acmeKey, tt.body, header)
			checkAPIError(t, r, tt.wantStatus, tt.wantCode)
		})
	}
	// Refused requests leave no history.
	if msgs := env.echo(t, chatCall{key: acmeKey, session: "bad-input"}); len(msgs) != 2 {
		t.Errorf("got context %+v after refused requests, want system prompt and /echo only", msgs)
	}
	// Fields the server does not use are accepted, as OpenAI's clients send them.
	ok := `{"model":"default","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"/say "},{"type":"text","text":"parts"}]}],"n":1,"logprobs":false,"seed":7,"max_completion_tokens":5,"temperature":0.2}`
	r := env.do(t, "POST", "/v1/chat/completions", acmeKey, ok, nil)
	if got, err := answer(r); err != nil || got != "parts" {
		t.Errorf("request with extra fields: got %q, %v (%s), want \"parts\"", got, err, r.body)
	}
}

func TestModels(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := twoTenants(t, env)
	tests := []struct {
		name, key, owner string
		want             []string
	}{
		{"acme", acmeKey, "acme", []string{"default", "support"}},
		{"globex", globexKey, "globex", []string{"default", "secret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.do(t, "GET", "/v1/models", tt.key, nil, map[string]string{"X-Tenant-Id": "globex"})
			if r.status != http.StatusOK {
				t.Fatalf("got %v, want 200", r)
			}
			var list struct {
				Object string `json:"object"`
				Data   []struct {
					ID, Object string
					OwnedBy    string `json:"owned_by"`
				} `json:"data"`
			}
			if err := json.Unmarshal(r.body, &list); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range list.Data {
				ids = append(ids, m.ID)
				if m.Object != "model" || m.OwnedBy != tt.owner {
					t.Errorf("model %s: got object %q owned_by %q, want model owned by %s", m.ID, m.Object, m.OwnedBy, tt.owner)
				}
			}
			if list.Object != "list" || !slices.Equal(ids, tt.want) {
				t.Errorf("got %s, want list of %v", r.body, tt.want)
			}
		})
	}
}

// failingProvider is a model provider whose every call fails with err.
type failingProvider struct{ err error }

func (p failingProvider) Chat(context.Context, llm.Request, func(string) error) (llm.Response, error) {
	return llm.Response{}, p.err
}

// TestChatUpstreamErrorHidesDetails checks a failing model provider is
// reported as a 502 without the provider's internal details (its address).
func TestChatUpstreamErrorHidesDetails(t *testing.T) {
	const internal = "10.9.8.7"
	upstreamErr := fmt.Errorf("llm: send: %w", &url.Error{Op: "Post",
		URL: "http://" + internal + ":9000/v1/chat/completions",
		Err: errors.New("dial tcp " + internal + ":9000: connect: connection refused")})
	env := newTestEnv(t, envOptions{providers: map[string]llm.Provider{"broken": failingProvider{upstreamErr}}})
	env.createTenant(t, map[string]any{"id": "acme", "model": "broken/gpt"})
	_, key := env.newKey(t, "acme")
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream %t", stream), func(t *testing.T) {
			r := env.chat(t, chatCall{key: key, content: "hi", stream: stream})
			checkAPIError(t, r, http.StatusBadGateway, "upstream_error")
			if strings.Contains(string(r.body), internal) {
				t.Errorf("error shows the provider's address %s: %s", internal, r.body)
			}
		})
	}
}

// echoAuthUpstream is an OpenAI-compatible model that answers with the
// Authorization header it received: a provider (or a model) repeating the
// tenant's own key back.
func echoAuthUpstream(t *testing.T) (*httptest.Server, *[]string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		mu.Lock()
		seen = append(seen, auth)
		mu.Unlock()
		key := strings.TrimPrefix(auth, "Bearer ")
		content := "you sent " + auth + " also " + base64.StdEncoding.EncodeToString([]byte(key))
		var req struct{ Stream bool }
		json.NewDecoder(r.Body).Decode(&req)
		if req.Stream {
			w.Header().Set("Content-Type", "text/event-stream")
			// Split the key across two chunks.
			half := len(content) / 2
			for _, part := range []string{content[:half], content[half:]} {
				b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]string{"content": part}}}})
				fmt.Fprintf(w, "data: %s\n\n", b)
			}
			fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{"index": 0,
			"message": map[string]string{"role": "assistant", "content": content}, "finish_reason": "stop"}}})
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

// TestBYOKKeyNeverLeaves runs a tenant on its own provider key and a model
// that repeats that key: the upstream gets the key, the client and the logs
// never do.
func TestBYOKKeyNeverLeaves(t *testing.T) {
	upstream, seen := echoAuthUpstream(t)
	up, err := llm.NewOpenAI(llm.OpenAIOptions{BaseURL: upstream.URL + "/v1", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	env := newTestEnv(t, envOptions{logger: logger, byok: map[string]byokProvider{"byok": {up, "openai_key"}}})
	env.createTenant(t, map[string]any{"id": "acme", "model": "byok/gpt"})
	env.createTenant(t, map[string]any{"id": "globex", "model": "byok/gpt"})
	_, acmeKey := env.newKey(t, "acme")
	_, globexKey := env.newKey(t, "globex")
	const tenantKey = "sk-acme-own-provider-key-31415"
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/openai_key", map[string]string{"value": tenantKey}, http.StatusNoContent)

	for _, stream := range []bool{false, true} {
		got := env.say(t, chatCall{key: acmeKey, content: "repeat my key", stream: stream, session: "s"})
		if strings.Contains(got, tenantKey) || strings.Contains(got, base64.StdEncoding.EncodeToString([]byte(tenantKey))) {
			t.Fatalf("stream=%v: the client received the key: %q", stream, got)
		}
		if want := "you sent Bearer [REDACTED:openai_key] also [REDACTED:openai_key]"; got != want {
			t.Fatalf("stream=%v: got %q, want %q", stream, got, want)
		}
	}
	if len(*seen) != 2 || (*seen)[0] != "Bearer "+tenantKey {
		t.Fatalf("upstream saw %q, want acme's own key", *seen)
	}
	// globex has no key of its own: refused, never served on acme's.
	if r := env.chat(t, chatCall{key: globexKey, content: "hi"}); r.status != http.StatusBadRequest {
		t.Fatalf("globex without its key: got %v, want 400", r)
	}
	if len(*seen) != 2 {
		t.Fatalf("globex's request reached the upstream: %q", *seen)
	}
	export := env.admin(t, "GET", "/admin/v1/tenants/acme/export", nil, http.StatusOK)
	if bytes.Contains(export.body, []byte(tenantKey)) {
		t.Fatal("the stored history holds the key")
	}
	if logs.Len() == 0 {
		t.Fatal("no logs captured")
	}
	if strings.Contains(logs.String(), tenantKey) {
		t.Fatalf("logs hold the key:\n%s", logs.String())
	}
}

// TestSecretsRedactedFromAnswers makes the model say a tenant's secret, as a
// prompt-injected model would, and checks the client gets it redacted.
func TestSecretsRedactedFromAnswers(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := twoTenants(t, env)
	const crm = "acme-crm-token-77aa01"
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/crm", map[string]string{"value": crm}, http.StatusNoContent)
	hexCRM := fmt.Sprintf("%x", crm)
	for _, stream := range []bool{false, true} {
		got := env.say(t, chatCall{key: acmeKey, stream: stream, content: "/say token " + crm + " hex " + hexCRM})
		if want := "token [REDACTED:crm] hex [REDACTED:crm]"; got != want {
			t.Fatalf("stream=%v: got %q, want %q", stream, got, want)
		}
	}
	// The model never sees the value either, even when the user types it.
	ctx := env.echo(t, chatCall{key: acmeKey, content: "/echo " + crm})
	if strings.Contains(joinContents(ctx), crm) {
		t.Fatal("the model's context holds the secret")
	}
	if got := env.say(t, chatCall{key: globexKey, content: "/say nothing secret here"}); got != "nothing secret here" {
		t.Fatalf("globex: got %q", got)
	}
}

// TestRateLimit checks a tenant over its request rate gets 429 with
// Retry-After in OpenAI's shape, while another tenant is untouched.
func TestRateLimit(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme", "limits": map[string]int{"requests_per_minute": 2}})
	env.createTenant(t, map[string]any{"id": "globex", "limits": map[string]int{"requests_per_minute": 100}})
	_, acmeKey := env.newKey(t, "acme")
	_, globexKey := env.newKey(t, "globex")
	for i := range 2 {
		if r := env.chat(t, chatCall{key: acmeKey, content: "hi"}); r.status != http.StatusOK {
			t.Fatalf("request %d: %v", i, r)
		}
	}
	r := env.chat(t, chatCall{key: acmeKey, content: "hi"})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: got %v (Retry-After %q), want 429 with Retry-After", r, r.header.Get("Retry-After"))
	}
	var e struct{ Error struct{ Type, Code string } }
	if json.Unmarshal(r.body, &e); e.Error.Code != "rate_limit_exceeded" {
		t.Fatalf("429 body: %s", r.body)
	}
	for range 5 {
		if r := env.chat(t, chatCall{key: globexKey, content: "hi"}); r.status != http.StatusOK {
			t.Fatalf("globex while acme is limited: %v", r)
		}
	}
}

// countingModel is the scripted model, counting the calls that reach it.
type countingModel struct {
	calls atomic.Int64
	inner llm.Provider
}

func (m *countingModel) Chat(ctx context.Context, req llm.Request, onDelta func(string) error) (llm.Response, error) {
	m.calls.Add(1)
	return m.inner.Chat(ctx, req, onDelta)
}

// TestResponseCache checks a repeated question is answered from the cache,
// that an identical question from another tenant (or another end user) is
// never, and that redaction still applies to cached answers.
func TestResponseCache(t *testing.T) {
	model := &countingModel{inner: llm.NewScripted()}
	env := newTestEnv(t, envOptions{providers: map[string]llm.Provider{"counted": model}})
	for _, id := range []string{"acme", "globex"} {
		env.createTenant(t, map[string]any{"id": id, "model": "counted/x", "system_prompt": "same prompt"})
	}
	env.createTenant(t, map[string]any{"id": "initech", "model": "counted/x", "system_prompt": "same prompt", "no_cache": true})
	_, acmeKey := env.newKey(t, "acme")
	_, globexKey := env.newKey(t, "globex")
	_, initechKey := env.newKey(t, "initech")

	ask := func(key, user string) string {
		return env.say(t, chatCall{key: key, user: user, content: "What is the refund window?", extra: map[string]any{"temperature": 0}})
	}
	first := ask(acmeKey, "alice")
	if got := ask(acmeKey, "alice"); got != first || model.calls.Load() != 1 {
		t.Fatalf("repeat for acme: %q after %d model calls, want a cache hit", got, model.calls.Load())
	}
	ask(globexKey, "alice")
	if n := model.calls.Load(); n != 2 {
		t.Fatalf("identical question from globex: %d model calls, want 2 (no cross-tenant hit)", n)
	}
	ask(acmeKey, "bob")
	if n := model.calls.Load(); n != 3 {
		t.Fatalf("identical question from another end user: %d model calls, want 3", n)
	}
	ask(initechKey, "alice")
	ask(initechKey, "alice")
	if n := model.calls.Load(); n != 5 {
		t.Fatalf("profile with no_cache: %d model calls, want 5", n)
	}
	// A change to the tenant's definition retires its cached answers.
	env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"name": "Acme 2"}, http.StatusOK)
	ask(acmeKey, "alice")
	if n := model.calls.Load(); n != 6 {
		t.Fatalf("after a tenant change: %d model calls, want 6", n)
	}
}

// TestNoisyNeighbour floods the server from tenant A at ten times its
// request rate while tenant B makes ordinary requests: B must never be
// limited. B's latency percentiles, solo and during the flood, are logged
// for the record (the machine is shared; no timing is asserted).
func TestNoisyNeighbour(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the server for a few seconds")
	}
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "noisy", "limits": map[string]int{"requests_per_minute": 60}})
	env.createTenant(t, map[string]any{"id": "calm", "limits": map[string]int{"requests_per_minute": 6000}})
	_, noisyKey := env.newKey(t, "noisy")
	_, calmKey := env.newKey(t, "calm")

	// calm sends 20 requests/s for the duration; returns latencies and 429s.
	calm := func(d time.Duration) (lat []time.Duration, limited int) {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
			t0 := time.Now()
			r := env.chat(t, chatCall{key: calmKey, content: fmt.Sprint("question ", len(lat))})
			lat = append(lat, time.Since(t0))
			if r.status == http.StatusTooManyRequests {
				limited++
			}
		}
		return lat, limited
	}
	solo, _ := calm(2 * time.Second)

	// A minute's allowance is noisy's burst: spend it first, then flood at
	// 10 requests/s, ten times its 1/s rate.
	for range 60 {
		env.chat(t, chatCall{key: noisyKey, content: "warm up"})
	}
	stop := make(chan struct{})
	var noisyOK, noisyLimited atomic.Int64
	var wg sync.WaitGroup
	for range 2 { // 2 × 5/s
		wg.Go(func() {
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				r, err := env.sendChat(context.Background(), chatCall{key: noisyKey, content: "flood"})
				switch {
				case err != nil:
				case r.status == http.StatusTooManyRequests:
					noisyLimited.Add(1)
				default:
					noisyOK.Add(1)
				}
			}
		})
	}
	during, limited := calm(2 * time.Second)
	close(stop)
	wg.Wait()
	if limited > 0 {
		t.Fatalf("calm was limited %d times while noisy flooded", limited)
	}
	if noisyLimited.Load() == 0 {
		t.Fatalf("noisy was never limited (%d admitted)", noisyOK.Load())
	}
	pct := func(l []time.Duration, p float64) time.Duration {
		s := slices.Clone(l)
		slices.Sort(s)
		return s[int(p*float64(len(s)-1))]
	}
	t.Logf("noisy: %d admitted, %d limited; calm p50/p99 solo %v/%v, during flood %v/%v (%d requests each)",
		noisyOK.Load(), noisyLimited.Load(), pct(solo, .5), pct(solo, .99), pct(during, .5), pct(during, .99), len(during))
}

// TestModelPick checks a request may pick a model its profile lists, as
// "<profile>/<provider>/<model>": the provider gets that model, the answer
// names what was asked, and the profile's fallbacks still follow it. A
// model the profile does not list is a 400 naming it, and the provider is
// not called: one only another tenant's profile lists, one another profile
// of the tenant lists, and a configured provider/model nobody listed alike.
// Another tenant's profile name is a 404, like a name nobody has.
func TestModelPick(t *testing.T) {
	env, primary, backup, key := newFallbackEnv(t, 0)
	env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"models": []string{"primary/gpt-pick", "backup/gpt-c"},
		"profiles": map[string]any{"support": map[string]any{"model": "primary/gpt-s", "models": []string{"primary/gpt-s2"}}}}, http.StatusOK)
	env.createTenant(t, map[string]any{"id": "globex", "model": "primary/gpt-a", "models": []string{"primary/gpt-g7"},
		"profiles": map[string]any{"private": map[string]any{"model": "primary/gpt-a"}}})

	for _, tt := range []struct {
		model, upstream string
		stream          bool
	}{
		{"", "gpt-a", false},
		{"default", "gpt-a", false},
		{"default/primary/gpt-pick", "gpt-pick", false},
		{"default/primary/gpt-pick", "gpt-pick", true},
		{"default/primary/gpt-a", "gpt-a", false},
		{"support/primary/gpt-s2", "gpt-s2", false},
	} {
		r := env.chat(t, chatCall{key: key, model: tt.model, content: "hi", stream: tt.stream})
		if r.status != http.StatusOK {
			t.Fatalf("model %q: got %v, want 200", tt.model, r)
		}
		if got := string(primary.last(t)["model"]); got != `"`+tt.upstream+`"` {
			t.Errorf("model %q: the provider was asked for %s, want %s", tt.model, got, tt.upstream)
		}
		want := cmp.Or(tt.model, "default")
		if !strings.Contains(string(r.body), `"model":"`+want+`"`) {
			t.Errorf("model %q: the answer %s does not name the model asked for", tt.model, r.body)
		}
	}
	// A pick on another provider: that provider is called.
	if r := env.chat(t, chatCall{key: key, model: "default/backup/gpt-c", content: "hi"}); r.status != http.StatusOK || string(backup.last(t)["model"]) != `"gpt-c"` {
		t.Errorf("default/backup/gpt-c: got %v, backup asked for %s", r, backup.last(t)["model"])
	}

	for _, tt := range []struct {
		model   string
		status  int
		mention string
	}{
		{"default/primary/gpt-g7", 400, "primary/gpt-g7"},
		{"default/primary/gpt-s2", 400, "primary/gpt-s2"},
		{"default/offline/default", 400, "offline/default"},
		{"default/", 400, "default"},
		{"private", 404, "private"},
		{"private/primary/gpt-a", 404, "private"},
		{"nosuch/primary/gpt-a", 404, "nosuch"},
	} {
		for _, stream := range []bool{false, true} {
			before := primary.calls() + backup.calls()
			r := env.chat(t, chatCall{key: key, model: tt.model, content: "hi", stream: stream})
			code := map[int]string{400: "invalid_request", 404: "not_found"}[tt.status]
			checkAPIError(t, r, tt.status, code)
			if !strings.Contains(string(r.body), tt.mention) || strings.Contains(string(r.body), "globex") {
				t.Errorf("model %q: got %s, want an error naming %q and not globex", tt.model, r.body, tt.mention)
			}
			if n := primary.calls() + backup.calls(); n != before {
				t.Errorf("model %q: the provider was called for a refused request", tt.model)
			}
		}
	}

	// Fallbacks still apply to a picked model.
	primary.reply = statusReply(503, "0")
	r := env.chat(t, chatCall{key: key, model: "default/primary/gpt-pick", content: "hi"})
	if r.status != http.StatusOK || string(backup.last(t)["model"]) != `"gpt-b"` {
		t.Errorf("picked model failing: got %v, backup asked for %s; want the fallback gpt-b to answer", r, backup.last(t)["model"])
	}

	// The models endpoint lists the picks of acme's own profiles only.
	r = env.do(t, "GET", "/v1/models", key, nil, nil)
	for _, want := range []string{`"default/primary/gpt-pick"`, `"default/backup/gpt-c"`, `"support/primary/gpt-s2"`} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("GET /v1/models = %s, want it to list %s", r.body, want)
		}
	}
	if strings.Contains(string(r.body), "globex") || strings.Contains(string(r.body), "private") {
		t.Errorf("GET /v1/models = %s lists globex's models", r.body)
	}
	if r := env.do(t, "GET", "/v1/models/default/primary/gpt-pick", key, nil, nil); r.status != http.StatusOK || !strings.Contains(string(r.body), `"id":"default/primary/gpt-pick"`) {
		t.Errorf("GET /v1/models/default/primary/gpt-pick = %v", r)
	}
	checkAPIError(t, env.do(t, "GET", "/v1/models/default/primary/gpt-g7", key, nil, nil), http.StatusNotFound, "not_found")

	// The admin API checks and shows the lists.
	for _, body := range []map[string]any{
		{"models": []string{"nosuch/x"}},
		{"models": []string{"primary"}},
		{"profiles": map[string]any{"p": map[string]any{"model": "primary/a", "models": []string{"nosuch/x"}}}},
	} {
		r := env.admin(t, "PATCH", "/admin/v1/tenants/acme", body, http.StatusBadRequest)
		if !strings.Contains(string(r.body), "models") {
			t.Errorf("PATCH %v: got %s, want an error naming models", body, r.body)
		}
	}
	v := env.admin(t, "GET", "/admin/v1/tenants/acme", nil, http.StatusOK)
	if !strings.Contains(string(v.body), `"models":["primary/gpt-pick","backup/gpt-c"]`) || !strings.Contains(string(v.body), `"models":["primary/gpt-s2"]`) {
		t.Errorf("tenant view %s does not show the models", v.body)
	}
}
