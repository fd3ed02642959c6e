package agent_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/agent"
	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

// quoting refuses with a 400 whose message is built from the request, as
// validating proxies do.
type quoting struct{ message func(llm.Request) string }

func (q quoting) Chat(_ context.Context, req llm.Request, _ func(string) error) (llm.Response, error) {
	return llm.Response{}, &llm.StatusError{StatusCode: 400, Message: q.message(req)}
}

// TestProviderRefusalScreened: a provider's 400 says why in its own words
// only when they quote nothing of the request; one quoting the system prompt
// becomes a message naming only the status. Either way it is invalid (400).
func TestProviderRefusalScreened(t *testing.T) {
	const prompt = "ACME SYSTEM PROMPT: the discount code is internal only"
	tests := []struct {
		name    string
		message func(llm.Request) string
		want    string
		notWant string
	}{
		{"own words", func(llm.Request) string { return "Invalid schema for response_format 'city'" },
			"invalid request: the model provider refused the request: Invalid schema for response_format 'city'", ""},
		{"quotes the system prompt", func(r llm.Request) string { return "invalid content in messages[0]: '" + r.Messages[0].Content + "'" },
			"invalid request: the model provider refused the request (status 400)", "discount code"},
		{"quotes a part of it", func(llm.Request) string { return "bad token near 'the discount code is internal'" },
			"invalid request: the model provider refused the request (status 400)", "discount code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := llm.NewRegistry()
			if err := reg.Add("strict", quoting{tt.message}); err != nil {
				t.Fatal(err)
			}
			a := mustNew(t, agent.Deps{Models: reg, History: &memHistory{msgs: map[string][]store.Message{}}, Secrets: memSecrets{}, HistoryMessages: 10})
			_, err := a.Run(context.Background(), authtest.Scope(t, "acme", ""), agent.Profile{Name: "default", SystemPrompt: prompt, Model: "strict/x"}, agent.Turn{Messages: user("hi")})
			if !errors.Is(err, kind.Invalid) || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q (invalid)", err, tt.want)
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("err = %v: quotes the system prompt", err)
			}
		})
	}
}
