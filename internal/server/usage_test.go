package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// testPrices make the offline model cost something: $1000 per million
// input tokens (a thousandth of a dollar per token) and $2000 per million
// output tokens.
var testPrices = map[string]config.Price{"offline/default": {Input: 1000, CachedInput: 500, Output: 2000}}

type usageList struct {
	Object string      `json:"object"`
	Data   []usageJSON `json:"data"`
}

func (e *testEnv) usage(t testing.TB, path, token string) usageList {
	t.Helper()
	r := e.do(t, "GET", path, token, nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %v", path, r)
	}
	var l usageList
	if err := json.Unmarshal(r.body, &l); err != nil || l.Object != "list" {
		t.Fatalf("GET %s: %v (%s)", path, err, r.body)
	}
	return l
}

// chatCost sends a chat that must succeed and returns what it should cost
// at testPrices, from the usage it reports.
func (e *testEnv) chatCost(t testing.TB, c chatCall) int64 {
	t.Helper()
	r := e.chat(t, c)
	if r.status != http.StatusOK {
		t.Fatalf("chat %+v: %v", c, r)
	}
	var u struct {
		P int `json:"prompt_tokens"`
		C int `json:"completion_tokens"`
	}
	if err := json.Unmarshal(jsonField(t, r.body, "usage"), &u); err != nil || u.P == 0 {
		t.Fatalf("chat usage: %v (%s)", err, r.body)
	}
	return int64(u.P)*1000 + int64(u.C)*2000
}

func jsonField(t testing.TB, body []byte, name string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return m[name]
}

// sum adds up rows by tenant ("" every tenant) and end user ("*" every end
// user).
func (l usageList) sum(tenant, user string) (requests, spend int64) {
	for _, r := range l.Data {
		if (tenant == "" || r.Tenant == tenant) && (user == "*" || r.EndUser == user) {
			requests += r.Requests
			spend += r.SpendMicroUSD
		}
	}
	return requests, spend
}

func TestUsageIsolation(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			var opts envOptions
			if backend == "postgres" {
				opts.database, opts.env = postgresDatabase(t)
			}
			opts.prices = testPrices
			testUsageIsolation(t, newTestEnv(t, opts))
		})
	}
}

