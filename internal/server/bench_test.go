package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/control"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

const benchUpstreamReply = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"mock",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29}}`

// benchUpstream is a mock OpenAI-compatible model that answers at once.
func benchUpstream(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, benchUpstreamReply)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// benchBulkhead serves bulkhead over loopback in front of upstream with
// `provisioned` tenants, and returns its URL and the keys of the first
// `active` tenants.
func benchBulkhead(b *testing.B, upstream string, provisioned, active int) (string, []string) {
	up, err := llm.NewOpenAI(llm.OpenAIOptions{BaseURL: upstream + "/v1"})
	if err != nil {
		b.Fatal(err)
	}
	env := newTestEnv(b, envOptions{maxOpen: 128, providers: map[string]llm.Provider{"upstream": up}})
	ctx := context.Background()
	var keys []string
	for i := range provisioned {
		id := tenant.ID(fmt.Sprintf("t%05d", i))
		if _, err := env.plane.CreateTenant(ctx, control.Tenant{ID: id, Profiles: map[string]control.Profile{
			control.DefaultProfile: {SystemPrompt: "You are tenant " + string(id) + "'s agent.", Model: "upstream/mock", NoCache: true}}}); err != nil {
			b.Fatal(err)
		}
		if i < active {
			_, key := env.newKey(b, string(id))
			keys = append(keys, key)
		}
	}
	return env.srv.URL, keys
}

// openLoop sends b.N requests at a fixed rate regardless of how fast answers
// come (so queueing shows in the tail) and reports latency percentiles.
func openLoop(b *testing.B, rate int, newReq func(i int) *http.Request) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}
	defer client.CloseIdleConnections()
	// Warm up connections and lazily opened tenant stores.
	for i := range 50 {
		if resp, err := client.Do(newReq(i)); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	lat := make([]time.Duration, b.N)
	var failed int
	var mu sync.Mutex
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			resp, err := client.Do(newReq(i))
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			lat[i] = time.Since(t0)
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if failed > 0 {
		b.Fatalf("%d of %d requests failed", failed, b.N)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(pct(0.95), "p95-µs")
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

const benchRate = 1000

var benchBody = []byte(`{"model":"default","user":"alice","messages":[{"role":"user","content":"Hi, where is my order?"}]}`)

// BenchmarkChatRoundTrip compares calling the mock upstream directly with
// calling it through bulkhead, at 1,000 requests/s. Run with -benchtime=5000x.
func BenchmarkChatRoundTrip(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		up := benchUpstream(b)
		body := []byte(`{"model":"mock","messages":[{"role":"system","content":"You are tenant t00000's agent."},{"role":"user","content":"Hi, where is my order?"}]}`)
		openLoop(b, benchRate, func(int) *http.Request {
			r, _ := http.NewRequest(http.MethodPost, up.URL+"/v1/chat/completions", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			return r
		})
	})
	for _, tc := range []struct {
		name        string
		provisioned int
		session     bool
	}{
		{"bulkhead/tenants=10", 10, false},
		{"bulkhead/tenants=10000", 10_000, false},
		{"bulkhead/tenants=10/session", 10, true},
		{"bulkhead/tenants=10000/session", 10_000, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			up := benchUpstream(b)
			url, keys := benchBulkhead(b, up.URL, tc.provisioned, 10)
			openLoop(b, benchRate, func(i int) *http.Request {
				r, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", bytes.NewReader(benchBody))
				r.Header.Set("Authorization", "Bearer "+keys[i%len(keys)])
				r.Header.Set("Content-Type", "application/json")
				if tc.session {
					r.Header.Set("X-Session-Id", fmt.Sprintf("s%d", i%500))
				}
				return r
			})
		})
	}
}

// BenchmarkCacheHit serves the same question over and over through the real
// HTTP server: after the first, every answer comes from the response cache.
// The figure is the end-to-end latency of a hit, in process over loopback.
func BenchmarkCacheHit(b *testing.B) {
	env := newTestEnv(b, envOptions{})
	env.createTenant(b, map[string]any{"id": "acme", "system_prompt": "You are Acme's agent."})
	_, key := env.newKey(b, "acme")
	body := []byte(`{"model":"default","user":"alice","temperature":0,"messages":[{"role":"user","content":"What is the refund window?"}]}`)
	send := func() time.Duration {
		r, _ := http.NewRequest(http.MethodPost, env.srv.URL+"/v1/chat/completions", bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+key)
		t0 := time.Now()
		resp, err := env.client.Do(r)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return time.Since(t0)
	}
	send() // fill the cache
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		lat[i] = send()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
