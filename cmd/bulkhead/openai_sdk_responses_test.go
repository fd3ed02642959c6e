package main

import (
	"slices"
	"strings"
	"testing"
)

// sdkResponsesResult is the JSON line test/openai-sdk/responses.mjs prints.
type sdkResponsesResult struct {
	Plain struct {
		ID, Object, Status, Text string
		Usage                    *struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		}
	}
	Continued struct {
		Previous string
		SawFirst bool
	}
	Stream struct {
		Types         []string
		Deltas        string
		CompletedText string
	}
	Tools      struct{ Name, Args, Answer, CallID string }
	Structured struct{ Colour string }
	Retrieved  bool
	Deleted    int
	Foreign    int
}

// TestOpenAISDKResponses drives the real server's Responses API with the
// official OpenAI Node client: create, previous_response_id, streaming, a
// client function tool round trip, structured output, retrieve, delete,
// and another tenant's 404.
func TestOpenAISDKResponses(t *testing.T) {
	t.Parallel()
	node := requireOpenAISDK(t)

	base, admin := startServer(t)
	key := createTenantKey(t, base, admin, map[string]any{"id": "acme", "no_cache": true})
	other := createTenantKey(t, base, admin, map[string]any{"id": "globex"})

	var got sdkResponsesResult
	runSDKScript(t, node, "responses.mjs", &got, "BASE_URL="+base+"/v1", "API_KEY="+key, "OTHER_KEY="+other)

	checks := []struct {
		name      string
		got, want any
	}{
		{"object", got.Plain.Object, "response"},
		{"status", got.Plain.Status, "completed"},
		{"output_text", strings.Contains(got.Plain.Text, "remember the word heliotrope"), true},
		{"usage", got.Plain.Usage != nil && got.Plain.Usage.InputTokens > 0 && got.Plain.Usage.OutputTokens > 0, true},
		{"previous_response_id", got.Continued.Previous, got.Plain.ID},
		{"continued response saw the first", got.Continued.SawFirst, true},
		{"stream starts with response.created", len(got.Stream.Types) > 0 && got.Stream.Types[0] == "response.created", true},
		{"stream ends with response.completed", len(got.Stream.Types) > 0 && got.Stream.Types[len(got.Stream.Types)-1] == "response.completed", true},
		{"stream has text deltas", slices.Contains(got.Stream.Types, "response.output_text.delta"), true},
		{"streamed text", strings.Contains(got.Stream.Deltas, "stream me"), true},
		{"completed text equals the deltas", got.Stream.CompletedText, got.Stream.Deltas},
		{"function call name", got.Tools.Name, "lookup"},
		{"function call arguments", got.Tools.Args, `{"word":"heliotrope"}`},
		{"tool output reached the model", strings.Contains(got.Tools.Answer, got.Tools.CallID+": a purple flower"), true},
		{"structured output", got.Structured.Colour, "purple"},
		{"retrieved", got.Retrieved, true},
		{"another tenant's retrieve", got.Foreign, 404},
		{"retrieve after delete", got.Deleted, 404},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
