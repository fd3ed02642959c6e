package server

// Tool-call classes beyond hostile_test.go's table, found by a red-team
// probe of the canonical tool-call path: a canary or secret split over
// three or more argument strings (or over a key and its value), a numeric
// secret sent as a JSON number that rounds to it, keys a server maps onto a
// bound key by separator or camelCase conventions, and arguments shadowing
// a tool URL's fixed query parameters. Each subtest is one class; for each
// variant nothing may reach the tool server, and the refusal must be in A's
// audit log without the value.

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/memory"
)

// argsplitThirds cuts s into three pieces.
func argsplitThirds(s string) (string, string, string) {
	n := len(s) / 3
	return s[:n], s[n : 2*n], s[2*n:]
}

// argsplitRefused fails unless the call reached no tool server and left a
// refusal in A's audit log (a denial, if deny), free of the needles.
func argsplitRefused(t *testing.T, w *hostileWorld, class, variant, call string, deny bool, needles ...hostileNeedle) {
	t.Helper()
	seq := w.lastSeq(t, w.aKey)
	m := w.echo.mark()
	rep := w.chat(t, w.aKey, call, false)
	if reqs := w.echo.since(m); len(reqs) != 0 {
		t.Errorf("class %s: %s: the tool server received %s (A got %s), want the call refused",
			class, variant, hostileExcerpt(string(reqs[0].body)+" ?"+reqs[0].query), hostileExcerpt(rep.content))
	}
	if !strings.Contains(rep.content, "refused") {
		t.Errorf("class %s: %s: A got %s, want a refusal", class, variant, hostileExcerpt(rep.content))
	}
	recs := w.auditAfter(t, w.aKey, seq)
	text := hostileAuditText(recs)
	switch {
	case deny && !strings.Contains(text, `"decision":"deny"`):
		t.Errorf("class %s: %s: A's audit log after the call holds no denial: %s", class, variant, hostileExcerpt(text))
	case !strings.Contains(text, `"decision":"deny"`) && !strings.Contains(text, `"decision":"invalid_arguments"`) && !strings.Contains(text, "guard.block"):
		t.Errorf("class %s: %s: A's audit log after the call holds no refusal: %s", class, variant, hostileExcerpt(text))
	}
	hostileCheckNo(t, class, variant, "A's audit log", text, needles...)
}

