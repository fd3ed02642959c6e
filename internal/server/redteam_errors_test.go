package server

// Red-team probes moved from the red team's branch (h14): F13 (provider
// error text bypassing the output guard), F7 (Cedar deciding on a rounded
// decimal) and F6 (aggregated audit counts reaching a re-created tenant).
// Each asserts the safe outcome.

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// rtRecreateB deletes tenant B and creates it again under the same id (a
// new customer, say), returning the new B's key.
func rtRecreateB(t *testing.T, w *hostileWorld) string {
	t.Helper()
	r := w.env.do(t, "DELETE", "/admin/v1/tenants/"+hostileB, testAdminToken, nil, nil)
	if r.status != http.StatusNoContent && r.status != http.StatusOK {
		t.Fatalf("delete B: %v", r)
	}
	w.env.createTenant(t, map[string]any{"id": hostileB, "system_prompt": "A new customer that happens to pick the id victim."})
	_, key := w.env.newKey(t, hostileB)
	return key
}

// TestRedteamRefusalCountsSurviveRecreate: requests refused with the old
// B's key id are counted; the count must be written to the old incarnation
// (or dropped with it), never to the new B's log. Class (f), invariant 13.
func TestRedteamRefusalCountsSurviveRecreate(t *testing.T) {
	for _, pg := range []bool{false, true} {
		t.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(t *testing.T) {
			w := newHostileWorld(t, pg)
			forged := "bk_" + w.bKeyID + "_" + strings.Repeat("A", 43)
			for range 3 {
				if r := w.env.do(t, "GET", "/v1/models", forged, nil, nil); r.status != http.StatusUnauthorized {
					t.Fatalf("forged key: %v", r)
				}
			}
			newB := rtRecreateB(t, w)
			text := hostileAuditText(auditLog(t, w.env, "/v1/audit", newB))
			if strings.Contains(text, "auth.failure") || strings.Contains(text, w.bKeyID) {
				t.Errorf("the re-created B's audit log holds the old incarnation's refusals: %s", hostileExcerpt(text))
			}
		})
	}
}

// TestRedteamLeakCountsSurviveRecreate: the same for guard.foreign_leak
// counts: the old B's canary caught leaving to A (the second one in a
// minute is counted, not written) must not end up in the new B's log.
func TestRedteamLeakCountsSurviveRecreate(t *testing.T) {
	for _, pg := range []bool{false, true} {
		t.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(t *testing.T) {
			w := newHostileWorld(t, pg)
			for range 3 {
				w.chat(t, w.aKey, "/say ref "+w.bCanary, false)
			}
			newB := rtRecreateB(t, w)
			text := hostileAuditText(auditLog(t, w.env, "/v1/audit", newB))
			if strings.Contains(text, "guard.foreign_leak") {
				t.Errorf("the re-created B's audit log holds the old incarnation's leak counts: %s", hostileExcerpt(text))
			}
		})
	}
}

// TestRedteamDecimalPolicyRounding: Cedar decimals have four fractional
// digits; a number with more must never be decided on as a rounded value.
// A forbid on amounts over 1000 must stop 1000.00004 (refused before
// policy), while an exactly representable amount under the limit passes.
// Class (d): Cedar sees exactly what is sent, or the call is refused.
func TestRedteamDecimalPolicyRounding(t *testing.T) {
	w := newHostileWorld(t, false)
	env := w.env
	env.admin(t, "POST", "/admin/v1/tools", map[string]any{
		"name": "refund", "description": "Refund", "scope": "tenant",
		"parameters": json.RawMessage(`{"type":"object","properties":{"amount":{"type":"number"}},"required":["amount"]}`),
		"http":       map[string]any{"method": "POST", "url": w.echo.URL + "/refund"},
	}, http.StatusCreated)
	env.admin(t, "PATCH", "/admin/v1/tenants/"+hostileA, map[string]any{"tools": []string{"crm_ticket", "crm_note", "refund"}}, http.StatusOK)
	policy := hostilePolicy + `
@id("no-big-refund")
forbid (principal, action == Action::"call_tool", resource == Tool::"refund")
  when { context has amount && context.amount.greaterThan(decimal("1000.0")) };`
	if r := env.do(t, "PUT", "/admin/v1/tenants/"+hostileA+"/policy", testAdminToken, policy, nil); r.status != http.StatusNoContent {
		t.Fatalf("PUT policy: %v", r)
	}
	for _, amount := range []string{"1000.5", "1000.00004", "1000.00009", "1000.000000001", "-9.2233720368547758e14"} {
		m := w.echo.mark()
		w.chat(t, w.aKey, `/call refund {"amount":`+amount+`}`, false)
		for _, r := range w.echo.since(m) {
			var got struct{ Amount float64 }
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatalf("tool body %s: %v", r.body, err)
			}
			if got.Amount > 1000 || got.Amount < -1e14 {
				t.Errorf("amount %s: the policy forbids amounts over 1000 (and Cedar cannot hold it), yet the tool server got %s", amount, r.body)
			}
		}
	}
	// Control: an amount Cedar holds exactly and the policy allows still
	// reaches the tool server.
	m := w.echo.mark()
	w.chat(t, w.aKey, `/call refund {"amount":999.9999}`, false)
	if got := w.echo.since(m); len(got) != 1 || !strings.Contains(string(got[0].body), "999.9999") {
		t.Errorf("amount 999.9999 (exact, under the limit): tool server got %v, want one call", got)
	}
}

// rtPedantic is an OpenAI-compatible provider that refuses every request
// with a 400 quoting the offending message, as validating servers do.
type rtPedantic struct{}

func (rtPedantic) Chat(_ context.Context, req llm.Request, _ func(string) error) (llm.Response, error) {
	first := req.Messages[0].Content
	return llm.Response{}, &llm.StatusError{StatusCode: 400, Message: "invalid content in messages[0]: '" + first + "'"}
}

// TestRedteamProviderErrorBypassesGuard: a provider's 400 message must not
// carry text from A's context to the client past the output guard: B's
// canary in A's system prompt (standing in for the shared-cache or
// provider bug canaries exist to catch) must not come back in the error
// body, streamed or not. Class (a): a path without the guard.
func TestRedteamProviderErrorBypassesGuard(t *testing.T) {
	env := newTestEnv(t, envOptions{providers: map[string]llm.Provider{"pedantic": rtPedantic{}}})
	env.createTenant(t, map[string]any{"id": "victim", "system_prompt": "B"})
	canary := hostileCanary(t, env, "victim")
	env.createTenant(t, map[string]any{"id": "mallory", "model": "pedantic/x", "system_prompt": "B's prompt, leaked: (Internal reference " + canary + ".)"})
	_, key := env.newKey(t, "mallory")
	for _, stream := range []bool{false, true} {
		r := env.chat(t, chatCall{key: key, content: "hi", stream: stream})
		if strings.Contains(string(r.body), canary) {
			t.Errorf("stream=%v: B's canary reached A in the provider's error: %d %.200s", stream, r.status, r.body)
		}
		if strings.Contains(string(r.body), "B's prompt, leaked") {
			t.Errorf("stream=%v: A's system prompt reached the client in the provider's error: %d %.200s", stream, r.status, r.body)
		}
	}
}
