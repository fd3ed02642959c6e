package server

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// TestCacheRespectsRequest checks the response cache answers only requests
// that ask for determinism, obeys Cache-Control, keys on every forwarded
// field, reports the original usage on a hit, and never serves one tenant's
// answer to another.
func TestCacheRespectsRequest(t *testing.T) {
	up := newFakeUpstream(t)
	env := newTestEnv(t, envOptions{providers: map[string]llm.Provider{"fake": up.provider(t, 0)}})
	for _, id := range []string{"acme", "globex"} {
		env.createTenant(t, map[string]any{"id": id, "model": "fake/gpt-test", "system_prompt": "same prompt"})
	}
	_, acmeKey := env.newKey(t, "acme")
	_, globexKey := env.newKey(t, "globex")

	type step struct {
		key      string
		extra    map[string]any
		header   map[string]string
		stream   bool
		wantCall bool // the provider is asked; else the cache answers
	}
	t0 := map[string]any{"temperature": 0}
	tests := []struct {
		name  string
		steps []step
	}{
		{"temperature 1 is sampled afresh", []step{
			{key: acmeKey, extra: map[string]any{"temperature": 1}, wantCall: true},
			{key: acmeKey, extra: map[string]any{"temperature": 1}, wantCall: true}}},
		{"no temperature is sampled afresh", []step{
			{key: acmeKey, wantCall: true}, {key: acmeKey, wantCall: true}}},
		{"temperature 0 is cached, streamed too", []step{
			{key: acmeKey, extra: t0, wantCall: true}, {key: acmeKey, extra: t0}, {key: acmeKey, extra: t0, stream: true}}},
		{"a seed is cached, another seed is not", []step{
			{key: acmeKey, extra: map[string]any{"seed": 1}, wantCall: true},
			{key: acmeKey, extra: map[string]any{"seed": 1}},
			{key: acmeKey, extra: map[string]any{"seed": 2}, wantCall: true}}},
		{"every forwarded field is in the key", []step{
			{key: acmeKey, extra: map[string]any{"temperature": 0, "response_format": map[string]any{"type": "json_object"}}, wantCall: true},
			{key: acmeKey, extra: map[string]any{"temperature": 0, "response_format": map[string]any{"type": "text"}}, wantCall: true},
			{key: acmeKey, extra: map[string]any{"temperature": 0, "stop": "X"}, wantCall: true},
			{key: acmeKey, extra: map[string]any{"temperature": 0, "max_completion_tokens": 9}, wantCall: true},
			{key: acmeKey, extra: map[string]any{"temperature": 0, "response_format": map[string]any{"type": "json_object"}}}}},
		{"no-cache does not read", []step{
			{key: acmeKey, extra: t0, wantCall: true},
			{key: acmeKey, extra: t0, header: map[string]string{"Cache-Control": "no-cache"}, wantCall: true},
			{key: acmeKey, extra: t0}}},
		{"no-store does not write", []step{
			{key: acmeKey, extra: t0, header: map[string]string{"Cache-Control": "max-age=0, No-Store"}, wantCall: true},
			{key: acmeKey, extra: t0, wantCall: true},
			{key: acmeKey, extra: t0}}},
		{"tenant A's answer is never served to B", []step{
			{key: acmeKey, extra: t0, wantCall: true},
			{key: acmeKey, extra: t0},
			{key: globexKey, extra: t0, wantCall: true},
			{key: globexKey, extra: t0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, s := range tt.steps {
				before := up.calls()
				r := env.chat(t, chatCall{key: s.key, content: tt.name, extra: s.extra, header: s.header, stream: s.stream, usage: s.stream})
				if r.status != http.StatusOK {
					t.Fatalf("step %d: got %v", i, r)
				}
				called := up.calls() > before
				hit := r.header.Get("X-Bulkhead-Cache") == "hit"
				if called != s.wantCall || hit == s.wantCall {
					t.Fatalf("step %d: provider called %v, cache hit header %v; want called %v", i, called, hit, s.wantCall)
				}
				// A hit reports what the answer cost when it was made.
				var usage *llm.Usage
				if s.stream {
					sse, err := parseSSE(r)
					if err != nil {
						t.Fatal(err)
					}
					usage = sse.usage
				} else {
					var resp chatResponse
					if err := json.Unmarshal(r.body, &resp); err != nil {
						t.Fatal(err)
					}
					usage = resp.Usage
					if hit && (resp.SystemFingerprint != fakeFingerprint || resp.UpstreamModel != fakeModel) {
						t.Errorf("step %d: hit lost the provider's fingerprint or model: %s", i, r.body)
					}
				}
				if usage == nil || usage.TotalTokens != 13 {
					t.Errorf("step %d: usage %+v, want the provider's 13 tokens", i, usage)
				}
			}
		})
	}
}