func testUsageIsolation(t *testing.T, env *testEnv) {
	env.createTenant(t, map[string]any{"id": "acme"})
	env.createTenant(t, map[string]any{"id": "globex"})
	_, acmeKey := env.newKey(t, "acme")
	_, globexKey := env.newKey(t, "globex")
	idp := authtest.NewIssuer(t, "https://login.example")
	env.registerIssuer(t, "acme", idp, "acme-app", http.StatusCreated)
	u1Token := idp.Token(t, "u1", "acme-app", time.Hour, nil)

	want := map[string]int64{} // "tenant/user" -> micro-dollars
	for _, c := range []chatCall{
		{key: acmeKey, user: "u1", content: "hello from acme u1"},
		{key: acmeKey, user: "u1", content: "more from acme u1, a longer question this time"},
		{key: acmeKey, user: "u2", content: "hello from acme u2"},
		{key: acmeKey, content: "from acme's backend, no end user"},
		{key: u1Token, content: "u1 with a token"},
		{key: globexKey, user: "u1", content: "globex's own u1"},
	} {
		tenant := "acme"
		if c.key == globexKey {
			tenant = "globex"
		}
		user := c.user
		if c.key == u1Token {
			user = "u1"
		}
		want[tenant+"/"+user] += env.chatCost(t, c)
	}

	check := func(t *testing.T, l usageList, tenant, user string, wantRequests int64) {
		t.Helper()
		requests, spend := l.sum(tenant, user)
		if requests != wantRequests || spend != want[tenant+"/"+user] {
			t.Errorf("%s/%s: %d requests, %d micro-dollars; want %d, %d", tenant, user, requests, spend, wantRequests, want[tenant+"/"+user])
		}
	}
	t.Run("a tenant key sees its own tenant only", func(t *testing.T) {
		l := env.usage(t, "/v1/usage", acmeKey)
		for _, r := range l.Data {
			if r.Tenant != "acme" {
				t.Errorf("acme's usage holds %+v", r)
			}
			if r.Day != time.Now().UTC().Format(time.DateOnly) || r.Model != "offline/default" {
				t.Errorf("row %+v: want today's, of offline/default", r)
			}
			if r.SpendUSD != float64(r.SpendMicroUSD)/1e6 || r.InputTokens == 0 || r.OutputTokens == 0 {
				t.Errorf("row %+v: tokens or spend_usd wrong", r)
			}
		}
		check(t, l, "acme", "u1", 3)
		check(t, l, "acme", "u2", 1)
		check(t, l, "acme", "", 1)
		check(t, env.usage(t, "/v1/usage", globexKey), "globex", "u1", 1)
	})
	t.Run("an end-user token sees its own end user only", func(t *testing.T) {
		l := env.usage(t, "/v1/usage", u1Token)
		for _, r := range l.Data {
			if r.Tenant != "acme" || r.EndUser != "u1" {
				t.Errorf("u1's usage holds %+v", r)
			}
		}
		check(t, l, "acme", "u1", 3)
	})
	t.Run("the operator sees every tenant", func(t *testing.T) {
		l := env.usage(t, "/admin/v1/usage", testAdminToken)
		check(t, l, "acme", "u1", 3)
		check(t, l, "globex", "u1", 1)
		one := env.usage(t, "/admin/v1/tenants/globex/usage", testAdminToken)
		for _, r := range one.Data {
			if r.Tenant != "globex" {
				t.Errorf("globex's usage holds %+v", r)
			}
		}
		check(t, one, "globex", "u1", 1)
		checkAPIError(t, env.do(t, "GET", "/admin/v1/tenants/initech/usage", testAdminToken, nil, nil), http.StatusNotFound, "not_found")
	})
	t.Run("nothing in the request reaches another tenant's usage", func(t *testing.T) {
		for _, q := range []string{"tenant=globex", "tenant_id=globex", "end_user=u2", "user=u2", "from=2026-01-01&tenant=globex"} {
			r := env.do(t, "GET", "/v1/usage?"+q, acmeKey, nil, nil)
			checkAPIError(t, r, http.StatusBadRequest, "invalid_request")
			if strings.Contains(string(r.body), "globex\"") {
				t.Errorf("?%s: %s", q, r.body)
			}
		}
		// A header naming another tenant changes nothing.
		r := env.do(t, "GET", "/v1/usage", acmeKey, nil, map[string]string{"X-Tenant-Id": "globex", "X-Bulkhead-Tenant": "globex"})
		if r.status != http.StatusOK || strings.Contains(string(r.body), `"globex"`) {
			t.Errorf("acme with a globex header: %v", r)
		}
		// An end-user token cannot widen its view to the tenant.
		checkAPIError(t, env.do(t, "GET", "/v1/usage?end_user=u2", u1Token, nil, nil), http.StatusBadRequest, "invalid_request")
		// An acme key is no admin token.
		checkAPIError(t, env.do(t, "GET", "/admin/v1/usage", acmeKey, nil, nil), http.StatusUnauthorized, "invalid_api_key")
		checkAPIError(t, env.do(t, "GET", "/admin/v1/tenants/globex/usage", acmeKey, nil, nil), http.StatusUnauthorized, "invalid_api_key")
	})
	t.Run("bad ranges are refused naming the parameter", func(t *testing.T) {
		for q, wantText := range map[string]string{
			"from=yesterday":                  "from",
			"to=2026-13-01":                   "to",
			"from=2026-12-04&to=2026-12-01":   "before",
			"from=2024-01-01&to=2026-01-01":   "366",
			"from=2026-12-01&from=2026-12-02": "from",
		} {
			r := env.do(t, "GET", "/v1/usage?"+q, acmeKey, nil, nil)
			checkAPIError(t, r, http.StatusBadRequest, "invalid_request")
			if !strings.Contains(string(r.body), wantText) {
				t.Errorf("?%s: %s; want a message naming %q", q, r.body, wantText)
			}
		}
		// A range far in the past is valid and empty.
		if l := env.usage(t, "/v1/usage?from=2020-01-01&to=2020-12-31", acmeKey); len(l.Data) != 0 {
			t.Errorf("2020's usage: %+v", l.Data)
		}
	})
	t.Run("a deleted tenant's usage goes with it", func(t *testing.T) {
		env.admin(t, "DELETE", "/admin/v1/tenants/globex", nil, http.StatusNoContent)
		env.createTenant(t, map[string]any{"id": "globex"})
		if requests, _ := env.usage(t, "/admin/v1/usage", testAdminToken).sum("globex", "*"); requests != 0 {
			t.Errorf("globex deleted and created again shows %d requests", requests)
		}
		if requests, _ := env.usage(t, "/admin/v1/usage", testAdminToken).sum("acme", "*"); requests != 5 {
			t.Errorf("acme's usage after globex's deletion: %d requests, want 5", requests)
		}
	})
}

