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
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
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
// `active` tenants. onPostgres keeps everything in PostgreSQL.
func benchBulkhead(b *testing.B, upstream string, provisioned, active int, onPostgres bool) (string, []string) {
	up, err := llm.NewOpenAI(llm.OpenAIOptions{BaseURL: upstream + "/v1"})
	if err != nil {
		b.Fatal(err)
	}
	opts := envOptions{providers: map[string]llm.Provider{"upstream": up}}
	if onPostgres {
		opts.database, opts.env = postgresDatabase(b)
	}
	env := newTestEnv(b, opts)
	ctx := context.Background()
	var keys []string
	for i := range provisioned {
		id := tenant.ID(fmt.Sprintf("t%05d", i))
		// Through the admin API, so every tenant is provisioned as in
		// production (its store created, its honey record stored).
		env.admin(b, "POST", "/admin/v1/tenants", map[string]any{"id": string(id),
			"system_prompt": "You are tenant " + string(id) + "'s agent.", "model": "upstream/mock", "no_cache": true}, http.StatusCreated)
		if i < active {
			keyID, secret, hash, err := auth.NewKey()
			if err != nil {
				b.Fatal(err)
			}
			if err := env.plane.AddKey(ctx, id, keyID, hash); err != nil {
				b.Fatal(err)
			}
			keys = append(keys, secret.Reveal())
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
		name                string
		provisioned, active int
		sessions            int // X-Session-Id spread over this many; 0: none
		postgres            bool
	}{
		{"bulkhead/tenants=10", 10, 10, 0, false},
		{"bulkhead/tenants=10000/spread", 10_000, 10_000, 0, false},
		{"bulkhead/tenants=10/sessions=500", 10, 10, 500, false},
		{"bulkhead/postgres/tenants=10", 10, 10, 0, true},
		{"bulkhead/postgres/tenants=10000/spread", 10_000, 10_000, 0, true},
		{"bulkhead/postgres/tenants=10/sessions=500", 10, 10, 500, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			up := benchUpstream(b)
			url, keys := benchBulkhead(b, up.URL, tc.provisioned, tc.active, tc.postgres)
			rate := benchRate
			if tc.postgres {
				rate = benchRatePostgres
			}
			cpu := processCPU()
			openLoop(b, rate, func(i int) *http.Request {
				r, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", bytes.NewReader(benchBody))
				r.Header.Set("Authorization", "Bearer "+keys[i%len(keys)])
				r.Header.Set("Content-Type", "application/json")
				if tc.sessions > 0 {
					r.Header.Set("X-Session-Id", fmt.Sprintf("s%d", i%tc.sessions))
				}
				return r
			})
			// The client and the mock upstream run in this process too: the
			// figure is an upper bound on bulkhead's own CPU per request.
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/req")
		})
	}
}

// benchRatePostgres is issue 10's rate for the PostgreSQL runs.
const benchRatePostgres = 500

// processCPU returns the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
