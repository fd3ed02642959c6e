// Package llm talks to chat models: an OpenAI-compatible HTTP client and a
// scripted offline model. The model is untrusted: nothing here decides what it
// may see or do.
package llm

import (
	"context"
	"encoding/json"
	"math"
	"math/bits"

	"github.com/bulkhead-ai/bulkhead/internal/secret"
)

// Message is one chat message in OpenAI's shape.
type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Name       string     `json:"name,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// ToolCall is a model's request to call a function.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"` // always "function"
	Function FunctionCall `json:"function"`
}

// FunctionCall names a function and carries its JSON-encoded arguments.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Tool describes a function offered to the model.
type Tool struct {
	Type     string      `json:"type"` // always "function"
	Function FunctionDef `json:"function"`
}

// FunctionDef is a function's name, description and JSON-schema parameters.
type FunctionDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	// Strict asks the provider to keep calls to the schema exactly
	// (OpenAI's structured outputs), as a client tool's declaration may.
	Strict *bool `json:"strict,omitempty"`
}

// Request is one chat completion request to a provider.
type Request struct {
	Model       string // the provider's own model name, without the "provider/" prefix
	Messages    []Message
	Tools       []Tool
	MaxTokens   int      // 0: provider default
	Temperature *float64 // nil: provider default
	// APIKey, when set, replaces the provider's configured key for this
	// request: the tenant's own key (BYOK), sent only in the request header.
	APIKey Credential
	// PromptCacheKey is an opaque, tenant-derived value sent as the
	// provider's prompt-cache partition (OpenAI "prompt_cache_key"), so a
	// shared provider never reuses one tenant's cached prompt prefix for
	// another.
	PromptCacheKey string
	// User is an opaque, tenant-derived tag sent upstream (OpenAI "user") so a
	// provider can attribute abuse and partition its caches; never a raw id.
	User string
	// Options are the client's own request fields, sent as they came.
	Options Options
	// NoRetry makes the provider try once: the caller has fallbacks of its
	// own, and one request must cost at most one call per model it tries.
	NoRetry bool
	// Started, if set, is called once when the provider has accepted a
	// streamed request (a 2xx status), before any content: the caller may
	// then commit to a successful response.
	Started func()
}

// Options are chat-completion request fields a client sets and a provider
// receives unchanged. Each is omitted when unset. The raw fields hold the
// client's JSON, compacted; the server checks their types before they get
// here. MaxCompletionTokens is sent as itself, never as max_tokens, which
// newer models refuse.
type Options struct {
	ResponseFormat      json.RawMessage `json:"response_format,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	Stop                json.RawMessage `json:"stop,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	N                   *int            `json:"n,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	LogitBias           json.RawMessage `json:"logit_bias,omitempty"`
	Logprobs            *bool           `json:"logprobs,omitempty"`
	ToolChoice          json.RawMessage `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls,omitempty"`
	MaxCompletionTokens *int            `json:"max_completion_tokens,omitempty"`
	Metadata            json.RawMessage `json:"metadata,omitempty"`
	ReasoningEffort     string          `json:"reasoning_effort,omitempty"`
	Store               *bool           `json:"store,omitempty"`
}

// Credential is an API key. It prints redacted, so a logged Request never
// shows it; the model client reveals it only to set the request's header.
type Credential = secret.Value

// Usage counts tokens.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
	// PromptTokensDetails says how many of PromptTokens the provider served
	// from its prompt cache (OpenAI's field; Anthropic's cache reads).
	PromptTokensDetails PromptTokensDetails `json:"prompt_tokens_details,omitzero"`
}

// PromptTokensDetails breaks prompt tokens down.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// Add returns u with v's counts added.
func (u Usage) Add(v Usage) Usage {
	u.PromptTokens += v.PromptTokens
	u.CompletionTokens += v.CompletionTokens
	u.TotalTokens += v.TotalTokens
	u.PromptTokensDetails.CachedTokens += v.PromptTokensDetails.CachedTokens
	return u
}

// MaxCallTokens bounds each count of one call's usage: far above any
// model's context, low enough that no sum or price of them overflows.
const MaxCallTokens = 1 << 31

// Bounded returns u as a provider may report it: every count between 0 and
// MaxCallTokens, cached prompt tokens at most the prompt, and the total at
// least prompt plus completion. A provider's numbers are not trusted: a
// negative count would refund spend and budget, a huge one overflow them.
func (u Usage) Bounded() Usage {
	clamp := func(n int) int { return min(max(n, 0), MaxCallTokens) }
	u.PromptTokens, u.CompletionTokens = clamp(u.PromptTokens), clamp(u.CompletionTokens)
	u.PromptTokensDetails.CachedTokens = min(clamp(u.PromptTokensDetails.CachedTokens), u.PromptTokens)
	u.TotalTokens = max(clamp(u.TotalTokens), u.PromptTokens+u.CompletionTokens)
	return u
}

// Price is what a model charges, in micro-dollars (millionths of a US
// dollar) per million tokens: integers, so spend adds up exactly.
type Price struct {
	InputMicroUSD, CachedInputMicroUSD, OutputMicroUSD int64
}

// Cost is what u costs at p, in micro-dollars, rounded to the nearest.
// Cached prompt tokens are charged at the cached rate, the rest of the
// prompt at the input rate.
//
// u is taken Bounded and the sum is computed in 128 bits, so no count or
// price makes a cost negative or wrap around; one past math.MaxInt64 is
// math.MaxInt64.
func (p Price) Cost(u Usage) int64 {
	u = u.Bounded()
	cached := uint64(u.PromptTokensDetails.CachedTokens)
	input := uint64(u.PromptTokens) - cached
	output := uint64(u.CompletionTokens)
	var hi, lo uint64 = 0, 500_000 // rounds to the nearest
	for _, term := range [][2]uint64{{input, uint64(max(p.InputMicroUSD, 0))},
		{cached, uint64(max(p.CachedInputMicroUSD, 0))}, {output, uint64(max(p.OutputMicroUSD, 0))}} {
		h, l := bits.Mul64(term[0], term[1])
		var carry uint64
		lo, carry = bits.Add64(lo, l, 0)
		hi += h + carry
	}
	if hi >= 1_000_000 { // the quotient needs more than 64 bits
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, 1_000_000)
	return int64(min(q, math.MaxInt64))
}

// Response is a provider's final answer for one request.
type Response struct {
	Message      Message // role "assistant"; content and/or tool calls
	FinishReason string  // "stop", "tool_calls", "length", ...
	Usage        Usage
	// Model and SystemFingerprint are what the provider reported, if anything.
	Model             string
	SystemFingerprint string
}

// Provider is a chat model endpoint.
type Provider interface {
	// Chat runs one completion. If onDelta is not nil the provider streams and
	// calls it with each piece of assistant content as it arrives; the returned
	// Response is complete either way. An error from onDelta stops the stream
	// and is returned.
	Chat(ctx context.Context, req Request, onDelta func(content string) error) (Response, error)
}
