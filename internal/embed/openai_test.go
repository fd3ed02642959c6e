package embed

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/secret"
)

const testKey = "sk-test-SECRET-1234567890"

func newTestOpenAI(t testing.TB, baseURL string, opts OpenAIOptions) *OpenAI {
	t.Helper()
	opts.BaseURL = baseURL
	if opts.Model == "" {
		opts.Model = "test-embed"
	}
	c, err := NewOpenAI(opts)
	if err != nil {
		t.Fatalf("NewOpenAI: %v", err)
	}
	c.base = time.Millisecond
	return c
}

func TestNewOpenAI(t *testing.T) {
	ok := OpenAIOptions{BaseURL: "http://127.0.0.1:11434/v1/", Model: "nomic-embed-text"}
	c, err := NewOpenAI(ok)
	if err != nil {
		t.Fatal(err)
	}
	if c.endpoint != "http://127.0.0.1:11434/v1/embeddings" {
		t.Errorf("endpoint = %q", c.endpoint)
	}
	if c.Model() != "openai:http://127.0.0.1:11434/v1/nomic-embed-text" {
		t.Errorf("Model() = %q", c.Model())
	}
	if c.batch != 64 || c.maxRetries != 2 || c.timeout != 60*time.Second || c.Dim() != 0 {
		t.Errorf("defaults: batch %d, retries %d, timeout %s, dim %d", c.batch, c.maxRetries, c.timeout, c.Dim())
	}
	bad := map[string]func(o *OpenAIOptions){
		"empty URL":      func(o *OpenAIOptions) { o.BaseURL = "" },
		"ftp":            func(o *OpenAIOptions) { o.BaseURL = "ftp://example.com" },
		"no host":        func(o *OpenAIOptions) { o.BaseURL = "http:///v1" },
		"user info":      func(o *OpenAIOptions) { o.BaseURL = "http://u:" + testKey + "@example.com/v1" },
		"query":          func(o *OpenAIOptions) { o.BaseURL = "http://example.com/v1?key=" + testKey },
		"no model":       func(o *OpenAIOptions) { o.Model = "" },
		"NUL model":      func(o *OpenAIOptions) { o.Model = "a\x00b" },
		"negative dim":   func(o *OpenAIOptions) { o.Dim = -1 },
		"huge batch":     func(o *OpenAIOptions) { o.BatchSize = 5000 },
		"negative batch": func(o *OpenAIOptions) { o.BatchSize = -1 },
		"negative time":  func(o *OpenAIOptions) { o.Timeout = -time.Second },
	}
	for name, mutate := range bad {
		o := ok
		o.APIKey = testKey
		mutate(&o)
		_, err := NewOpenAI(o)
		if err == nil {
			t.Errorf("%s: NewOpenAI succeeded, want error", name)
			continue
		}
		if strings.Contains(err.Error(), testKey) {
			t.Errorf("%s: error %q contains the API key", name, err)
		}
	}
}

func TestOpenAIOptionsRedacted(t *testing.T) {
	o := OpenAIOptions{BaseURL: "http://x/v1", APIKey: testKey, Model: "m"}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("cfg", "opts", o)
	for _, s := range []string{o.String(), fmt.Sprint(o), fmt.Sprintf("%+v", o), logged.String()} {
		if strings.Contains(s, testKey) {
			t.Errorf("options print the key: %s", s)
		}
	}
}

