package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// frameworksDir holds the framework scripts and their locked dependencies.
var frameworksDir = filepath.Join("..", "..", "test", "frameworks")

const frameworksHint = "run `npm ci --prefix test/frameworks`"

// requireFrameworks returns node once it and every framework package the
// scripts import are installed; else the test skips loudly (or fails under
// BULKHEAD_REQUIRE_ALL=1).
func requireFrameworks(t *testing.T) string {
	t.Helper()
	return requireNode(t, frameworksHint, frameworksDir, "ai", "@ai-sdk/openai", "@langchain/openai", "@langchain/core", "@openai/agents", "openai", "zod")
}

// aiSDKRun is a generateText or streamText result as aisdk.mjs reduces it.
type aiSDKRun struct {
	Steps int
	Calls []struct {
		Name  string
		Input map[string]string
	}
	Results []struct{ Name, Output string }
	Text    string
	// FinishReason is the last step's; Deltas and Usage are streamText's.
	FinishReason string
	Deltas       int
	Usage        int
	ResponseID   string
}

type trip struct {
	City string
	Days int
}

type frameworkEmbeddings struct {
	Dim, Count, Tokens    int
	RepeatEqual, Distinct bool
}

// aiSDKResult is the JSON line test/frameworks/aisdk.mjs prints.
type aiSDKResult struct {
	ChatText, ChatStream, Responses, ResponsesStream, Parallel aiSDKRun
	Object, ResponsesObject                                    trip
	Embed                                                      frameworkEmbeddings
	Continued                                                  struct {
		Own, Foreign struct {
			Status   int
			SawFirst bool
		}
	}
	Refused struct {
		Status  int
		Message string
	}
}

// langChainTools is a bindTools round trip as langchain.mjs reports it.
type langChainTools struct {
	Name, ID, Answer string
	Args             map[string]string
}

// langChainResult is the JSON line test/frameworks/langchain.mjs prints.
type langChainResult struct {
	Invoke struct {
		Content string
		Tokens  int
	}
	Stream struct {
		Chunks  int
		Content string
	}
	Tools      langChainTools
	Structured trip
	Responses  struct {
		Content    string
		Tools      langChainTools
		Structured trip
	}
	Embeddings frameworkEmbeddings
}

// agentsResult is the JSON line test/frameworks/agents.mjs prints.
type agentsResult struct {
	Tool struct {
		Output, LastAgent string
		Calls, Lookups    []string
	}
	Handoff struct {
		Output, LastAgent, HandoffTool string
		Items                          []string
	}
	Stream struct {
		Output  string
		Events  int
		Lookups []string
	}
	Instructions struct{ SawInstructions bool }
	Structured   trip
	Continued    struct {
		ID       string
		SawFirst bool
		Foreign  any // the status, or what went wrong instead
	}
}

// openAIHelpersResult is the JSON line test/frameworks/openai.mjs prints.
type openAIHelpersResult struct {
	Chat struct {
		Parsed  trip
		Refusal *string
	}
	Responses struct{ Parsed trip }
	Tool      struct {
		Name, FinishReason string
		Parsed             trip
	}
}

type check struct {
	name      string
	got, want any
}