func TestSpendBudgets(t *testing.T) {
	env := newTestEnv(t, envOptions{prices: testPrices})
	// Any chat with the offline model costs at least a cent at testPrices
	// (checked below), so the first call of each spends the budget.
	env.createTenant(t, map[string]any{"id": "acme", "limits": map[string]any{"end_user_spend_per_day_usd": 0.01}})
	env.createTenant(t, map[string]any{"id": "globex", "limits": map[string]any{"spend_per_day_usd": 0.01}})
	_, acmeKey := env.newKey(t, "acme")
	_, globexKey := env.newKey(t, "globex")

	t.Run("an end user over its budget is refused, not the others", func(t *testing.T) {
		if cost := env.chatCost(t, chatCall{key: acmeKey, user: "u1", content: "first question"}); cost < 10_000 {
			t.Fatalf("the first call cost %d micro-dollars, under the budget: the test proves nothing", cost)
		}
		r := env.chat(t, chatCall{key: acmeKey, user: "u1", content: "second question"})
		checkAPIError(t, r, http.StatusTooManyRequests, "rate_limit_exceeded")
		for _, want := range []string{"end_user_spend_per_day_usd", "$0.01", "resets at " + time.Now().UTC().Truncate(24*time.Hour).Add(24*time.Hour).Format(time.RFC3339)} {
			if !strings.Contains(string(r.body), want) {
				t.Errorf("refusal %s does not say %q", r.body, want)
			}
		}
		if r.header.Get("Retry-After") == "" {
			t.Error("a refusal without Retry-After")
		}
		// Streamed requests are held to it too.
		checkAPIError(t, env.chat(t, chatCall{key: acmeKey, user: "u1", content: "third", stream: true}), http.StatusTooManyRequests, "rate_limit_exceeded")
		env.chatCost(t, chatCall{key: acmeKey, user: "u2", content: "u2's first question"})
		env.chatCost(t, chatCall{key: acmeKey, content: "the backend's own request"})
	})
	t.Run("a tenant over its budget is refused for every end user", func(t *testing.T) {
		env.chatCost(t, chatCall{key: globexKey, user: "u1", content: "first question"})
		for _, user := range []string{"u1", "u2", ""} {
			r := env.chat(t, chatCall{key: globexKey, user: user, content: "again"})
			checkAPIError(t, r, http.StatusTooManyRequests, "rate_limit_exceeded")
			if !strings.Contains(string(r.body), "spend_per_day_usd") || strings.Contains(string(r.body), "end_user_spend") {
				t.Errorf("refusal for %q: %s; want the tenant's budget named", user, r.body)
			}
		}
		// acme's budget is its own.
		env.chatCost(t, chatCall{key: acmeKey, user: "u3", content: "acme is unaffected"})
	})
	t.Run("raising the budget lets requests through at once", func(t *testing.T) {
		env.admin(t, "PATCH", "/admin/v1/tenants/globex", map[string]any{"limits": map[string]any{"spend_per_day_usd": 1000}}, http.StatusOK)
		env.chatCost(t, chatCall{key: globexKey, user: "u1", content: "after the raise"})
	})
	t.Run("invalid budgets are refused", func(t *testing.T) {
		for _, limits := range []map[string]any{{"spend_per_day_usd": -1}, {"end_user_spend_per_day_usd": 1e-9}, {"spend_per_day_usd": 1e12}} {
			r := env.do(t, "PATCH", "/admin/v1/tenants/acme", testAdminToken, map[string]any{"limits": limits}, nil)
			checkAPIError(t, r, http.StatusBadRequest, "invalid_request")
		}
	})
}

