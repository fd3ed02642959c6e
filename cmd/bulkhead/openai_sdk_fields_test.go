package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// sdkFieldsResult is the JSON line test/openai-sdk/fields.mjs prints.
type sdkFieldsResult struct {
	Structured struct {
		Model, Content, SystemFingerprint, UpstreamModel, UpstreamModelHeader, RequestID string
	}
	Streamed struct{ Content, SystemFingerprint string }
	Limited  struct {
		Status     int
		RetryAfter string
	}
	Failed struct{ Status int }
}

// TestOpenAISDKFields drives the real server with the official OpenAI Node
// client against a fake upstream that records what it received: a
// json_schema response_format and a seed arrive as the SDK sent them, the
// answer carries the provider's fingerprint and model, an upstream 429
// reaches the SDK as a 429 with Retry-After (one upstream call per SDK
// attempt), and an upstream 503 costs 1+max_retries calls in all.
func TestOpenAISDKFields(t *testing.T) {
	t.Parallel()
	node := requireOpenAISDK(t)

	var mu sync.Mutex
	got := map[string][]map[string]json.RawMessage{} // by user message
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]json.RawMessage
		var msgs []struct{ Role, Content string }
		json.Unmarshal(b, &body)
		json.Unmarshal(body["messages"], &msgs)
		last := ""
		if len(msgs) > 0 {
			last = msgs[len(msgs)-1].Content
		}
		mu.Lock()
		got[last] = append(got[last], body)
		mu.Unlock()
		switch last {
		case "limited":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		case "failed":
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		const answer = `{"city":"Paris"}`
		if string(body["stream"]) == "true" {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "data: {\"model\":\"gpt-fake-1\",\"system_fingerprint\":\"fp_sdk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":%q},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", answer)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"model":"gpt-fake-1","system_fingerprint":"fp_sdk","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`, answer)
	}))
	t.Cleanup(up.Close)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "bulkhead.yaml")
	const retries = 2
	yaml := fmt.Sprintf("providers:\n  - name: fake\n    type: openai\n    base_url: %s/v1\n    max_retries: %d\n", up.URL, retries)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	const admin = "bka_test_sdk_fields_admin_token_1"
	base, _ := startServerWith(t, filepath.Join(dir, "data"), map[string]string{"BULKHEAD_ADMIN_TOKEN": admin}, "--config", cfg)
	key := createTenantKey(t, base, admin, map[string]any{"id": "acme", "model": "fake/gpt-test"})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "fields.mjs")
	cmd.Dir = sdkDir
	cmd.Env = append(os.Environ(), "BASE_URL="+base+"/v1", "API_KEY="+key, "NO_PROXY=127.0.0.1,localhost")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node fields.mjs: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res sdkFieldsResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("parse fields.mjs output: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("fields.mjs: %s", lines[len(lines)-1])

	wantFormat := `{"type":"json_schema","json_schema":{"name":"city","strict":true,"schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}}`
	mu.Lock()
	defer mu.Unlock()
	for _, q := range []string{"structured", "streamed"} {
		if len(got[q]) != 1 {
			t.Fatalf("%s: the upstream got %d requests, want 1", q, len(got[q]))
		}
		b := got[q][0]
		if string(b["response_format"]) != wantFormat || string(b["seed"]) != "4242" {
			t.Errorf("%s: upstream got response_format %s seed %s, want %s and 4242", q, b["response_format"], b["seed"], wantFormat)
		}
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"model is the profile", res.Structured.Model, "default"},
		{"content", res.Structured.Content, `{"city":"Paris"}`},
		{"system_fingerprint", res.Structured.SystemFingerprint, "fp_sdk"},
		{"upstream_model", res.Structured.UpstreamModel, "gpt-fake-1"},
		{"upstream model header", res.Structured.UpstreamModelHeader, "gpt-fake-1"},
		{"request id present", res.Structured.RequestID != "", true},
		{"streamed content", res.Streamed.Content, `{"city":"Paris"}`},
		{"streamed system_fingerprint", res.Streamed.SystemFingerprint, "fp_sdk"},
		{"429 status", res.Limited.Status, 429},
		{"429 Retry-After", res.Limited.RetryAfter, "1"},
		{"429: one upstream call per SDK attempt (3)", len(got["limited"]), 3},
		{"503 becomes 502", res.Failed.Status, 502},
		{"503: 1+max_retries upstream calls in all, the SDK does not multiply them", len(got["failed"]), 1 + retries},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