func runChecks(t *testing.T, checks []check) {
	t.Helper()
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// toolLoopChecks checks an AI SDK run of the get_weather tool: the SDK ran
// the call the model made and the model answered from its result.
func toolLoopChecks(name string, r aiSDKRun) []check {
	return []check{
		{name + ": steps", r.Steps, 2},
		{name + ": one call", len(r.Calls), 1},
		{name + ": call", len(r.Calls) == 1 && r.Calls[0].Name == "get_weather" && r.Calls[0].Input["city"] == "Paris", true},
		{name + ": result", len(r.Results) == 1 && r.Results[0].Output == "sunny in Paris", true},
		{name + ": answer from the result", strings.HasPrefix(r.Text, "Tool results:\ncall_") && strings.HasSuffix(r.Text, ": sunny in Paris"), true},
		{name + ": finish reason", r.FinishReason, "stop"},
	}
}

// TestFrameworks drives a live `bulkhead serve` (the scripted model) with
// the Vercel AI SDK, LangChain.js, the OpenAI Agents SDK and the openai
// client's zod helpers, each as a new user would call it: plain and
// streamed chat, tools the framework runs itself, structured output,
// embeddings, and the Responses API that the AI SDK's openai(), LangChain's
// useResponsesApi and the Agents SDK use by default. Another tenant's key
// cannot continue the first tenant's response.
func TestFrameworks(t *testing.T) {
	t.Parallel()
	node := requireFrameworks(t)

	base, admin := startServer(t)
	const prompt = "You are Acme's agent."
	// no_cache: several scripts repeat a prompt, and each must reach the model.
	key := createTenantKey(t, base, admin, map[string]any{"id": "acme", "system_prompt": prompt, "no_cache": true})
	other := createTenantKey(t, base, admin, map[string]any{"id": "globex", "no_cache": true})
	env := []string{"BASE_URL=" + base + "/v1", "API_KEY=" + key, "OTHER_KEY=" + other}

	t.Run("ai-sdk", func(t *testing.T) {
		t.Parallel()
		var got aiSDKResult
		runNodeScript(t, node, frameworksDir, "aisdk.mjs", &got, env...)
		checks := slices.Concat(
			toolLoopChecks("generateText (chat)", got.ChatText),
			toolLoopChecks("streamText (chat)", got.ChatStream),
			toolLoopChecks("generateText (openai(), responses)", got.Responses),
			toolLoopChecks("streamText (openai(), responses)", got.ResponsesStream),
			[]check{
				{"streamText (chat): several deltas", got.ChatStream.Deltas > 1, true},
				{"streamText (chat): usage", got.ChatStream.Usage > 0, true},
				{"streamText (responses): several deltas", got.ResponsesStream.Deltas > 1, true},
				{"streamText (responses): usage", got.ResponsesStream.Usage > 0, true},
				{"responses: a response id", strings.HasPrefix(got.Responses.ResponseID, "resp_"), true},
				{"generateObject (chat)", got.Object, trip{"Paris", 3}},
				{"generateObject (responses)", got.ResponsesObject, trip{"Rome", 2}},
				{"embed: a vector", got.Embed.Dim > 0, true},
				{"embed: usage", got.Embed.Tokens > 0, true},
				{"embedMany: count", got.Embed.Count, 3},
				{"embedMany: a repeated text embeds the same", got.Embed.RepeatEqual, true},
				{"embedMany: different texts embed differently", got.Embed.Distinct, true},
				{"parallel: two calls", len(got.Parallel.Calls) == 2 && got.Parallel.Calls[0].Name == "get_weather" && got.Parallel.Calls[1].Name == "get_time", true},
				{"parallel: two results", len(got.Parallel.Results) == 2 && got.Parallel.Results[1].Output == "noon CET", true},
				{"parallel: one follow-up answered both", got.Parallel.Steps == 2 && strings.Count(got.Parallel.Text, "\ncall_") == 2, true},
				{"previousResponseId: own status", got.Continued.Own.Status, 200},
				{"previousResponseId: own continuation saw the first", got.Continued.Own.SawFirst, true},
				{"previousResponseId: another tenant's status", got.Continued.Foreign.Status, 404},
				{"an unforwarded field: status", got.Refused.Status, 400},
				{"an unforwarded field: named", strings.Contains(got.Refused.Message, `"prompt_cache_key"`), true},
			})
		runChecks(t, checks)
	})

	t.Run("langchain", func(t *testing.T) {
		t.Parallel()
		var got langChainResult
		runNodeScript(t, node, frameworksDir, "langchain.mjs", &got, env...)
		const said = `You said: "hello from langchain"`
		checks := []check{
			{"invoke: answer", strings.Contains(got.Invoke.Content, said) && strings.Contains(got.Invoke.Content, prompt), true},
			{"invoke: usage", got.Invoke.Tokens > 0, true},
			{"stream: several chunks", got.Stream.Chunks > 1, true},
			{"stream: same answer", got.Stream.Content, got.Invoke.Content},
			{"useResponsesApi invoke: same answer", got.Responses.Content, got.Invoke.Content},
			{"withStructuredOutput", got.Structured, trip{"Paris", 3}},
			{"useResponsesApi withStructuredOutput", got.Responses.Structured, trip{"Rome", 2}},
			{"embedQuery: a vector", got.Embeddings.Dim > 0, true},
			{"embedDocuments: count", got.Embeddings.Count, 3},
			{"embedDocuments: a repeated text embeds the same", got.Embeddings.RepeatEqual, true},
			{"embedDocuments: different texts embed differently", got.Embeddings.Distinct, true},
		}
		for _, tc := range []struct {
			name string
			run  langChainTools
		}{{"bindTools", got.Tools}, {"useResponsesApi bindTools", got.Responses.Tools}} {
			r := tc.run
			checks = append(checks,
				check{tc.name + ": call", r.Name == "get_weather" && r.Args["city"] == "Paris" && strings.HasPrefix(r.ID, "call_"), true},
				check{tc.name + ": ToolMessage continued the turn", r.Answer, "Tool results:\n" + r.ID + ": sunny in Paris"})
		}
		runChecks(t, checks)
	})

	t.Run("openai-agents", func(t *testing.T) {
		t.Parallel()
		var got agentsResult
		runNodeScript(t, node, frameworksDir, "agents.mjs", &got, env...)
		toolAnswer := func(s, word string) bool {
			return strings.HasPrefix(s, "Tool results:\ncall_") && strings.HasSuffix(s, ": "+word+" is a purple flower")
		}
		runChecks(t, []check{
			{"function tool: the SDK ran it", slices.Equal(got.Tool.Lookups, []string{"heliotrope"}), true},
			{"function tool: one call", slices.Equal(got.Tool.Calls, []string{"lookup"}), true},
			{"function tool: answer from the result", toolAnswer(got.Tool.Output, "heliotrope"), true},
			{"function tool: last agent", got.Tool.LastAgent, "Helper"},
			{"handoff: last agent", got.Handoff.LastAgent, "Billing"},
			{"handoff: items", slices.Equal(got.Handoff.Items, []string{"handoff_call_item", "handoff_output_item", "message_output_item"}), true},
			{"handoff: the second agent answered", strings.HasSuffix(got.Handoff.Output, `: {"assistant":"Billing"}`), true},
			{"streamed run: answer", toolAnswer(got.Stream.Output, "lavender"), true},
			{"streamed run: the SDK ran the tool", slices.Equal(got.Stream.Lookups, []string{"heliotrope", "lavender"}), true},
			{"streamed run: events", got.Stream.Events > 2, true},
			{"instructions reached the model", got.Instructions.SawInstructions, true},
			{"outputType", got.Structured, trip{"Oslo", 4}},
			{"previousResponseId: a response id", strings.HasPrefix(got.Continued.ID, "resp_"), true},
			{"previousResponseId: own continuation saw the first", got.Continued.SawFirst, true},
			{"previousResponseId: another tenant's status", got.Continued.Foreign, float64(404)},
		})
	})

	t.Run("openai-zod-helpers", func(t *testing.T) {
		t.Parallel()
		var got openAIHelpersResult
		runNodeScript(t, node, frameworksDir, "openai.mjs", &got, env...)
		runChecks(t, []check{
			{"chat.completions.parse", got.Chat.Parsed, trip{"Paris", 3}},
			{"chat.completions.parse: no refusal", got.Chat.Refusal == nil, true},
			{"responses.parse", got.Responses.Parsed, trip{"Rome", 2}},
			{"zodFunction: name", got.Tool.Name, "plan_trip"},
			{"zodFunction: parsed arguments", got.Tool.Parsed, trip{"Oslo", 4}},
			{"zodFunction: finish reason", got.Tool.FinishReason, "tool_calls"},
		})
	})
}
