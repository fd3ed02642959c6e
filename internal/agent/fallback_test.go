package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

func TestFallbackWorthy(t *testing.T) {
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
		word string
	}{
		{"429", live, &llm.StatusError{StatusCode: 429}, true, "429"},
		{"503", live, fmt.Errorf("wrapped: %w", &llm.StatusError{StatusCode: 503}), true, "503"},
		{"529", live, &llm.StatusError{StatusCode: 529}, true, "529"},
		{"400", live, &llm.StatusError{StatusCode: 400}, false, "400"},
		{"401", live, &llm.StatusError{StatusCode: 401}, false, "401"},
		{"attempt timeout", live, fmt.Errorf("llm: timed out: %w", context.DeadlineExceeded), true, "timeout"},
		{"caller's deadline", done, context.DeadlineExceeded, false, "timeout"},
		{"unreachable", live, fmt.Errorf("llm: send request: %w", &url.Error{Op: "Post", URL: "http://x", Err: errors.New("refused")}), true, "unreachable"},
		{"cut-off stream", live, io.ErrUnexpectedEOF, false, "unreachable"},
		{"unsupported option", live, &llm.UnsupportedError{Field: "seed"}, false, "unreachable"},
	}
	for _, tt := range tests {
		if got := fallbackWorthy(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%s: fallbackWorthy = %v, want %v", tt.name, got, tt.want)
		}
		if got := failureName(tt.err); got != tt.word {
			t.Errorf("%s: failureName = %q, want %q", tt.name, got, tt.word)
		}
	}
}

// TestCandidateKey checks the profile's own key secret is used for its
// model's provider only, never for a fallback on another provider, and for
// every candidate on that provider when the request picked a model on
// another one.
func TestCandidateKey(t *testing.T) {
	secrets := []store.Secret{{Name: "own", Value: secret.New("own-key")}, {Name: "other", Value: secret.New("other-key")}}
	chain := []candidate{
		{model: "a/m1", route: llm.Route{}},
		{model: "a/m2", route: llm.Route{}},
		{model: "b/m3", route: llm.Route{}},
		{model: "c/m4", route: llm.Route{KeySecret: "other"}},
	}
	want := []string{"own-key", "own-key", "", "other-key"}
	for _, profile := range []Profile{
		{KeySecret: "own", Model: "a/m1"},
		{KeySecret: "own", KeyProvider: "a", Model: "a/m1"},
		{KeySecret: "own", KeyProvider: "a", Model: "b/m3"}, // picked: b/m3 is first
	} {
		for i, c := range chain {
			key, err := candidateKey(profile, c, secrets)
			if err != nil || key.Reveal() != want[i] {
				t.Errorf("profile model %s: %s: key %q, %v; want %q", profile.Model, c.model, key.Reveal(), err, want[i])
			}
		}
	}
}
