package server

import (
	"bufio"
	"bytes"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// streamWords is the streamed answer: 30 words of prose, one SSE chunk each:
// more than the 12 words and 46 bytes a stream held back before.
var streamWords = strings.Fields(strings.Repeat("Your order shipped on Monday and should arrive by Thursday at the latest. ", 3))[:30]

// benchStreamUpstream is a mock OpenAI-compatible model that streams its
// answer as server-sent events: a role chunk, then one word a chunk, gap
// apart (0: back to back), each flushed, then usage and [DONE].
func benchStreamUpstream(b *testing.B, gap time.Duration) *httptest.Server {
	chunk := func(delta string) string {
		return `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"mock","choices":[{"index":0,"delta":` + delta + `,"finish_reason":null}]}` + "\n\n"
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		io.WriteString(w, chunk(`{"role":"assistant","content":""}`))
		f.Flush()
		for i, word := range streamWords {
			if i > 0 && gap > 0 {
				time.Sleep(gap)
			}
			if i < len(streamWords)-1 {
				word += " "
			}
			content, _ := json.Marshal(word)
			io.WriteString(w, chunk(`{"content":`+string(content)+`}`))
			f.Flush()
		}
		io.WriteString(w, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"mock","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n")
		io.WriteString(w, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"mock","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":30,"total_tokens":50}}`+"\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	b.Cleanup(srv.Close)
	return srv
}

// firstContent sends req and returns the time until the first event (the
// first byte of the stream: headers and the role chunk) and until the first
// event whose delta carries content, after reading the whole stream.
func firstContent(client *http.Client, req *http.Request) (firstByte, first time.Duration, err error) {
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		if ok && firstByte == 0 {
			firstByte = time.Since(t0)
		}
		if !ok || first != 0 || bytes.Equal(data, []byte("[DONE]")) {
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct{ Content string }
			}
		}
		if err := json.Unmarshal(data, &c); err != nil {
			return 0, 0, fmt.Errorf("event %q: %w", data, err)
		}
		if len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
			first = time.Since(t0)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if first == 0 {
		return 0, 0, fmt.Errorf("no content in the stream")
	}
	return firstByte, first, nil
}

// pacedFirstContent sends n requests at rate per second, regardless of how
// fast answers come, and returns each one's time to first byte and to first
// content, each sorted.
func pacedFirstContent(b *testing.B, n, rate int, newReq func(i int) *http.Request) (firstByte, lat []time.Duration) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}
	defer client.CloseIdleConnections()
	for i := range 50 { // warm up connections and tenant stores
		if _, _, err := firstContent(client, newReq(i)); err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	firstByte, lat = make([]time.Duration, n), make([]time.Duration, n)
	var mu sync.Mutex
	var failed []error
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		wg.Go(func() {
			fb, d, err := firstContent(client, newReq(i))
			firstByte[i], lat[i] = fb, d
			if err != nil {
				mu.Lock()
				failed = append(failed, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		b.Fatalf("%d of %d requests failed, first: %v", len(failed), n, failed[0])
	}
	slices.Sort(firstByte)
	slices.Sort(lat)
	return firstByte, lat
}

// streamBenchRate is the request rate, 500/s unless BULKHEAD_STREAM_BENCH_RATE
// sets another (a machine too busy to serve 500 streams a second measures
// its own queue, not bulkhead).
func streamBenchRate(b *testing.B) int {
	v := os.Getenv("BULKHEAD_STREAM_BENCH_RATE")
	if v == "" {
		return 500
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("BULKHEAD_STREAM_BENCH_RATE=%q: want a positive integer", v)
	}
	return n
}

// benchStreamBulkhead serves bulkhead in front of upstream with n tenants
// created through the admin API, as in production: each has a canary (in
// its prompt and the guard) and a honey record, and its system prompt is
// fingerprinted. With secrets every tenant but the first also stores a
// random token the guard tracks, so a stream to the first holds back for
// other tenants' secrets (and not for its own, the redactor's).
func benchStreamBulkhead(b *testing.B, upstream string, n int, secrets bool) (string, []string) {
	up, err := llm.NewOpenAI(llm.OpenAIOptions{BaseURL: upstream + "/v1"})
	if err != nil {
		b.Fatal(err)
	}
	env := newTestEnv(b, envOptions{maxOpen: 128, providers: map[string]llm.Provider{"upstream": up}})
	var keys []string
	for i := range n {
		id := fmt.Sprintf("t%05d", i)
		env.createTenant(b, map[string]any{"id": id, "system_prompt": "You are tenant " + id + "'s agent.",
			"model": "upstream/mock", "no_cache": true})
		_, key := env.newKey(b, id)
		keys = append(keys, key)
		if secrets && i > 0 {
			tok := make([]byte, 24)
			crand.Read(tok)
			env.admin(b, "PUT", "/admin/v1/tenants/"+id+"/secrets/crm_token", map[string]string{"value": base64.StdEncoding.EncodeToString(tok)}, http.StatusNoContent)
		}
	}
	return env.srv.URL, keys
}

// BenchmarkStreamFirstContent measures, at 500 streamed requests/s (see
// streamBenchRate), the time
// to the first content byte directly from a streaming mock upstream and
// through bulkhead (guard on, one tenant of ten), and reports bulkhead's
// overhead at p50 and p99. The upstream sends 30 words one chunk each,
// back to back (gap=0) or 1 ms apart (gap=1ms, a fast model's pace; what a
// stream holds back shows here), and 1 ms apart to a tenant whose nine
// neighbours store a tracked secret each (gap=1ms/secrets). Each iteration
// is one request of each kind. Run with -benchtime=2000x.
func BenchmarkStreamFirstContent(b *testing.B) {
	for _, c := range []struct {
		gap     time.Duration
		secrets bool
	}{{0, false}, {time.Millisecond, false}, {time.Millisecond, true}} {
		name := fmt.Sprintf("gap=%v", c.gap)
		if c.secrets {
			name += "/secrets"
		}
		gap := c.gap
		b.Run(name, func(b *testing.B) {
			up := benchStreamUpstream(b, gap)
			url, keys := benchStreamBulkhead(b, up.URL, 10, c.secrets)
			if c.secrets {
				keys = keys[:1]
			}
			directBody := []byte(`{"model":"mock","stream":true,"messages":[{"role":"system","content":"You are tenant t00000's agent."},{"role":"user","content":"Where is my order?"}]}`)
			body := []byte(`{"model":"default","user":"alice","stream":true,"messages":[{"role":"user","content":"Where is my order?"}]}`)
			rate := streamBenchRate(b)
			b.ResetTimer()
			directFB, direct := pacedFirstContent(b, b.N, rate, func(int) *http.Request {
				r, _ := http.NewRequest(http.MethodPost, up.URL+"/v1/chat/completions", bytes.NewReader(directBody))
				r.Header.Set("Content-Type", "application/json")
				return r
			})
			throughFB, through := pacedFirstContent(b, b.N, rate, func(i int) *http.Request {
				r, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", bytes.NewReader(body))
				r.Header.Set("Authorization", "Bearer "+keys[i%len(keys)])
				r.Header.Set("Content-Type", "application/json")
				return r
			})
			b.StopTimer()
			pct := func(lat []time.Duration, p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
			b.ReportMetric(us(pct(direct, 0.50)), "direct-p50-µs")
			b.ReportMetric(us(pct(through, 0.50)), "bulkhead-p50-µs")
			b.ReportMetric(us(pct(direct, 0.99)), "direct-p99-µs")
			b.ReportMetric(us(pct(through, 0.99)), "bulkhead-p99-µs")
			b.ReportMetric(us(pct(through, 0.50)-pct(direct, 0.50)), "overhead-p50-µs")
			b.ReportMetric(us(pct(through, 0.99)-pct(direct, 0.99)), "overhead-p99-µs")
			// First byte: the headers and the role chunk, which bulkhead
			// sends once the upstream has accepted the request.
			b.ReportMetric(us(pct(throughFB, 0.50)-pct(directFB, 0.50)), "ttfb-overhead-p50-µs")
			b.ReportMetric(us(pct(throughFB, 0.99)-pct(directFB, 0.99)), "ttfb-overhead-p99-µs")
		})
	}
}
