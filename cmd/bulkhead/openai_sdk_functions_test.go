package main

import (
	"slices"
	"strings"
	"testing"
)

// sdkFunctionsResult is the JSON line test/openai-sdk/functions.mjs prints.
type sdkFunctionsResult struct {
	Functions struct {
		FinishReason, Name, Arguments  string
		ToolCalls                      int
		FollowUp, FollowUpFinishReason string
	}
	Streamed struct{ Name, Arguments, FinishReason string }
	Pick     struct {
		Model, UpstreamModel, Retrieved string
		Models                          []string
		Refused                         struct {
			Status  int
			Message string
		}
	}
}

// TestOpenAISDKFunctions drives the real server with the official OpenAI
// Node client: a legacy functions round trip, plain and streamed, answered
// in the functions API's shape; and a model picked from the profile's
// models, listed and retrievable, while one it does not list is a 400
// naming it.
func TestOpenAISDKFunctions(t *testing.T) {
	t.Parallel()
	node := requireOpenAISDK(t)

	base, admin := startServer(t)
	key := createTenantKey(t, base, admin, map[string]any{"id": "acme", "no_cache": true, "models": []string{"offline/alt"}})
	var got sdkFunctionsResult
	runSDKScript(t, node, "functions.mjs", &got, "BASE_URL="+base+"/v1", "API_KEY="+key)

	const args = `{"city":"Paris"}`
	fn := got.Functions
	if fn.FinishReason != "function_call" || fn.Name != "get_weather" || fn.Arguments != args || fn.ToolCalls != 0 {
		t.Errorf("function call = %+v, want get_weather with %s, finish reason function_call, no tool_calls", fn, args)
	}
	if !strings.HasPrefix(fn.FollowUp, "Tool results:\ncall_") || !strings.HasSuffix(fn.FollowUp, ": sunny, 21 C") || fn.FollowUpFinishReason != "stop" {
		t.Errorf("function follow-up = %q (%s), want the model to read the result", fn.FollowUp, fn.FollowUpFinishReason)
	}
	if s := got.Streamed; s.Name != "get_weather" || s.Arguments != args || s.FinishReason != "function_call" {
		t.Errorf("streamed function call = %+v, want get_weather with %s and finish reason function_call", s, args)
	}
	p := got.Pick
	// The offline model reports itself as "scripted" whatever it is asked
	// for; internal/server's TestModelPick checks the provider gets the pick.
	if p.Model != "default/offline/alt" || p.UpstreamModel != "scripted" || p.Retrieved != "default/offline/alt" || !slices.Contains(p.Models, "default/offline/alt") {
		t.Errorf("pick = %+v, want default/offline/alt answered, listed and retrievable", p)
	}
	if p.Refused.Status != 400 || !strings.Contains(p.Refused.Message, "offline/unlisted") {
		t.Errorf("unlisted model: got %+v, want a 400 naming offline/unlisted", p.Refused)
	}
}
