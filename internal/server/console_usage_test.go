package server

import (
	"net/http"
	"strings"
	"testing"
)

func TestUsageModel(t *testing.T) {
	if v := usageModel(nil, true); len(v.Charts) != 0 || len(v.Tables) != 0 {
		t.Errorf("no rows: got %d charts, %d tables; want none", len(v.Charts), len(v.Tables))
	}
	rows := []UsageRow{
		{Day: "2026-12-03", Tenant: "acme", EndUser: "alice", Model: "m", Requests: 2, InputTokens: 100, OutputTokens: 50, SpendMicroUSD: 1500},
		{Day: "2026-12-04", Tenant: "acme", EndUser: "alice", Model: "m", Requests: 1, InputTokens: 10, OutputTokens: 5, SpendMicroUSD: 500},
		{Day: "2026-12-04", Tenant: "acme", EndUser: "bob", Model: "n", Requests: 3, InputTokens: 30, CachedInputTokens: 20, OutputTokens: 15, SpendMicroUSD: 250},
		{Day: "2026-12-04", Tenant: "globex", EndUser: "alice", Model: "m", Requests: 2, InputTokens: 1, OutputTokens: 1, SpendMicroUSD: 0},
	}
	v := usageModel(rows, true)
	if len(v.Charts) != 3 {
		t.Fatalf("got %d charts, want requests, tokens and spend", len(v.Charts))
	}
	req := v.Charts[0]
	if len(req.Bars) != 2 || req.Bars[0].Label != "2026-12-03" || req.Bars[1].Label != "2026-12-04" {
		t.Fatalf("request bars %+v, want one per day in order", req.Bars)
	}
	// 2 requests on the 3rd, 6 on the 4th: the 4th is the full height.
	if full := chartBase - chartTop; req.Bars[1].H != full || req.Bars[0].H != full/3 || req.Bars[0].Y != chartBase-full/3 {
		t.Errorf("bar heights %d, %d; want %d and %d", req.Bars[0].H, req.Bars[1].H, full/3, full)
	}
	if req.MaxLabel != "6" || req.Bars[1].Value != "6" || v.Charts[2].Bars[0].Value != "0.0015" {
		t.Errorf("labels: max %q, value %q, spend %q", req.MaxLabel, req.Bars[1].Value, v.Charts[2].Bars[0].Value)
	}
	if tok := v.Charts[1].Bars[0].Value; tok != "150" {
		t.Errorf("tokens on the 3rd = %s, want 150 (input + output)", tok)
	}
	if len(v.Tables) != 2 || v.Tables[0].Who != "Tenant" || v.Tables[1].Who != "End user" {
		t.Fatalf("tables %+v, want per tenant and per end user", v.Tables)
	}
	if got := v.Tables[0].Rows[0]; got.Day != "2026-12-04" || got.Who != "acme" || got.Requests != 4 || got.CachedInputTokens != 20 || got.Spend != "0.00075" {
		t.Errorf("newest tenant row %+v, want acme on the 4th, 4 requests, 20 cached, 0.00075 USD", got)
	}
	// Users of two tenants with one id stay apart in the operator's view.
	users := map[string]bool{}
	for _, r := range v.Tables[1].Rows {
		users[r.Who] = true
	}
	if !users["acme/alice"] || !users["globex/alice"] {
		t.Errorf("end users %v, want acme/alice and globex/alice apart", users)
	}
	if one := usageModel(rows[:3], false); len(one.Tables) != 1 || one.Tables[0].Rows[0].Who != "alice" {
		t.Errorf("one tenant's view: %+v, want only the per-user table, users unprefixed", one.Tables)
	}
}

func TestUsagePageRendersCharts(t *testing.T) {
	rows := []UsageRow{{Day: "2026-12-04", Tenant: "acme", EndUser: "alice", Requests: 3, InputTokens: 9, SpendMicroUSD: 42}}
	for _, tc := range []struct {
		rows []UsageRow
		want []string
	}{
		{nil, []string{`id="no-usage"`}},
		{rows, []string{"<svg", `class="bar"`, "<title>2026-12-04: 3</title>", "alice", "0.000042"}},
	} {
		m := usageModel(tc.rows, false)
		m.Tenant = "acme"
		var b strings.Builder
		if err := consolePages["usage"].ExecuteTemplate(&b, "layout", consoleView{Title: "Usage", Data: m}); err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%d rows: no %q in the page", len(tc.rows), w)
			}
		}
	}
}

// TestConsoleUsageEndUsersStayApart: an end user whose id reads like the
// page's own label for requests naming no end user ("(none)") is not summed
// with them: a tenant's user cannot hide its use among the backend's, or
// make the backend's look like its own.
func TestConsoleUsageEndUsersStayApart(t *testing.T) {
	env := newTestEnv(t, envOptions{prices: testPrices})
	env.createTenant(t, map[string]any{"id": "acme"})
	_, key := env.newKey(t, "acme")
	env.chatCost(t, chatCall{key: key, content: "the backend's own request"})
	for range 2 {
		env.chatCost(t, chatCall{key: key, user: "(none)", content: "an end user named like no end user"})
	}
	for _, who := range []string{testAdminToken, key} {
		c := env.consoleClient()
		c.signIn(t, who)
		for _, path := range []string{"/console/tenants/acme/usage", "/console/usage"} {
			if who == key && path == "/console/usage" {
				continue // the operator's page
			}
			page := c.get(t, path)
			if page.status != http.StatusOK {
				t.Fatalf("GET %s: %v", path, page)
			}
			// One row of 1 request and one of 2, never one of 3.
			table := string(page.body[strings.LastIndex(string(page.body), "Per end user"):])
			for _, want := range []string{"<td>1</td>", "<td>2</td>"} {
				if !strings.Contains(table, want) {
					t.Errorf("%s: no row with %s in %s", path, want, table)
				}
			}
			if strings.Contains(table, "<td>3</td>") {
				t.Errorf("%s: the anonymous requests and end user \"(none)\" are summed in one row: %s", path, table)
			}
		}
	}
}
