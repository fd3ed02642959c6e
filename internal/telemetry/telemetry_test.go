package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// TestLabelsAreBounded: only a configured tenant gets its own label, and
// an event name that is not one of the agent's is never counted.
func TestLabelsAreBounded(t *testing.T) {
	tel, err := New(Options{Tenants: []tenant.ID{"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []tenant.ID{"acme", "globex"} {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tel.Authenticated(r.Context(), id)
			tel.Event(r.Context(), agent.EventQuotaRefused, "")
			tel.Event(r.Context(), "made-up "+string(id), "detail "+string(id))
			tel.Stage(r.Context(), agent.StageModel, time.Millisecond)
			w.WriteHeader(http.StatusTeapot)
		})
		rec := httptest.NewRecorder()
		tel.Serve(rec, httptest.NewRequest("GET", "/v1/x/123", nil), "GET /v1/x/{id}", h, func() string { return "" })
	}
	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := rec.Body.String()
	for _, want := range []string{
		`bulkhead_http_requests_total{route="GET /v1/x/{id}",status="418",tenant="acme"} 1`,
		`bulkhead_http_requests_total{route="GET /v1/x/{id}",status="418",tenant=""} 1`,
		`bulkhead_quota_refusals_total{tenant="acme"} 1`,
		`bulkhead_quota_refusals_total{tenant=""} 1`,
		`bulkhead_stage_duration_seconds_count{stage="auth"} 2`,
		`bulkhead_stage_duration_seconds_count{stage="model"} 2`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, never := range []string{"globex", "made-up", "/v1/x/123"} {
		if strings.Contains(out, never) {
			t.Errorf("metrics hold %q", never)
		}
	}
	// Outside a request nothing panics and nothing is labelled.
	tel.Event(context.Background(), agent.EventCache, "hit")
	var none *Telemetry
	none.Stage(context.Background(), agent.StageModel, time.Millisecond)
}
