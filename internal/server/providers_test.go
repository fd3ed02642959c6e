package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// newFallbackEnv is a server whose tenant "acme" uses primary/gpt-a with the
// fallback backup/gpt-b, each a fake OpenAI-compatible upstream behind the
// real client (which would retry a 5xx twice by itself).
func newFallbackEnv(t *testing.T, timeout time.Duration) (env *testEnv, primary, backup *fakeUpstream, key string) {
	t.Helper()
	primary, backup = newFakeUpstream(t), newFakeUpstream(t)
	client := func(f *fakeUpstream) llm.Provider {
		p, err := llm.NewOpenAI(llm.OpenAIOptions{BaseURL: f.srv.URL + "/v1", MaxRetries: 2, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	env = newTestEnv(t, envOptions{providers: map[string]llm.Provider{"primary": client(primary), "backup": client(backup)}})
	env.createTenant(t, map[string]any{"id": "acme", "model": "primary/gpt-a", "fallbacks": []string{"backup/gpt-b"}, "system_prompt": "be brief"})
	_, key = env.newKey(t, "acme")
	return env, primary, backup, key
}

func statusReply(status int, retryAfter string) func(http.ResponseWriter, *http.Request, map[string]any) {
	return func(w http.ResponseWriter, _ *http.Request, _ map[string]any) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(status)
		fmt.Fprint(w, `{"error":{"message":"upstream trouble"}}`)
	}
}

// TestFallbackAnswers checks a 503 or 429 from the profile's model makes its
// fallback answer, after one call to each, that the answer names the model
// that gave it, and that the fallback is audited.
func TestFallbackAnswers(t *testing.T) {
	for _, status := range []int{503, 429} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d stream=%v", status, stream), func(t *testing.T) {
				env, primary, backup, key := newFallbackEnv(t, 0)
				primary.reply = statusReply(status, "0")
				r := env.chat(t, chatCall{key: key, content: "hi", stream: stream})
				if r.status != http.StatusOK || !strings.Contains(string(r.body), `"upstream_model":"`+fakeModel+`"`) {
					t.Fatalf("got %v, want 200 from the fallback naming %s", r, fakeModel)
				}
				if got := env.say(t, chatCall{key: key, content: "again", stream: stream}); got != fakeAnswer {
					t.Errorf("answer %q, want %q", got, fakeAnswer)
				}
				if p, b := primary.calls(), backup.calls(); p != 2 || b != 2 {
					t.Errorf("upstream calls: primary %d, backup %d; want 2 and 2 (one each per request)", p, b)
				}
				if got := backup.last(t)["model"]; string(got) != `"gpt-b"` {
					t.Errorf("backup asked for model %s, want gpt-b", got)
				}
				found := false
				for _, rec := range auditLog(t, env, "/v1/audit", key) {
					if rec.Type == "model.fallback" && strings.Contains(string(rec.Data), `"answered":"backup/gpt-b"`) &&
						strings.Contains(string(rec.Data), fmt.Sprintf("primary/gpt-a (%d)", status)) {
						found = true
					}
				}
				if !found {
					t.Error("no model.fallback audit record naming both models")
				}
			})
		}
	}
}

// TestFallbacksExhausted checks that when every model answers 429 the client
// gets a 429 with the last provider's Retry-After, after exactly one call to
// each; and that a 400 is not retried on the fallback.
func TestFallbacksExhausted(t *testing.T) {
	env, primary, backup, key := newFallbackEnv(t, 0)
	primary.reply, backup.reply = statusReply(429, "3"), statusReply(429, "7")
	for _, stream := range []bool{false, true} {
		r := env.chat(t, chatCall{key: key, content: "hi", stream: stream})
		checkAPIError(t, r, http.StatusTooManyRequests, "rate_limit_exceeded")
		if got := r.header.Get("Retry-After"); got != "7" {
			t.Errorf("stream=%v: Retry-After %q, want 7", stream, got)
		}
	}
	if p, b := primary.calls(), backup.calls(); p != 2 || b != 2 {
		t.Errorf("upstream calls: primary %d, backup %d; want 2 and 2", p, b)
	}
	primary.reply = statusReply(400, "")
	r := env.chat(t, chatCall{key: key, content: "hi"})
	checkAPIError(t, r, http.StatusBadRequest, "invalid_request")
	if b := backup.calls(); b != 2 {
		t.Errorf("a 400 reached the fallback (%d calls)", b)
	}
}