// fakeServer answers /embeddings like an OpenAI-compatible server. The vector
// of input "t<n>" is [n, 1, 0, …] (before normalization), and data comes back
// in reverse order so that clients must use "index".
type fakeServer struct {
	t       *testing.T
	dim     int
	mu      sync.Mutex
	batches [][]string
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/embeddings" || r.Method != http.MethodPost {
		http.Error(w, "not found", 404)
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+testKey {
		http.Error(w, `{"error":{"message":"bad key"}}`, 401)
		return
	}
	var req struct {
		Model string   `json:"model"`
		Input []string `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model != "test-embed" {
		http.Error(w, `{"error":{"message":"bad request"}}`, 400)
		return
	}
	f.mu.Lock()
	f.batches = append(f.batches, req.Input)
	f.mu.Unlock()
	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	var data []item
	for i := len(req.Input) - 1; i >= 0; i-- {
		n, _ := strconv.Atoi(strings.TrimPrefix(req.Input[i], "t"))
		v := make([]float32, f.dim)
		v[0], v[1] = float32(n), 1
		data = append(data, item{"embedding", i, v})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "model": req.Model})
}

func wantVector(n, dim int) []float32 {
	v := make([]float32, dim)
	v[0], v[1] = float32(n), 1
	normalize(v)
	return v
}

func TestOpenAIBatchingAndOrder(t *testing.T) {
	f := &fakeServer{t: t, dim: 8}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL+"/v1", OpenAIOptions{APIKey: testKey})
	texts := make([]string, 150)
	for i := range texts {
		texts[i] = "t" + strconv.Itoa(i)
	}
	got, err := c.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	var sent []string
	for _, b := range f.batches {
		sizes = append(sizes, len(b))
		sent = append(sent, b...)
	}
	if !slices.Equal(sizes, []int{64, 64, 22}) {
		t.Errorf("batch sizes = %v, want [64 64 22]", sizes)
	}
	if !slices.Equal(sent, texts) {
		t.Error("inputs were not sent in order")
	}
	for i, v := range got {
		if !slices.Equal(v, wantVector(i, 8)) {
			t.Fatalf("vector %d = %v, want %v", i, v, wantVector(i, 8))
		}
	}
	if c.Dim() != 8 {
		t.Errorf("Dim() = %d after the first answer, want 8", c.Dim())
	}
}

func TestOpenAIEmptyText(t *testing.T) {
	f := &fakeServer{t: t, dim: 4}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL+"/v1", OpenAIOptions{APIKey: testKey})
	if _, err := c.Embed(context.Background(), []string{""}); err == nil {
		t.Error("Embed([\"\"]) with an unknown dimension succeeded, want error")
	}
	got, err := c.Embed(context.Background(), []string{"", "t3", ""})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got[0], []float32{0, 0, 0, 0}) || !slices.Equal(got[2], []float32{0, 0, 0, 0}) || !slices.Equal(got[1], wantVector(3, 4)) {
		t.Errorf("got %v", got)
	}
	if len(f.batches) != 1 || !slices.Equal(f.batches[0], []string{"t3"}) {
		t.Errorf("sent %q, want only [t3]", f.batches)
	}
}

func TestOpenAIRetries(t *testing.T) {
	ok := `{"data":[{"index":0,"embedding":[3,4]}]}`
	type reply struct {
		status     int
		retryAfter string
		body       string
	}
	tests := []struct {
		name       string
		maxRetries int
		replies    []reply
		wantCalls  int
		wantStatus int // 0: success
		wantMsg    string
	}{
		{name: "503 then 200", replies: []reply{{503, "", "busy"}, {200, "", ok}}, wantCalls: 2},
		{name: "429 retry-after then 200", replies: []reply{{429, "0", `{"error":{"message":"slow down"}}`}, {200, "", ok}}, wantCalls: 2},
		{name: "500 502 504 then 200", maxRetries: 3, replies: []reply{{500, "", ""}, {502, "", ""}, {504, "", ""}, {200, "", ok}}, wantCalls: 4},
		{name: "400 not retried", replies: []reply{{400, "", `{"error":{"message":"input too long"}}`}}, wantCalls: 1, wantStatus: 400, wantMsg: "input too long"},
		{name: "exhausted", replies: []reply{{503, "", "a"}, {503, "", "b"}, {503, "", "c"}, {200, "", ok}}, wantCalls: 3, wantStatus: 503, wantMsg: "c"},
		{name: "disabled", maxRetries: -1, replies: []reply{{503, "", "down"}, {200, "", ok}}, wantCalls: 1, wantStatus: 503, wantMsg: "down"},
		{name: "redirect not followed", replies: []reply{{307, "", ""}}, wantCalls: 1, wantStatus: 307, wantMsg: "Temporary Redirect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1)) - 1
				rp := tt.replies[min(n, len(tt.replies)-1)]
				if rp.retryAfter != "" {
					w.Header().Set("Retry-After", rp.retryAfter)
				}
				if rp.status == 307 {
					w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
				}
				w.WriteHeader(rp.status)
				io.WriteString(w, rp.body)
			}))
			defer srv.Close()
			c := newTestOpenAI(t, srv.URL, OpenAIOptions{MaxRetries: tt.maxRetries})
			got, err := c.Embed(context.Background(), []string{"x"})
			if n := int(calls.Load()); n != tt.wantCalls {
				t.Errorf("upstream called %d times, want %d", n, tt.wantCalls)
			}
			if tt.wantStatus == 0 {
				if err != nil || !slices.Equal(got[0], []float32{0.6, 0.8}) {
					t.Fatalf("Embed() = %v, %v; want [[0.6 0.8]]", got, err)
				}
				return
			}
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("error = %v, want *StatusError", err)
			}
			if se.StatusCode != tt.wantStatus || se.Message != tt.wantMsg {
				t.Errorf("StatusError = %d %q, want %d %q", se.StatusCode, se.Message, tt.wantStatus, tt.wantMsg)
			}
		})
	}
}

func TestOpenAIKeyNeverInErrors(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte(testKey))
	bodies := map[string]struct {
		status int
		body   string
	}{
		"400 message":       {400, `{"error":{"message":"invalid key ` + testKey + ` (` + b64 + `)","type":"invalid_request_error"}}`},
		"401 plain":         {401, "Incorrect API key provided: " + testKey},
		"200 error member":  {200, `{"error":"key ` + testKey + ` revoked"}`},
		"503 then exhaust":  {503, `{"message":"overloaded for ` + testKey + `"}`},
		"hex in plain body": {400, fmt.Sprintf("%x", testKey)},
	}
	for name, reply := range bodies {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(reply.status)
				io.WriteString(w, reply.body)
			}))
			defer srv.Close()
			c := newTestOpenAI(t, srv.URL, OpenAIOptions{APIKey: testKey})
			_, err := c.Embed(context.Background(), []string{"x"})
			if err == nil {
				t.Fatal("Embed succeeded, want error")
			}
			for _, form := range []string{testKey, b64, fmt.Sprintf("%x", testKey)} {
				if strings.Contains(err.Error(), form) {
					t.Errorf("error %q contains the key (%q)", err, form)
				}
			}
			if !strings.Contains(err.Error(), "[REDACTED") {
				t.Errorf("error %q: want a redaction mark", err)
			}
		})
	}
}

func TestOpenAIBadAnswers(t *testing.T) {
	tests := map[string]string{
		"not JSON":        `<html>`,
		"too few":         `{"data":[{"index":0,"embedding":[1,0]}]}`,
		"index too big":   `{"data":[{"index":0,"embedding":[1,0]},{"index":2,"embedding":[1,0]}]}`,
		"index twice":     `{"data":[{"index":1,"embedding":[1,0]},{"index":1,"embedding":[1,0]}]}`,
		"dims differ":     `{"data":[{"index":0,"embedding":[1,0]},{"index":1,"embedding":[1,0,0]}]}`,
		"empty vector":    `{"data":[{"index":0,"embedding":[]},{"index":1,"embedding":[]}]}`,
		"null vector":     `{"data":[{"index":0,"embedding":null},{"index":1,"embedding":[1,0]}]}`,
		"string numbers":  `{"data":[{"index":0,"embedding":["1","0"]},{"index":1,"embedding":[1,0]}]}`,
		"bad base64":      `{"data":[{"index":0,"embedding":"!!"},{"index":1,"embedding":[1,0]}]}`,
		"overflow float":  `{"data":[{"index":0,"embedding":[1e40,0]},{"index":1,"embedding":[1,0]}]}`,
		"error in 200":    `{"error":{"message":"model not loaded"}}`,
		"wrong dimension": `{"data":[{"index":0,"embedding":[1,0,0]},{"index":1,"embedding":[1,0,0]}]}`,
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, body)
			}))
			defer srv.Close()
			c := newTestOpenAI(t, srv.URL, OpenAIOptions{Dim: 2})
			if got, err := c.Embed(context.Background(), []string{"a", "b"}); err == nil {
				t.Errorf("Embed succeeded with %v, want error", got)
			}
		})
	}
}

func TestOpenAIDimLearnedThenEnforced(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			io.WriteString(w, `{"data":[{"index":0,"embedding":[1,0,0]}]}`)
			return
		}
		io.WriteString(w, `{"data":[{"index":0,"embedding":[1,0]}]}`)
	}))
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL, OpenAIOptions{})
	if _, err := c.Embed(context.Background(), []string{"a"}); err != nil || c.Dim() != 3 {
		t.Fatalf("first Embed: %v, Dim() = %d; want nil, 3", err, c.Dim())
	}
	if _, err := c.Embed(context.Background(), []string{"a"}); err == nil || !strings.Contains(err.Error(), "want 3") {
		t.Errorf("second Embed error = %v, want a dimension mismatch", err)
	}
}

func TestOpenAIBase64AndMissingIndex(t *testing.T) {
	enc := func(v ...float32) string {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"data":[{"embedding":%q},{"embedding":[0,2]}]}`, enc(3, 4))
	}))
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL, OpenAIOptions{})
	got, err := c.Embed(context.Background(), []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got[0], []float32{0.6, 0.8}) || !slices.Equal(got[1], []float32{0, 1}) {
		t.Errorf("got %v, want [[0.6 0.8] [0 1]]", got)
	}
}

func TestOpenAICancelAndTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	c := newTestOpenAI(t, srv.URL, OpenAIOptions{})
	if _, err := c.Embed(ctx, []string{"a"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Embed error = %v, want context.Canceled", err)
	}

	c = newTestOpenAI(t, srv.URL, OpenAIOptions{Timeout: 30 * time.Millisecond, MaxRetries: -1})
	if _, err := c.Embed(context.Background(), []string{"a"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timed-out Embed error = %v, want context.DeadlineExceeded", err)
	}
}

func TestOpenAIThroughCache(t *testing.T) {
	f := &fakeServer{t: t, dim: 4}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL+"/v1", OpenAIOptions{APIKey: testKey, BatchSize: 2})
	cache := NewCache(100)
	texts := []string{"t1", "t2", "t3"}
	for range 2 {
		got, err := cache.Embed(context.Background(), c, "acme", keyA, texts)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if !slices.Equal(v, wantVector(i+1, 4)) {
				t.Errorf("vector %d = %v", i, v)
			}
		}
	}
	if len(f.batches) != 2 {
		t.Errorf("upstream saw %d requests, want 2 (one miss round of 3 texts in batches of 2)", len(f.batches))
	}
}

// TestOpenAITenantKey shows an embedder configured for tenants' own keys
// calling only with the key it was given, and never without one.
func TestOpenAITenantKey(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") == "Bearer tenant-b-key-0123456789" {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":{"message":"bad key tenant-b-key-0123456789"}}`)
			return
		}
		io.WriteString(w, `{"data":[{"index":0,"embedding":[1,0]}]}`)
	}))
	defer srv.Close()
	c := newTestOpenAI(t, srv.URL, OpenAIOptions{KeySecret: "embed_key"})
	if c.KeySecret() != "embed_key" {
		t.Fatalf("KeySecret() = %q, want embed_key", c.KeySecret())
	}
	if _, err := c.Embed(context.Background(), []string{"x"}); err == nil || !strings.Contains(err.Error(), "embed_key") {
		t.Fatalf("Embed without a tenant key: err = %v, want a refusal naming embed_key", err)
	}
	if len(seen) != 0 {
		t.Fatalf("the endpoint was called without the tenant's key: %q", seen)
	}
	a := c.WithAPIKey(secret.New("tenant-a-key-0123456789"))
	if a.Model() != c.Model() {
		t.Errorf("keyed Model() = %q, want %q (the same vectors)", a.Model(), c.Model())
	}
	if _, err := a.Embed(context.Background(), []string{"x"}); err != nil {
		t.Fatalf("Embed with tenant a's key: %v", err)
	}
	_, err := c.WithAPIKey(secret.New("tenant-b-key-0123456789")).Embed(context.Background(), []string{"x"})
	if err == nil || strings.Contains(err.Error(), "tenant-b-key") {
		t.Errorf("Embed with tenant b's refused key: err = %v, want an error without the key", err)
	}
	want := []string{"Bearer tenant-a-key-0123456789", "Bearer tenant-b-key-0123456789"}
	if !slices.Equal(seen, want) {
		t.Errorf("Authorization headers = %q, want %q", seen, want)
	}
	if _, err := NewOpenAI(OpenAIOptions{BaseURL: srv.URL, Model: "m", APIKey: "k", KeySecret: "embed_key"}); err == nil {
		t.Error("an API key and a tenant key secret together were accepted")
	}
}