func TestArgSplit(t *testing.T) {
	w := newHostileWorld(t, false)
	env := w.env
	canary := w.bCanary

	// Control: an honest call with several strings still goes through, so
	// the refusals below are the checks, not a blanket refusal.
	t.Run("control_honest_call_with_several_strings", func(t *testing.T) {
		m := w.echo.mark()
		rep := w.chat(t, w.aKey, `/call crm_note {"customer":"c-ok","subject":"printer","body":"It jams.","tags":["a","b","c"],"ref":4929}`, false)
		if reqs := w.echo.since(m); len(reqs) != 1 {
			t.Fatalf("an honest call reached the tool server %d times, want once (A got %s)", len(reqs), hostileExcerpt(rep.content))
		}
	})

	t.Run("split_over_three_or_more_strings", func(t *testing.T) {
		const class = "split over 3+ strings"
		c1, c2, c3 := argsplitThirds(canary)
		s1, s2, s3 := argsplitThirds(hostileAToken)
		half, shalf := len(canary)/2, len(hostileAToken)/2
		q := hostileJSONString
		for _, v := range []struct{ name, call string }{
			{"B's canary in thirds over body, customer, subject", `/call crm_ticket {"body":` + q(c1) + `,"customer":` + q(c2) + `,"subject":` + q(c3) + `}`},
			{"B's canary in thirds under keys ! # $", `/call crm_note {"customer":"c-rt","!":` + q(c1) + `,"#":` + q(c2) + `,"$":` + q(c3) + `}`},
			{"B's canary in halves, key then value", `/call crm_note {"customer":"c-rt",` + q(canary[:half]) + `:` + q(canary[half:]) + `}`},
			{"B's canary in thirds over three keys", `/call crm_note {"customer":"c-rt",` + q("!"+c1) + `:"x",` + q("#"+c2) + `:"y",` + q("$"+c3) + `:"z"}`},
			{"B's canary in thirds over array items", `/call crm_note {"customer":"c-rt","x":[` + q(c1) + `,` + q(c2) + `,` + q(c3) + `]}`},
			{"A's token in thirds over body, customer, subject", `/call crm_ticket {"body":` + q(s1) + `,"customer":` + q(s2) + `,"subject":` + q(s3) + `}`},
			{"A's token in halves, key then value", `/call crm_note {"customer":"c-rt",` + q(hostileAToken[:shalf]) + `:` + q(hostileAToken[shalf:]) + `}`},
		} {
			// A guard block, or a refusal of the model's raw text once
			// the redactor cut the secret out of it.
			argsplitRefused(t, w, class, v.name, v.call, false, w.bCanaryNeedle, w.aSecret)
		}
	})

	t.Run("own_numeric_secret_as_json_number", func(t *testing.T) {
		const class = "numeric secret as a JSON number"
		const acct = "4929173805561234"
		env.admin(t, "PUT", "/admin/v1/tenants/"+hostileA+"/secrets/acct_no", map[string]string{"value": acct}, http.StatusNoContent)
		defer env.admin(t, "DELETE", "/admin/v1/tenants/"+hostileA+"/secrets/acct_no", nil, http.StatusNoContent)
		needle := hostileSecretNeedle("A's acct_no secret", acct)
		for _, v := range []struct{ name, args string }{
			{"as a JSON number", `{"customer":"c-rt","ref":` + acct + `}`},
			{"in an array", `{"customer":"c-rt","refs":[` + acct + `]}`},
			{"in exponent form", `{"customer":"c-rt","ref":4.929173805561234e15}`},
			{"split by the decimal point", `{"customer":"c-rt","ref":4929.173805561234e12}`},
			{"digits that round to it", `{"customer":"c-rt","ref":4929173805561233.6}`},
			{"digits that round to it, exponent form", `{"customer":"c-rt","ref":4.9291738055612336e15}`},
			{"nested, digits that round to it", `{"customer":"c-rt","x":{"y":[1,4929173805561233.6]}}`},
			// Read as an escape, "%23" hides the two digits after '%';
			// read literally, the value is there whole.
			{"a string with a percent before two of its digits", `{"customer":"c-rt","ref":"4929173805561%234"}`},
		} {
			m := w.echo.mark()
			rep := w.chat(t, w.aKey, "/call crm_note "+v.args, false)
			for _, r := range w.echo.since(m) {
				hostileCheckNo(t, class, v.name, "what the tool server received", string(r.body), needle)
			}
			if !strings.Contains(rep.content, "refused") {
				t.Errorf("class %s: %s: A got %s, want a refusal", class, v.name, hostileExcerpt(rep.content))
			}
		}
	})

	t.Run("bound_key_separator_and_camelcase_spellings", func(t *testing.T) {
		const class = "loose spellings of bound keys"
		for _, key := range []string{"userId", "user-id", "user.id", "user id", "userid", "USERID", "tenantId", "tenant-id",
			"workspaceId", "WorkspaceId", "Workspace-ID", "_user_id", "user__id", "t.e.n.a.n.t.i.d", "UserＩd"} {
			for _, tool := range []string{"crm_note", "crm_ticket"} {
				call := "/call " + tool + ` {"customer":"c-rt",` + hostileJSONString(key) + `:` + hostileJSONString(hostileB) + `}`
				argsplitRefused(t, w, class, tool+" "+key, call, true)
			}
		}
		// A declared key's loose spelling, not only a bound key's.
		argsplitRefused(t, w, class, "crm_note Cust-omer, a declared key", `/call crm_note {"customer":"c-rt","Cust-omer":"vip"}`, true)
	})

	t.Run("arguments_shadowing_url_query_parameters", func(t *testing.T) {
		const class = "fixed query parameter shadowed"
		params := json.RawMessage(`{"type":"object","properties":{"customer":{"type":"string"}},"required":["customer"],"additionalProperties":true}`)
		headers := map[string]string{"Authorization": "Bearer {{secret.crm_token}}"}
		env.admin(t, "POST", "/admin/v1/tools", map[string]any{"name": "crm_lookup", "description": "Look up a customer", "scope": "tenant",
			"parameters": params, "http": map[string]any{"method": "GET", "url": w.echo.URL + "/lookup?scope=read&api_key={{secret.crm_token}}", "headers": headers}}, http.StatusCreated)
		env.admin(t, "POST", "/admin/v1/tools", map[string]any{"name": "crm_post", "description": "Post a note", "scope": "tenant",
			"parameters": params, "http": map[string]any{"method": "POST", "url": w.echo.URL + "/post?scope=read&api_key={{secret.crm_token}}", "headers": headers}}, http.StatusCreated)
		all := []string{"crm_ticket", "crm_note", memory.ToolKBSearch, "crm_lookup", "crm_post"}
		env.admin(t, "PATCH", "/admin/v1/tenants/"+hostileA, map[string]any{"tools": all}, http.StatusOK)
		defer env.admin(t, "PATCH", "/admin/v1/tenants/"+hostileA, map[string]any{"tools": []string{"crm_ticket", "crm_note", memory.ToolKBSearch}}, http.StatusOK)

		// Controls: both tools work with their declared argument.
		for _, tool := range []string{"crm_lookup", "crm_post"} {
			m := w.echo.mark()
			rep := w.chat(t, w.aKey, "/call "+tool+` {"customer":"c-ok","note":"x"}`, false)
			if reqs := w.echo.since(m); len(reqs) != 1 {
				t.Fatalf("control: %s reached the tool server %d times, want once (A got %s)", tool, len(reqs), hostileExcerpt(rep.content))
			}
		}
		for _, tool := range []string{"crm_lookup", "crm_post"} {
			for _, key := range []string{"scope", "SCOPE", "Scope", "scope\u200b", "ſcope", "s-cope", "api_key", "apiKey", "API-KEY"} {
				call := "/call " + tool + ` {"customer":"c-rt",` + hostileJSONString(key) + `:"admin"}`
				argsplitRefused(t, w, class, tool+" "+key, call, true)
			}
		}
	})
}
