package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	jsonv2 "github.com/go-json-experiment/json"
	"net/http"
	"slices"
	"strings"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

// chatFields are the top-level fields of a chat request this server accepts.
// Every other field is refused with a 400 that names it: a field dropped
// without a word would give the client an answer to a question it did not
// ask (a structured-output request answered in prose, a seed ignored).
var chatFields = []string{
	"model", "messages", "stream", "stream_options", "user", "tools", "functions", "function_call",
	"temperature", "max_tokens", "max_completion_tokens",
	"response_format", "seed", "stop", "top_p", "n",
	"frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs",
	"tool_choice", "parallel_tool_calls", "metadata", "reasoning_effort", "store",
}

// chatOptions are the request fields sent to the provider as they came.
type chatOptions struct {
	ResponseFormat      json.RawMessage `json:"response_format"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	TopP                *float64        `json:"top_p"`
	N                   *int            `json:"n"`
	FrequencyPenalty    *float64        `json:"frequency_penalty"`
	PresencePenalty     *float64        `json:"presence_penalty"`
	LogitBias           json.RawMessage `json:"logit_bias"`
	Logprobs            *bool           `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls"`
	Metadata            json.RawMessage `json:"metadata"`
	ReasoningEffort     string          `json:"reasoning_effort"`
	Store               *bool           `json:"store"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
}

// decodeChat reads a chat request, refusing any top-level field not in
// chatFields. Field names are matched exactly ("Seed" is not "seed").
func decodeChat(w http.ResponseWriter, r *http.Request, limit int64) (chatRequest, error) {
	raw, err := decodeFields(w, r, limit, chatFields)
	if err != nil {
		return chatRequest{}, err
	}
	var req chatRequest
	// Exact names below the top level too (encoding/json would fold
	// "ROLE" onto "role").
	if err := jsonv2.Unmarshal(raw, &req); err != nil {
		return chatRequest{}, fmt.Errorf("%w: malformed JSON body: %v", kind.Invalid, err)
	}
	return req, nil
}

// decodeFields reads a JSON object body whose top-level fields are all in
// allowed; the first other one is refused by name.
func decodeFields(w http.ResponseWriter, r *http.Request, limit int64, allowed []string) (json.RawMessage, error) {
	raw, err := decode[json.RawMessage](w, r, limit, false)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("%w: the body must be a JSON object", kind.Invalid)
	}
	var unknown []string
	for name := range fields {
		if !slices.Contains(allowed, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, fmt.Errorf("%w: unsupported field %q: this server does not forward it to the model, and refuses rather than ignore it", kind.Invalid, unknown[0])
	}
	return raw, nil
}

// llmOptions checks the fields the provider receives as they came and
// returns them. Those whose results could not pass the output guard
// (logprobs list the model's tokens and their alternatives unchecked) or
// that the agent cannot honour (several choices through one tool loop; the
// provider keeping the tenant's conversation) are refused by name.
func (o chatOptions) llmOptions() (llm.Options, error) {
	out := llm.Options{
		Seed: o.Seed, TopP: o.TopP, N: o.N, FrequencyPenalty: o.FrequencyPenalty,
		PresencePenalty: o.PresencePenalty, Logprobs: o.Logprobs, ParallelToolCalls: o.ParallelToolCalls,
		MaxCompletionTokens: o.MaxCompletionTokens, ReasoningEffort: o.ReasoningEffort, Store: o.Store,
	}
	switch {
	case o.N != nil && *o.N != 1:
		return out, fmt.Errorf("%w: n: only 1 is supported (one answer per turn)", kind.Invalid)
	case o.Logprobs != nil && *o.Logprobs:
		return out, fmt.Errorf("%w: logprobs: not supported (token alternatives cannot pass the output guard)", kind.Invalid)
	case o.TopLogprobs != nil && *o.TopLogprobs != 0:
		return out, fmt.Errorf("%w: top_logprobs: not supported (token alternatives cannot pass the output guard)", kind.Invalid)
	case o.Store != nil && *o.Store:
		return out, fmt.Errorf("%w: store: true is not supported (the provider would keep the tenant's conversation)", kind.Invalid)
	case o.MaxCompletionTokens != nil && *o.MaxCompletionTokens < 0:
		return out, fmt.Errorf("%w: max_completion_tokens must not be negative", kind.Invalid)
	}
	raws := []struct {
		name   string
		in     json.RawMessage
		out    *json.RawMessage
		starts string // the JSON types allowed, by first byte
	}{
		{"response_format", o.ResponseFormat, &out.ResponseFormat, "{"},
		{"stop", o.Stop, &out.Stop, `"[`},
		{"logit_bias", o.LogitBias, &out.LogitBias, "{"},
		{"tool_choice", o.ToolChoice, &out.ToolChoice, `"{`},
		{"metadata", o.Metadata, &out.Metadata, "{"},
	}
	for _, f := range raws {
		in := bytes.TrimSpace(f.in)
		if len(in) == 0 || bytes.Equal(in, []byte("null")) {
			continue
		}
		if !strings.ContainsRune(f.starts, rune(in[0])) {
			return out, fmt.Errorf("%w: %s has the wrong type", kind.Invalid, f.name)
		}
		var b bytes.Buffer
		if err := json.Compact(&b, in); err != nil {
			return out, fmt.Errorf("%w: %s: %v", kind.Invalid, f.name, err)
		}
		*f.out = b.Bytes()
	}
	return out, nil
}

// cacheControl reads the request's Cache-Control: no-cache skips the
// response cache lookup and no-store keeps the answer out of it.
func cacheControl(h http.Header) (noCache, noStore bool) {
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			switch strings.ToLower(strings.TrimSpace(d)) {
			case "no-cache":
				noCache = true
			case "no-store":
				noStore = true
			}
		}
	}
	return noCache, noStore
}
