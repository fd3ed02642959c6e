package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/config"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// telemetryModes are the settings the telemetry benchmarks compare.
func telemetryModes(collectorURL string) []struct {
	name      string
	metrics   config.Metrics
	telemetry config.Telemetry
} {
	return []struct {
		name      string
		metrics   config.Metrics
		telemetry config.Telemetry
	}{
		{"off", config.Metrics{Disabled: true}, config.Telemetry{}},
		{"metrics", config.Metrics{Tenants: []tenant.ID{"t00000"}}, config.Telemetry{}},
		{"metrics+tracing", config.Metrics{Tenants: []tenant.ID{"t00000"}}, config.Telemetry{OTLPEndpoint: collectorURL}},
	}
}

// discardCollector accepts OTLP/HTTP exports and drops them.
func discardCollector(b *testing.B) *httptest.Server {
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	b.Cleanup(collector.Close)
	return collector
}

// BenchmarkChatTelemetryInProcess serves chat turns of the offline model
// one after another straight into the handler (no sockets, no upstream), so
// ns/op is the server's own time per request and the difference between
// the modes is what telemetry costs.
func BenchmarkChatTelemetryInProcess(b *testing.B) {
	collector := discardCollector(b)
	for _, tc := range telemetryModes(collector.URL) {
		b.Run(tc.name, func(b *testing.B) {
			env := newTestEnv(b, envOptions{metrics: tc.metrics, telemetry: tc.telemetry})
			env.createTenant(b, map[string]any{"id": "t00000", "system_prompt": "You are t00000's agent.", "no_cache": true})
			_, key := env.newKey(b, "t00000")
			h := env.srv.Config.Handler
			serve := func() time.Duration {
				r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(benchBody))
				r.Header.Set("Authorization", "Bearer "+key)
				w := httptest.NewRecorder()
				t0 := time.Now()
				h.ServeHTTP(w, r)
				d := time.Since(t0)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
				return d
			}
			for range 100 {
				serve()
			}
			lat := make([]time.Duration, b.N)
			b.ResetTimer()
			for i := range b.N {
				lat[i] = serve()
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
		})
	}
}

// BenchmarkChatTelemetry measures what metrics and tracing add to a chat
// round trip at 1,000 requests/s: off (metrics disabled, no tracer), metrics
// only, and metrics with every span exported over OTLP/HTTP to a collector
// that discards them. Run with -benchtime=5000x.
func BenchmarkChatTelemetry(b *testing.B) {
	collector := discardCollector(b)
	for _, tc := range telemetryModes(collector.URL) {
		b.Run(tc.name, func(b *testing.B) {
			up := benchUpstream(b)
			provider, err := llm.NewOpenAI(llm.OpenAIOptions{BaseURL: up.URL + "/v1"})
			if err != nil {
				b.Fatal(err)
			}
			env := newTestEnv(b, envOptions{providers: map[string]llm.Provider{"upstream": provider},
				metrics: tc.metrics, telemetry: tc.telemetry})
			var keys []string
			for i := range 10 {
				id := fmt.Sprintf("t%05d", i)
				env.admin(b, "POST", "/admin/v1/tenants", map[string]any{"id": id,
					"system_prompt": "You are tenant " + id + "'s agent.", "model": "upstream/mock", "no_cache": true}, http.StatusCreated)
				keyID, secret, hash, err := auth.NewKey()
				if err != nil {
					b.Fatal(err)
				}
				if err := env.plane.AddKey(b.Context(), tenant.ID(id), keyID, hash); err != nil {
					b.Fatal(err)
				}
				keys = append(keys, secret.Reveal())
			}
			openLoop(b, benchRate, func(i int) *http.Request {
				r, _ := http.NewRequest(http.MethodPost, env.srv.URL+"/v1/chat/completions", bytes.NewReader(benchBody))
				r.Header.Set("Authorization", "Bearer "+keys[i%len(keys)])
				r.Header.Set("Content-Type", "application/json")
				return r
			})
		})
	}
}