// TestFallbackNotAfterContent checks a stream that already sent content is
// not retried on the fallback when it then times out, while one that timed
// out before any content is.
func TestFallbackNotAfterContent(t *testing.T) {
	env, primary, backup, key := newFallbackEnv(t, time.Second) // the primary hangs until its attempt times out
	hang := func(content string) func(http.ResponseWriter, *http.Request, map[string]any) {
		return func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
			w.Header().Set("Content-Type", "text/event-stream")
			if content != "" {
				fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", content)
			}
			w.(http.Flusher).Flush()
			<-r.Context().Done() // until the client's attempt times out
		}
	}
	primary.reply = hang("")
	if got := env.say(t, chatCall{key: key, content: "hi", stream: true}); got != fakeAnswer {
		t.Errorf("timed out before content: answer %q, want the fallback's %q", got, fakeAnswer)
	}
	if b := backup.calls(); b != 1 {
		t.Fatalf("backup calls %d, want 1", b)
	}

	primary.reply = hang("partial answer that was already sent ")
	r := env.chat(t, chatCall{key: key, content: "hello", stream: true})
	body := string(r.body)
	if !strings.Contains(body, "partial answer") || !strings.Contains(body, `"error"`) || strings.Contains(body, fakeAnswer) {
		t.Errorf("stream %s: want the partial answer, then an error, and nothing from the fallback", body)
	}
	if b := backup.calls(); b != 1 {
		t.Errorf("the fallback was called after content was streamed (%d calls)", b)
	}
}

// TestFallbackKeepsKeyToItsProvider checks a profile's own key (for its
// model's provider) is never sent to a fallback on another provider; and,
// attacking a model pick, that when the request picks the profile's model
// on another provider and it fails, the profile's fallback on its own
// provider still gets the tenant's key, never the provider's shared one.
func TestFallbackKeepsKeyToItsProvider(t *testing.T) {
	const own = "sk-acme-primary-0123456789"
	for _, tt := range []struct {
		name  string
		patch map[string]any
		model string
		// fail names the upstream that fails, so the other answers.
		fail string
	}{
		{"fallback on another provider", map[string]any{"api_key_secret": "primary_key"}, "", "primary"},
		{"picked model on another provider, fallback on the profile's", map[string]any{"api_key_secret": "primary_key",
			"models": []string{"backup/gpt-b"}, "fallbacks": []string{"primary/gpt-a2"}}, "default/backup/gpt-b", "backup"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env, primary, backup, key := newFallbackEnv(t, 0)
			env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/primary_key", map[string]string{"value": own}, http.StatusNoContent)
			env.admin(t, "PATCH", "/admin/v1/tenants/acme", tt.patch, http.StatusOK)
			var mu sync.Mutex
			auth := map[string]string{}
			for name, up := range map[string]*fakeUpstream{"primary": primary, "backup": backup} {
				then := func(w http.ResponseWriter, _ *http.Request, body map[string]any) { fakeAnswerReply(w, body) }
				if name == tt.fail {
					then = statusReply(503, "")
				}
				up.reply = func(w http.ResponseWriter, r *http.Request, body map[string]any) {
					mu.Lock()
					auth[name] = r.Header.Get("Authorization")
					mu.Unlock()
					then(w, r, body)
				}
			}
			env.say(t, chatCall{key: key, model: tt.model, content: "hi"})
			mu.Lock()
			defer mu.Unlock()
			if auth["primary"] != "Bearer "+own || strings.Contains(auth["backup"], own) {
				t.Errorf("Authorization: primary %q, backup %q; want the tenant's key at its provider only", auth["primary"], auth["backup"])
			}
		})
	}
}

