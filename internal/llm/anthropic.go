package llm

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/upstream"
)

const (
	// DefaultAnthropicURL is the Messages API's root.
	DefaultAnthropicURL = "https://api.anthropic.com"
	anthropicVersion    = "2023-06-01"
	// defaultAnthropicMaxTokens is sent when the client sets no limit: the
	// Messages API requires max_tokens, and OpenAI clients rarely send one.
	defaultAnthropicMaxTokens = 4096
	statusOverloaded          = 529 // Anthropic's "overloaded_error"
)

// AnthropicOptions configures a client for Anthropic's Messages API.
type AnthropicOptions struct {
	// BaseURL is the API root; requests go to BaseURL+"/v1/messages". Empty
	// means DefaultAnthropicURL.
	BaseURL string
	// APIKey is sent as "x-api-key"; it never appears in errors.
	APIKey string
	// Timeout, Deadline, MaxRetries and HTTPClient mean what they mean in
	// OpenAIOptions.
	Timeout    time.Duration
	Deadline   time.Duration
	MaxRetries int
	HTTPClient *http.Client
	// MaxTokens is sent when a request sets neither max_tokens nor
	// max_completion_tokens; 0 means 4096.
	MaxTokens int
}

// Anthropic is a Provider for Anthropic's Messages API. It takes OpenAI-shaped
// requests and answers with OpenAI-shaped responses: system messages become
// the "system" blocks, tools their "input_schema" form, tool calls "tool_use"
// blocks and tool messages "tool_result" blocks; stop reasons map to OpenAI's
// finish reasons. A request option the Messages API has no equivalent for is
// refused with an *UnsupportedError naming it, never dropped.
//
// Prompt caching: the first system block (the tenant's system prompt, with
// its canary) is marked cache_control ephemeral. Anthropic keys its cache by
// the exact prefix (tools, then system) and the API key's organisation, not
// by a caller-chosen key, so Request.PromptCacheKey is not sent: a tenant's
// cached prefix holds its own prompt and canary, which no other tenant's
// request can produce, so no other tenant can hit it.
type Anthropic struct {
	httpModel
	maxTokens int
}

// NewAnthropic returns a client for the endpoint described by opts.
func NewAnthropic(opts AnthropicOptions) (*Anthropic, error) {
	baseURL, err := upstream.BaseURL(cmp.Or(opts.BaseURL, DefaultAnthropicURL))
	if err != nil {
		return nil, fmt.Errorf("llm: %w", err)
	}
	if opts.Timeout < 0 || opts.Deadline < 0 || opts.MaxTokens < 0 {
		return nil, errors.New("llm: negative timeout or max tokens")
	}
	return &Anthropic{
		httpModel: newHTTPModel(baseURL, baseURL+"/v1/messages", opts.APIKey, opts.Timeout, opts.Deadline, opts.MaxRetries, opts.HTTPClient),
		maxTokens: cmp.Or(opts.MaxTokens, defaultAnthropicMaxTokens),
	}, nil
}

// String names the endpoint; it never includes the API key.
func (c *Anthropic) String() string { return "anthropic(" + c.baseURL + ")" }

// UnsupportedError reports a request field a provider cannot take. It is the
// client's to fix (a 400 naming Field), and no other model is tried for it.
type UnsupportedError struct {
	Provider string
	Field    string
	Reason   string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s: the %s provider does not support it (%s)", e.Field, e.Provider, e.Reason)
}

// Wire shapes of the Messages API.

type antRequest struct {
	Model         string          `json:"model"`
	System        []antBlock      `json:"system,omitempty"`
	Messages      []antMessage    `json:"messages"`
	Tools         []antTool       `json:"tools,omitempty"`
	ToolChoice    json.RawMessage `json:"tool_choice,omitempty"`
	MaxTokens     int             `json:"max_tokens"`
	Temperature   *float64        `json:"temperature,omitempty"`
	TopP          *float64        `json:"top_p,omitempty"`
	StopSequences []string        `json:"stop_sequences,omitempty"`
	Metadata      *antMetadata    `json:"metadata,omitempty"`
	Stream        bool            `json:"stream,omitempty"`
}

