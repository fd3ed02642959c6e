package server

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// scrape reads /metrics through the admin API.
func scrape(t *testing.T, env *testEnv) map[string]*dto.MetricFamily {
	t.Helper()
	r := env.admin(t, "GET", "/metrics", nil, http.StatusOK)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, r.body)
	}
	return fams
}

// sample returns the value of the series of name with exactly labels (a
// counter's value, a histogram's count or a gauge's value), and whether it
// exists.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			if l.GetValue() != "" { // an empty label is no label
				got[l.GetName()] = l.GetValue()
			}
		}
		if len(got) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			if got[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

// TestMetricsAfterMixedTraffic sends answered, unauthenticated, rate
// limited, guard-blocked, tool-denied and cached requests, then scrapes
// /metrics and checks each series: routes are mux patterns, only the
// configured tenant has series of its own, and no label holds a path id,
// a tool name the model made up or anything a message said.
func TestMetricsAfterMixedTraffic(t *testing.T) {
	env := newTestEnv(t, envOptions{metrics: config.Metrics{Tenants: []tenant.ID{"acme"}}})
	env.createTenant(t, map[string]any{"id": "acme", "tools": []string{"memory_search", "memory_save"}})
	env.createTenant(t, map[string]any{"id": "globex", "limits": map[string]any{"requests_per_minute": 1}})
	const marker = "MARKER-7f3a9c"
	env.admin(t, "PUT", "/admin/v1/tenants/acme/policy",
		`forbid (principal, action, resource == Tool::"memory_save") when { context.text like "*`+marker+`*" };`, http.StatusNoContent)
	_, acmeKey := env.newKey(t, "acme")
	_, globexKey := env.newKey(t, "globex")
	globex, err := env.plane.Tenant("globex")
	if err != nil || len(globex.Canaries) == 0 {
		t.Fatalf("globex has no canary: %v", err)
	}

	env.say(t, chatCall{key: acmeKey, content: "hello " + marker})                                    // ok
	env.say(t, chatCall{key: acmeKey, content: "/call memory_save {\"text\":\"" + marker + "\"}"})    // denied
	env.say(t, chatCall{key: acmeKey, content: "/call memory_search {\"query\":\"" + marker + "\"}"}) // allowed
	env.say(t, chatCall{key: acmeKey, content: "/call made_up_" + marker + " {}"})                    // not offered
	cached := chatCall{key: acmeKey, content: "cache me " + marker, extra: map[string]any{"temperature": 0}}
	env.say(t, cached) // miss
	env.say(t, cached) // hit
	if got := env.say(t, chatCall{key: acmeKey, content: unseen("/say " + globex.Canaries[0])}); !strings.Contains(got, "withheld") {
		t.Fatalf("another tenant's canary: got %q, want it withheld", got)
	}
	checkAPIError(t, env.chat(t, chatCall{key: "bk_not_a_real_key", content: "hi"}), http.StatusUnauthorized, "invalid_api_key")
	env.say(t, chatCall{key: globexKey, content: "first"})
	if r := env.chat(t, chatCall{key: globexKey, content: "second"}); r.status != http.StatusTooManyRequests {
		t.Fatalf("globex over its limit: got %v, want 429", r)
	}
	env.do(t, "GET", "/v1/documents/doc_"+marker, acmeKey, nil, nil) // a 404 under a pattern

	fams := scrape(t, env)
	const chat = "POST /v1/chat/completions"
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"bulkhead_http_requests_total", map[string]string{"route": chat, "status": "200", "tenant": "acme"}, 7},
		{"bulkhead_http_requests_total", map[string]string{"route": chat, "status": "200"}, 1}, // globex: no series of its own
		{"bulkhead_http_requests_total", map[string]string{"route": chat, "status": "401"}, 1},
		{"bulkhead_http_requests_total", map[string]string{"route": chat, "status": "429"}, 1},
		{"bulkhead_http_requests_total", map[string]string{"route": "GET /v1/documents/{id}", "status": "404", "tenant": "acme"}, 1},
		{"bulkhead_tool_calls_total", map[string]string{"tool": "memory_save", "decision": "deny", "tenant": "acme"}, 1},
		{"bulkhead_tool_calls_total", map[string]string{"tool": "memory_search", "decision": "allow", "tenant": "acme"}, 1},
		{"bulkhead_tool_calls_total", map[string]string{"tool": "unknown", "decision": "deny", "tenant": "acme"}, 1},
		{"bulkhead_response_cache_lookups_total", map[string]string{"result": "hit", "tenant": "acme"}, 1},
		{"bulkhead_response_cache_lookups_total", map[string]string{"result": "miss", "tenant": "acme"}, 1},
		{"bulkhead_guard_blocks_total", map[string]string{"kind": "canary", "tenant": "acme"}, 1},
		{"bulkhead_quota_refusals_total", map[string]string{}, 1},
		{"bulkhead_http_request_duration_seconds", map[string]string{"route": chat}, 10},
		// Every authenticated request; every turn admitted or refused;
		// every turn admitted.
		{"bulkhead_stage_duration_seconds", map[string]string{"stage": "auth"}, 10},
		{"bulkhead_stage_duration_seconds", map[string]string{"stage": "quota"}, 9},
		{"bulkhead_stage_duration_seconds", map[string]string{"stage": "cache"}, 8},
		{"bulkhead_stage_duration_seconds", map[string]string{"stage": "retrieval"}, 1},
	} {
		got, ok := sample(fams, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v: got %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for _, stage := range []string{"model", "tools", "guard", "audit"} {
		if n, _ := sample(fams, "bulkhead_stage_duration_seconds", map[string]string{"stage": stage}); n == 0 {
			t.Errorf("stage %s: no observations", stage)
		}
	}
	if n, ok := sample(fams, "bulkhead_open_tenant_databases", map[string]string{}); !ok || n < 1 {
		t.Errorf("open tenant databases: got %v (present %v), want at least 1", n, ok)
	}
	// No label anywhere holds what a request carried, nor globex's id.
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if strings.Contains(l.GetValue(), marker) || l.GetValue() == "globex" || strings.Contains(l.GetValue(), globex.Canaries[0]) {
					t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// TestMetricsNeedTheAdminToken: on the main address /metrics is the
// operator's; a tenant key or no token gets 401.
func TestMetricsNeedTheAdminToken(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	_, key := env.newKey(t, "acme")
	for _, token := range []string{"", key} {
		r := env.do(t, "GET", "/metrics", token, nil, nil)
		if r.status != http.StatusUnauthorized || slices.Contains(strings.Fields(string(r.body)), "bulkhead_http_requests_total") {
			t.Errorf("GET /metrics with %q: got %v, want 401", token, r)
		}
	}
}