// TestUsageSurvivesShutdown: usage counted but not yet written when the
// server closes is written on the way out, and read back after a restart.
func TestUsageSurvivesShutdown(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t, dir)
	o.Config.Prices = testPrices
	open := func() (*Instance, *testEnv) {
		inst, err := Open(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(inst.Handler())
		return inst, &testEnv{srv: srv, client: srv.Client(), plane: inst.Plane(), dataDir: dir}
	}
	inst, env := open()
	env.createTenant(t, map[string]any{"id": "acme"})
	_, key := env.newKey(t, "acme")
	var want int64
	for i := range 3 {
		want += env.chatCost(t, chatCall{key: key, user: "u1", content: strings.Repeat("question ", i+1)})
	}
	env.srv.Close()
	if err := inst.Close(); err != nil {
		t.Fatal(err)
	}

	inst, env = open()
	defer func() {
		env.srv.Close()
		inst.Close()
	}()
	l := env.usage(t, "/admin/v1/tenants/acme/usage", testAdminToken)
	if requests, spend := l.sum("acme", "u1"); requests != 3 || spend != want {
		t.Errorf("after a restart: %d requests, %d micro-dollars; want 3, %d (%+v)", requests, spend, want, l.Data)
	}
}

// TestUsageCountsEveryKindOfCall: streamed chats and the Responses API are
// counted like plain chats.
func TestUsageCountsEveryKindOfCall(t *testing.T) {
	env := newTestEnv(t, envOptions{prices: testPrices})
	env.createTenant(t, map[string]any{"id": "acme"})
	_, key := env.newKey(t, "acme")
	if got := env.say(t, chatCall{key: key, user: "u1", content: "a streamed question", stream: true, usage: true}); got == "" {
		t.Fatal("empty streamed answer")
	}
	if r := env.do(t, "POST", "/v1/responses", key, map[string]any{"input": "a Responses question", "user": "u2"}, nil); r.status != http.StatusOK {
		t.Fatalf("responses: %v", r)
	}
	l := env.usage(t, "/v1/usage", key)
	for _, user := range []string{"u1", "u2"} {
		requests, spend := l.sum("acme", user)
		if requests != 1 || spend <= 0 {
			t.Errorf("%s: %d requests, %d micro-dollars; want 1 and a spend (%+v)", user, requests, spend, l.Data)
		}
	}
}