type antMetadata struct {
	UserID string `json:"user_id,omitempty"`
}

type antMessage struct {
	Role    string     `json:"role"`
	Content []antBlock `json:"content"`
}

// antBlock is any content block; only the members of its type are set.
type antBlock struct {
	Type         string          `json:"type"`
	Text         string          `json:"text,omitempty"`
	ID           string          `json:"id,omitempty"`
	Name         string          `json:"name,omitempty"`
	Input        json.RawMessage `json:"input,omitempty"`
	ToolUseID    string          `json:"tool_use_id,omitempty"`
	Content      string          `json:"content,omitempty"`
	CacheControl *antCache       `json:"cache_control,omitempty"`
}

type antCache struct {
	Type string `json:"type"`
}

type antTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type antUsage struct {
	InputTokens              int `json:"input_tokens"`
	OutputTokens             int `json:"output_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
}

type antResponse struct {
	Model      string          `json:"model"`
	Content    []antBlock      `json:"content"`
	StopReason string          `json:"stop_reason"`
	Usage      antUsage        `json:"usage"`
	Error      json.RawMessage `json:"error"`
}

// antEvent is one streamed event; its "type" says which members are set.
type antEvent struct {
	Type    string `json:"type"`
	Index   int    `json:"index"`
	Message *struct {
		Model string   `json:"model"`
		Usage antUsage `json:"usage"`
	} `json:"message"`
	ContentBlock *antBlock `json:"content_block"`
	Delta        *struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *antUsage       `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// Chat implements Provider, with the retry rules of OpenAI.Chat; a 529
// (overloaded) is retried like a 503.
func (c *Anthropic) Chat(ctx context.Context, req Request, onDelta func(content string) error) (Response, error) {
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	if m, ok := c.withKey(req.APIKey); ok {
		c = &Anthropic{httpModel: m, maxTokens: c.maxTokens}
	}
	body, err := c.encode(req, onDelta != nil)
	if err != nil {
		return Response{}, err
	}
	return c.retry(ctx, req.NoRetry, func(ctx context.Context) (Response, *upstream.Hint, error) {
		return c.attempt(ctx, body, onDelta, req.Started)
	})
}

func (c *Anthropic) unsupported(field, reason string) error {
	return &UnsupportedError{Provider: "anthropic", Field: field, Reason: reason}
}

// encode maps an OpenAI-shaped request onto the Messages API.
func (c *Anthropic) encode(req Request, stream bool) ([]byte, error) {
	wire := antRequest{Model: req.Model, Messages: []antMessage{}, MaxTokens: c.maxTokens,
		Temperature: req.Temperature, Stream: stream}
	if err := c.mapOptions(req, &wire); err != nil {
		return nil, err
	}
	for _, m := range req.Messages {
		var blocks []antBlock
		role := m.Role
		switch m.Role {
		case "system":
			if m.Content != "" {
				wire.System = append(wire.System, antBlock{Type: "text", Text: m.Content})
			}
			continue
		case "user":
			if m.Content != "" {
				blocks = append(blocks, antBlock{Type: "text", Text: m.Content})
			}
		case "assistant":
			if m.Content != "" {
				blocks = append(blocks, antBlock{Type: "text", Text: m.Content})
			}
			for _, tc := range m.ToolCalls {
				input := json.RawMessage(strings.TrimSpace(tc.Function.Arguments))
				if len(input) == 0 {
					input = json.RawMessage("{}")
				}
				if !json.Valid(input) || input[0] != '{' {
					return nil, fmt.Errorf("llm: tool call %q: arguments are not a JSON object", tc.Function.Name)
				}
				blocks = append(blocks, antBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
			}
		case "tool":
			// Tool results go back in a user turn, one block per call.
			role = "user"
			blocks = append(blocks, antBlock{Type: "tool_result", ToolUseID: m.ToolCallID, Content: m.Content})
		default:
			return nil, fmt.Errorf("llm: message role %q has no Messages API equivalent", m.Role)
		}
		if len(blocks) == 0 {
			continue // the API refuses empty turns and empty text blocks
		}
		// Consecutive turns of one role merge: several tool results answer
		// one assistant turn together.
		if n := len(wire.Messages); n > 0 && wire.Messages[n-1].Role == role {
			wire.Messages[n-1].Content = append(wire.Messages[n-1].Content, blocks...)
			continue
		}
		wire.Messages = append(wire.Messages, antMessage{Role: role, Content: blocks})
	}
	if len(wire.System) > 0 {
		// The first system block is the profile's prompt: the stable prefix
		// worth caching (see the Anthropic type's comment).
		wire.System[0].CacheControl = &antCache{Type: "ephemeral"}
	}
	// A tool's Strict is not sent: the Messages API has no such member
	// (documented in the README), and the Agents SDK sets it on every tool.
	for _, t := range req.Tools {
		schema := t.Function.Parameters
		if len(schema) == 0 {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		wire.Tools = append(wire.Tools, antTool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	body, err := json.Marshal(wire)
	if err != nil {
		return nil, fmt.Errorf("llm: encode request: %w", err)
	}
	return body, nil
}

// mapOptions carries the client's options over, or refuses those the
// Messages API cannot honour.
func (c *Anthropic) mapOptions(req Request, wire *antRequest) error {
	o := req.Options
	if req.MaxTokens > 0 {
		wire.MaxTokens = req.MaxTokens
	}
	if o.MaxCompletionTokens != nil && *o.MaxCompletionTokens > 0 {
		wire.MaxTokens = *o.MaxCompletionTokens
	}
	wire.TopP = o.TopP
	if req.User != "" {
		wire.Metadata = &antMetadata{UserID: req.User}
	}
	if len(o.ResponseFormat) > 0 {
		var rf struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(o.ResponseFormat, &rf) != nil || rf.Type != "text" {
			return c.unsupported("response_format", "only {\"type\":\"text\"}")
		}
	}
	if len(o.Stop) > 0 {
		var one string
		if json.Unmarshal(o.Stop, &one) == nil {
			wire.StopSequences = []string{one}
		} else if err := json.Unmarshal(o.Stop, &wire.StopSequences); err != nil {
			return c.unsupported("stop", "must be a string or an array of strings")
		}
	}
	switch {
	case o.Seed != nil:
		return c.unsupported("seed", "no seeded sampling")
	case o.N != nil && *o.N != 1:
		return c.unsupported("n", "one choice per request")
	case o.FrequencyPenalty != nil && *o.FrequencyPenalty != 0:
		return c.unsupported("frequency_penalty", "no penalties")
	case o.PresencePenalty != nil && *o.PresencePenalty != 0:
		return c.unsupported("presence_penalty", "no penalties")
	case len(o.LogitBias) > 0 && string(o.LogitBias) != "{}":
		return c.unsupported("logit_bias", "no token biases")
	case o.Logprobs != nil && *o.Logprobs:
		return c.unsupported("logprobs", "no log probabilities")
	case len(o.Metadata) > 0:
		return c.unsupported("metadata", "its metadata takes only a user id, which Bulkhead sets")
	case o.ReasoningEffort != "":
		return c.unsupported("reasoning_effort", "extended thinking is not mapped")
	case o.Store != nil && *o.Store:
		return c.unsupported("store", "no stored completions")
	}
	return c.mapToolChoice(o, wire)
}

// mapToolChoice turns OpenAI's tool_choice and parallel_tool_calls into
// Anthropic's tool_choice object.
func (c *Anthropic) mapToolChoice(o Options, wire *antRequest) error {
	choice := map[string]any{}
	if len(o.ToolChoice) > 0 {
		var mode string
		var named struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		switch {
		case json.Unmarshal(o.ToolChoice, &mode) == nil:
			switch mode {
			case "auto", "none":
				choice["type"] = mode
			case "required":
				choice["type"] = "any"
			default:
				return c.unsupported("tool_choice", "unknown mode")
			}
		case json.Unmarshal(o.ToolChoice, &named) == nil && named.Function.Name != "":
			choice["type"], choice["name"] = "tool", named.Function.Name
		default:
			return c.unsupported("tool_choice", "unknown form")
		}
	}
	if o.ParallelToolCalls != nil && !*o.ParallelToolCalls {
		if choice["type"] == "none" {
			return c.unsupported("parallel_tool_calls", "meaningless with tool_choice none")
		}
		choice["type"] = cmp.Or(choice["type"], any("auto"))
		choice["disable_parallel_tool_use"] = true
	}
	if len(choice) == 0 {
		return nil
	}
	b, err := json.Marshal(choice)
	if err != nil {
		return fmt.Errorf("llm: encode tool_choice: %w", err)
	}
	wire.ToolChoice = b
	return nil
}

// attempt makes one HTTP request. A non-nil hint means the failure may be retried.
func (c *Anthropic) attempt(ctx context.Context, body []byte, onDelta func(string) error, started func()) (Response, *upstream.Hint, error) {
	actx, cancel := context.WithTimeoutCause(ctx, c.timeout, errAttemptTimeout)
	defer cancel()
	hresp, hint, err := c.post(actx, body, onDelta != nil, func(h http.Header) {
		h.Set("anthropic-version", anthropicVersion)
		if c.apiKey != "" {
			h.Set("x-api-key", c.apiKey)
		}
	})
	var serr *StatusError
	if errors.As(err, &serr) && serr.StatusCode == statusOverloaded {
		// Overloaded is retried, after at most 10 s whatever it asks.
		hint = &upstream.Hint{After: min(serr.RetryAfter, 10*time.Second), HasAfter: serr.HasRetryAfter}
	}
	if err != nil {
		return Response{}, hint, err
	}
	defer hresp.Body.Close()
	if started != nil && onDelta != nil {
		started()
	}
	if onDelta == nil || isJSON(hresp.Header.Get("Content-Type")) {
		resp, err := c.readJSON(actx, hresp.Body, onDelta)
		return resp, nil, err
	}
	resp, err := c.readStream(actx, hresp.Body, onDelta)
	return resp, nil, err
}

// finishReason maps a Messages API stop_reason to OpenAI's finish_reason.
func finishReason(stop string) string {
	switch stop {
	case "end_turn", "stop_sequence", "pause_turn":
		return "stop"
	case "max_tokens":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return stop
}

func (u antUsage) usage() Usage {
	prompt := u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
	return Usage{PromptTokens: prompt, CompletionTokens: u.OutputTokens, TotalTokens: prompt + u.OutputTokens,
		PromptTokensDetails: PromptTokensDetails{CachedTokens: u.CacheReadInputTokens}}
}

func (c *Anthropic) readJSON(actx context.Context, body io.Reader, onDelta func(string) error) (Response, error) {
	var ar antResponse
	if err := c.readBody(actx, body, &ar); err != nil {
		return Response{}, err
	}
	if err := c.upstreamError(ar.Error); err != nil {
		return Response{}, err
	}
	resp := Response{Message: Message{Role: "assistant"}, Model: ar.Model, FinishReason: finishReason(ar.StopReason), Usage: ar.Usage.usage()}
	var text strings.Builder
	for _, b := range ar.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "tool_use":
			if len(resp.Message.ToolCalls) >= maxToolCalls {
				return Response{}, fmt.Errorf("llm: upstream response has more than %d tool calls", maxToolCalls)
			}
			args := string(b.Input)
			if args == "" || args == "null" {
				args = "{}"
			}
			resp.Message.ToolCalls = append(resp.Message.ToolCalls,
				normalizeCall(ToolCall{ID: b.ID, Type: "function", Function: FunctionCall{Name: b.Name, Arguments: args}}, len(resp.Message.ToolCalls)))
		}
	}
	resp.Message.Content = text.String()
	if onDelta != nil && resp.Message.Content != "" {
		if err := onDelta(resp.Message.Content); err != nil {
			return Response{}, err
		}
	}
	return resp, nil
}

func (c *Anthropic) readStream(actx context.Context, body io.Reader, onDelta func(string) error) (Response, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELineBytes)
	var (
		content strings.Builder
		calls   = map[int]*callAcc{} // by content block index
		order   []*callAcc
		resp    = Response{Message: Message{Role: "assistant"}}
		usage   antUsage
		total   int
		done    bool
	)
	for !done && sc.Scan() {
		data, ok := sseData(sc.Bytes())
		if !ok {
			continue // "event:" lines repeat the data's type
		}
		var ev antEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return Response{}, errors.New("llm: malformed stream event")
		}
		switch ev.Type {
		case "error":
			return Response{}, fmt.Errorf("llm: upstream stream error: %s", upstream.Clean(upstream.ErrorMessage(ev.Error), maxErrorMessage, c.redactor))
		case "message_start":
			if ev.Message != nil {
				resp.Model, usage = ev.Message.Model, ev.Message.Usage
			}
		case "content_block_start":
			if b := ev.ContentBlock; b != nil && b.Type == "tool_use" {
				if len(order) >= maxToolCalls {
					return Response{}, fmt.Errorf("llm: upstream response has more than %d tool calls", maxToolCalls)
				}
				a := &callAcc{index: ev.Index, call: ToolCall{ID: b.ID, Type: "function", Function: FunctionCall{Name: b.Name}}}
				calls[ev.Index] = a
				order = append(order, a)
			}
		case "content_block_delta":
			if ev.Delta == nil {
				continue
			}
			switch ev.Delta.Type {
			case "text_delta":
				if total += len(ev.Delta.Text); total > maxResponseBytes {
					return Response{}, errors.New("llm: streamed response exceeds 8 MiB")
				}
				if ev.Delta.Text == "" {
					continue
				}
				content.WriteString(ev.Delta.Text)
				if err := onDelta(ev.Delta.Text); err != nil {
					return Response{}, err
				}
			case "input_json_delta":
				a := calls[ev.Index]
				if a == nil {
					return Response{}, errors.New("llm: stream sent tool input for no tool call")
				}
				if total += len(ev.Delta.PartialJSON); total > maxResponseBytes {
					return Response{}, errors.New("llm: streamed response exceeds 8 MiB")
				}
				a.args.WriteString(ev.Delta.PartialJSON)
			}
		case "message_delta":
			if ev.Delta != nil && ev.Delta.StopReason != "" {
				resp.FinishReason = finishReason(ev.Delta.StopReason)
			}
			if ev.Usage != nil {
				// message_delta's usage is cumulative; input counts may be absent.
				usage.OutputTokens = ev.Usage.OutputTokens
				usage.InputTokens = max(usage.InputTokens, ev.Usage.InputTokens)
				usage.CacheCreationInputTokens = max(usage.CacheCreationInputTokens, ev.Usage.CacheCreationInputTokens)
				usage.CacheReadInputTokens = max(usage.CacheReadInputTokens, ev.Usage.CacheReadInputTokens)
			}
		case "message_stop":
			done = true
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Response{}, errors.New("llm: stream line exceeds 1 MiB")
		}
		return Response{}, c.readError(actx, "read stream", err)
	}
	if !done {
		return Response{}, fmt.Errorf("llm: read stream: %w", io.ErrUnexpectedEOF)
	}
	resp.Message.Content = content.String()
	resp.Usage = usage.usage()
	for i, a := range order {
		a.call.Function.Arguments = cmp.Or(a.args.String(), "{}")
		resp.Message.ToolCalls = append(resp.Message.ToolCalls, normalizeCall(a.call, i))
	}
	return resp, nil
}