func TestFallbacksValidated(t *testing.T) {
	env, _, _, _ := newFallbackEnv(t, 0)
	for _, body := range []map[string]any{
		{"fallbacks": []string{"nosuch/x"}},
		{"fallbacks": []string{"backup"}},
		{"fallbacks": []string{"backup/a", "backup/b", "backup/c", "backup/d", "backup/e"}},
		{"profiles": map[string]any{"p": map[string]any{"model": "primary/a", "fallbacks": []string{"nosuch/x"}}}},
	} {
		env.admin(t, "PATCH", "/admin/v1/tenants/acme", body, http.StatusBadRequest)
	}
	r := env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"profiles": map[string]any{"p": map[string]any{"model": "primary/a", "fallbacks": []string{"backup/b"}}}}, http.StatusOK)
	if !strings.Contains(string(r.body), `"fallbacks":["backup/b"]`) || !strings.Contains(string(r.body), `"fallbacks":["backup/gpt-b"]`) {
		t.Errorf("tenant view %s does not show the fallbacks", r.body)
	}
}

// fakeMessagesAPI is an Anthropic Messages API endpoint recording the key
// and the system blocks of every request.
type fakeMessagesAPI struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []messagesCall
}

type messagesCall struct {
	key    string
	system []struct {
		Text         string          `json:"text"`
		CacheControl json.RawMessage `json:"cache_control"`
	}
}