// TestHostileUpstreamUsage: an upstream reporting absurd token counts, huge
// or negative, cannot make a call free or its spend negative (a budget
// bypass), nor overflow the records so that no one's usage is written.
func TestHostileUpstreamUsage(t *testing.T) {
	up := newFakeUpstream(t)
	opts := envOptions{providers: map[string]llm.Provider{"fake": up.provider(t, 0)},
		prices: map[string]config.Price{"fake/gpt-test": {Input: 1000, CachedInput: 500, Output: 2000}}}
	forBackends(t, opts, func(t *testing.T, env *testEnv) {
		env.createTenant(t, map[string]any{"id": "acme", "model": "fake/gpt-test", "limits": map[string]any{"spend_per_day_usd": 5}})
		env.createTenant(t, map[string]any{"id": "globex", "model": "fake/gpt-test"})
		_, acmeKey := env.newKey(t, "acme")
		_, globexKey := env.newKey(t, "globex")

		var usage atomic.Value
		up.reply = func(w http.ResponseWriter, _ *http.Request, _ map[string]any) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":%s}`, usage.Load())
		}
		const huge = `9223372036854775807`
		for _, u := range []string{
			`{"prompt_tokens":` + huge + `,"completion_tokens":` + huge + `,"total_tokens":-2}`,
			`{"prompt_tokens":` + huge + `,"completion_tokens":1,"total_tokens":1,"prompt_tokens_details":{"cached_tokens":-` + huge + `}}`,
			`{"prompt_tokens":-1000000000,"completion_tokens":-1000000000,"total_tokens":-2000000000}`,
		} {
			usage.Store(u)
			r := env.chat(t, chatCall{key: acmeKey, user: "u1", content: "hi"})
			if r.status != http.StatusOK && r.status != http.StatusTooManyRequests {
				t.Fatalf("chat with usage %s: %v", u, r)
			}
		}
		usage.Store(`{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}`)
		env.chatCost(t, chatCall{key: globexKey, user: "u1", content: "globex's honest call"})
		if err := env.plane.FlushUsage(t.Context()); err != nil {
			t.Fatalf("flush usage after a hostile upstream: %v", err)
		}
		for _, row := range env.usage(t, "/admin/v1/usage", testAdminToken).Data {
			if row.Requests < 0 || row.InputTokens < 0 || row.CachedInputTokens < 0 || row.OutputTokens < 0 || row.SpendMicroUSD < 0 {
				t.Errorf("a negative count recorded: %+v", row)
			}
		}
		if requests, _ := env.usage(t, "/v1/usage", globexKey).sum("globex", "u1"); requests != 1 {
			t.Errorf("globex's honest call: %d requests recorded, want 1", requests)
		}
		// The calls that claimed absurd usage spent acme's budget, as
		// far as the count goes: the next one is refused.
		checkAPIError(t, env.chat(t, chatCall{key: acmeKey, user: "u2", content: "again"}), http.StatusTooManyRequests, "rate_limit_exceeded")
	})
}

// TestCancelledStreamIsCounted: a client that reads a streamed answer and
// hangs up before the upstream's final usage chunk has still had the
// answer; the call counts against its spend and token budgets, or hanging
// up would make every answer free.
func TestCancelledStreamIsCounted(t *testing.T) {
	up := newFakeUpstream(t)
	env := newTestEnv(t, envOptions{providers: map[string]llm.Provider{"fake": up.provider(t, 0)},
		prices: map[string]config.Price{"fake/gpt-test": {Input: 1000, Output: 2000}}})
	env.createTenant(t, map[string]any{"id": "acme", "model": "fake/gpt-test", "limits": map[string]any{"token_budget": 200}})
	_, key := env.newKey(t, "acme")
	answer := strings.Repeat("a long streamed answer ", 200) // ~1000 tokens
	up.reply = func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
		w.Header().Set("Content-Type", "text/event-stream")
		b, _ := json.Marshal(map[string]any{"model": "m", "choices": []any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": answer}}}})
		fmt.Fprintf(w, "data: %s\n\n", b)
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the usage chunk would come last; the client is gone first
	}
	ctx, cancel := context.WithCancel(t.Context())
	req, err := env.chatRequest(ctx, chatCall{key: key, user: "u1", content: "tell me everything", stream: true, usage: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := env.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := bufio.NewReader(res.Body)
	got, err := body.ReadString('\n')
	for err == nil && !strings.Contains(got, "streamed answer") {
		got, err = body.ReadString('\n')
	}
	if err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	cancel()
	res.Body.Close()

	var requests, spend int64
	for range 200 { // the server notices the hang-up on its own time
		if requests, spend = env.usage(t, "/v1/usage", key).sum("acme", "u1"); requests > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if requests != 1 || spend <= 0 {
		t.Errorf("the cancelled stream counted %d requests, %d micro-dollars; want 1 and a spend", requests, spend)
	}
	up.reply = nil
	checkAPIError(t, env.chat(t, chatCall{key: key, user: "u1", content: "and again"}), http.StatusTooManyRequests, "rate_limit_exceeded")
}