func newFakeMessagesAPI(t *testing.T) *fakeMessagesAPI {
	f := &fakeMessagesAPI{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c := messagesCall{key: r.Header.Get("x-api-key")}
		var body struct {
			System json.RawMessage `json:"system"`
		}
		if json.Unmarshal(b, &body) != nil || json.Unmarshal(body.System, &c.system) != nil || r.URL.Path != "/v1/messages" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.seen = append(f.seen, c)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"model":"claude-fake","content":[{"type":"text","text":"claude says hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":2}}`)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeMessagesAPI) calls() []messagesCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]messagesCall(nil), f.seen...)
}

// TestAnthropicTenantIsolation: tenant A's own Anthropic key (a tenant
// secret) is never used for tenant B's request, B without a key of its own
// is refused rather than given A's, and the cached system block sent for
// each tenant holds its own prompt and canary, never the other's.
func TestAnthropicTenantIsolation(t *testing.T) {
	api := newFakeMessagesAPI(t)
	claude, err := llm.NewAnthropic(llm.AnthropicOptions{BaseURL: api.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	env := newTestEnv(t, envOptions{byok: map[string]byokProvider{"claude": {provider: claude, secret: "anthropic_key"}}})
	prompts := map[string]string{"acme": "You are Acme's assistant; Acme's plans are ACME-PRIVATE-PLAN.", "globex": "You are Globex's assistant; GLOBEX-PRIVATE-PLAN."}
	keys, secrets, canaries := map[string]string{}, map[string]string{}, map[string]string{}
	for _, id := range []string{"acme", "globex"} {
		env.createTenant(t, map[string]any{"id": id, "model": "claude/claude-test", "system_prompt": prompts[id]})
		_, keys[id] = env.newKey(t, id)
		ten, err := env.plane.Tenant(tenant.ID(id))
		if err != nil || len(ten.Canaries) == 0 {
			t.Fatalf("tenant %s: %v, canaries %v", id, err, ten.Canaries)
		}
		canaries[id] = ten.Canaries[0]
		secrets[id] = "sk-ant-" + id + "-0123456789abcdef"
	}
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/anthropic_key", map[string]string{"value": secrets["acme"]}, http.StatusNoContent)

	// Globex has no key of its own yet: refused, and acme's is not used.
	checkAPIError(t, env.chat(t, chatCall{key: keys["globex"], content: "hi"}), http.StatusBadRequest, "invalid_request")
	if n := len(api.calls()); n != 0 {
		t.Fatalf("globex without a key reached the provider (%d calls)", n)
	}
	env.admin(t, "PUT", "/admin/v1/tenants/globex/secrets/anthropic_key", map[string]string{"value": secrets["globex"]}, http.StatusNoContent)

	order := []string{"acme", "globex", "acme", "globex"}
	for i, id := range order {
		if got := env.say(t, chatCall{key: keys[id], content: fmt.Sprintf("question %d", i)}); got != "claude says hi" {
			t.Fatalf("%s: answer %q", id, got)
		}
	}
	calls := api.calls()
	if len(calls) != len(order) {
		t.Fatalf("%d calls, want %d", len(calls), len(order))
	}
	for i, c := range calls {
		self, other := order[i], order[(i+1)%2]
		if c.key != secrets[self] {
			t.Errorf("call %d for %s: x-api-key %q, want its own", i, self, c.key)
		}
		if len(c.system) == 0 || string(c.system[0].CacheControl) != `{"type":"ephemeral"}` {
			t.Fatalf("call %d for %s: system %+v, want a cached first block", i, self, c.system)
		}
		cached := c.system[0].Text
		if !strings.Contains(cached, prompts[self]) || !strings.Contains(cached, canaries[self]) {
			t.Errorf("call %d for %s: cached system block %q lacks its own prompt or canary", i, self, cached)
		}
		for _, foreign := range []string{prompts[other], canaries[other], secrets[other], "GLOBEX-PRIVATE", "ACME-PRIVATE"} {
			if strings.Contains(cached, foreign) && !strings.Contains(prompts[self], foreign) {
				t.Errorf("call %d for %s: cached system block holds %s's %q", i, self, other, foreign)
			}
		}
	}
}

// TestAnthropicRefusesOptionsByName checks a field the Messages API cannot
// take is a 400 naming it, with no upstream call and no fallback tried.
func TestAnthropicRefusesOptionsByName(t *testing.T) {
	api := newFakeMessagesAPI(t)
	claude, err := llm.NewAnthropic(llm.AnthropicOptions{BaseURL: api.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	backup := newFakeUpstream(t)
	env := newTestEnv(t, envOptions{providers: map[string]llm.Provider{"claude": claude, "backup": backup.provider(t, 0)}})
	env.createTenant(t, map[string]any{"id": "acme", "model": "claude/claude-test", "fallbacks": []string{"backup/gpt-b"}})
	_, key := env.newKey(t, "acme")
	for field, value := range map[string]any{
		"seed":              7,
		"logit_bias":        map[string]any{"50256": -100},
		"response_format":   map[string]any{"type": "json_object"},
		"frequency_penalty": 0.5,
		"metadata":          map[string]any{"ticket": "T-1"},
		"reasoning_effort":  "low",
	} {
		for _, stream := range []bool{false, true} {
			r := env.chat(t, chatCall{key: key, content: "hi", stream: stream, extra: map[string]any{field: value}})
			checkAPIError(t, r, http.StatusBadRequest, "invalid_request")
			if !strings.Contains(string(r.body), field+": the anthropic provider does not support it") {
				t.Errorf("%s stream=%v: body %s does not name the field", field, stream, r.body)
			}
		}
	}
	if n, b := len(api.calls()), backup.calls(); n != 0 || b != 0 {
		t.Errorf("refused requests reached upstreams: anthropic %d, fallback %d", n, b)
	}
	if got := env.say(t, chatCall{key: key, content: "hi", extra: map[string]any{"stop": "END", "top_p": 0.5}}); got != "claude says hi" {
		t.Errorf("supported fields: answer %q", got)
	}
}
