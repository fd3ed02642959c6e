package llm

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/redact"
	"github.com/bulkhead-ai/bulkhead/internal/upstream"
)

const (
	defaultTimeout    = 120 * time.Second
	defaultMaxRetries = 2

	maxResponseBytes = 8 << 20 // non-streamed body; also total streamed content+arguments
	maxSSELineBytes  = 1 << 20 // one SSE line
	maxErrorMessage  = 512     // bytes of upstream message kept in a StatusError
	maxToolCalls     = 512     // tool calls accepted in one response

	backoffBase = 200 * time.Millisecond

	redacted = "[REDACTED]"
)

// OpenAIOptions configures an OpenAI-compatible chat-completions client.
type OpenAIOptions struct {
	// BaseURL is the API root, e.g. "http://127.0.0.1:9000/v1"; requests go to
	// BaseURL+"/chat/completions". It must be http or https with a host and
	// may not carry user info, a query or a fragment.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <key>"; empty sends no header.
	// It never appears in errors or in the String and LogValue forms.
	APIKey string
	// Timeout bounds one attempt, including reading a streamed body; 0 means 120s.
	Timeout time.Duration
	// Deadline bounds one Chat call, retries and their waits included, so
	// that one request costs at most 1+MaxRetries upstream calls within one
	// overall deadline; 0 means twice Timeout.
	Deadline time.Duration
	// MaxRetries is how many times a retryable failure is retried; 0 means 2,
	// negative means none.
	MaxRetries int
	// HTTPClient is used for every request; nil means a client of its own with
	// a dedicated keep-alive Transport. Share one client between many OpenAI
	// values (for example one per tenant key) to share its connection pool.
	HTTPClient *http.Client
}

// String describes the options with the API key redacted.
func (o OpenAIOptions) String() string {
	key := ""
	if o.APIKey != "" {
		key = redacted
	}
	return fmt.Sprintf("{BaseURL:%s APIKey:%s Timeout:%s MaxRetries:%d}", o.BaseURL, key, o.Timeout, o.MaxRetries)
}

// LogValue implements slog.LogValuer with the API key redacted.
func (o OpenAIOptions) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("base_url", o.BaseURL),
		slog.Bool("api_key_set", o.APIKey != ""),
		slog.Duration("timeout", o.Timeout),
		slog.Int("max_retries", o.MaxRetries),
	)
}

// OpenAI is a Provider for any OpenAI-compatible chat-completions endpoint.
// It is safe for concurrent use. Each call allocates its own buffers, so no
// two requests (or tenants) ever share response memory.
type OpenAI struct{ httpModel }

// NewOpenAI returns a client for the endpoint described by opts.
func NewOpenAI(opts OpenAIOptions) (*OpenAI, error) {
	baseURL, err := upstream.BaseURL(opts.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("llm: %w", err)
	}
	if opts.Timeout < 0 || opts.Deadline < 0 {
		return nil, errors.New("llm: negative timeout")
	}
	return &OpenAI{newHTTPModel(baseURL, baseURL+"/chat/completions", opts.APIKey, opts.Timeout, opts.Deadline, opts.MaxRetries, opts.HTTPClient)}, nil
}

// String names the endpoint; it never includes the API key.
func (c *OpenAI) String() string { return "openai(" + c.baseURL + ")" }

// StatusError reports a non-2xx response from the upstream.
type StatusError struct {
	StatusCode int
	// Message is the upstream's error.message, or else the start of its body,
	// at most 512 bytes, with the API key removed.
	Message string
	// RetryAfter is the wait the upstream asked for in Retry-After (at most
	// an hour), when HasRetryAfter is set.
	RetryAfter    time.Duration
	HasRetryAfter bool
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("upstream returned %d: %s", e.StatusCode, e.Message)
}

// Wire shapes.

type chatRequest struct {
	Model         string         `json:"model"`
	Messages      []Message      `json:"messages"`
	Tools         []Tool         `json:"tools,omitempty"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
	User          string         `json:"user,omitempty"`
	// PromptCacheKey partitions the provider's prompt cache (OpenAI).
	PromptCacheKey string   `json:"prompt_cache_key,omitempty"`
	MaxTokens      int      `json:"max_tokens,omitempty"`
	Temperature    *float64 `json:"temperature,omitempty"`
	Options
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatResponse struct {
	Model             string `json:"model"`
	SystemFingerprint string `json:"system_fingerprint"`
	Choices           []struct {
		Index   int `json:"index"`
		Message struct {
			Content   *string    `json:"content"`
			ToolCalls []ToolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage          `json:"usage"`
	Error json.RawMessage `json:"error"`
}

type streamChunk struct {
	Model             string `json:"model"`
	SystemFingerprint string `json:"system_fingerprint"`
	Choices           []struct {
		Index int `json:"index"`
		Delta struct {
			Content   *string `json:"content"`
			ToolCalls []struct {
				Index    *int   `json:"index"`
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage          `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// Chat implements Provider. Failures with status 500, 502, 503 or 504, and
// transport failures before any response, are retried with exponential
// backoff and jitter (or after Retry-After, capped at 10s); nothing is retried
// once a successful response has begun. A 429 is not retried: it goes back to
// the caller with the upstream's Retry-After, whose own client honours it, so
// that retries do not multiply. A non-2xx response is a *StatusError.
// A cancelled ctx returns ctx.Err(); an attempt that exceeds the timeout
// returns an error wrapping context.DeadlineExceeded.
func (c *OpenAI) Chat(ctx context.Context, req Request, onDelta func(content string) error) (Response, error) {
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	if m, ok := c.withKey(req.APIKey); ok {
		c = &OpenAI{m}
	}
	body, err := encodeRequest(req, onDelta != nil)
	if err != nil {
		return Response{}, err
	}
	return c.retry(ctx, req.NoRetry, func(ctx context.Context) (Response, *upstream.Hint, error) {
		return c.attempt(ctx, body, onDelta, req.Started)
	})
}

func encodeRequest(req Request, stream bool) ([]byte, error) {
	wire := chatRequest{
		Model:          req.Model,
		Messages:       req.Messages,
		Tools:          req.Tools,
		Stream:         stream,
		User:           req.User,
		PromptCacheKey: req.PromptCacheKey,
		MaxTokens:      max(req.MaxTokens, 0),
		Temperature:    req.Temperature,
		Options:        req.Options,
	}
	if wire.Messages == nil {
		wire.Messages = []Message{}
	}
	if stream {
		wire.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	body, err := json.Marshal(wire)
	if err != nil {
		return nil, fmt.Errorf("llm: encode request: %w", err)
	}
	return body, nil
}

var errAttemptTimeout = errors.New("attempt timeout")

// attempt makes one HTTP request. A non-nil hint means the failure may be retried.
func (c *OpenAI) attempt(ctx context.Context, body []byte, onDelta func(string) error, started func()) (Response, *upstream.Hint, error) {
	actx, cancel := context.WithTimeoutCause(ctx, c.timeout, errAttemptTimeout)
	defer cancel()
	hresp, hint, err := c.post(actx, body, onDelta != nil, func(h http.Header) {
		if c.apiKey != "" {
			h.Set("Authorization", "Bearer "+c.apiKey)
		}
	})
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

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// keyRedactor hides the API key and its common encodings in error text.
func keyRedactor(key string) *redact.Redactor {
	return redact.New([]redact.Secret{{Name: "api_key", Value: key}})
}

func (c *OpenAI) readJSON(actx context.Context, body io.Reader, onDelta func(string) error) (Response, error) {
	var cr chatResponse
	if err := c.readBody(actx, body, &cr); err != nil {
		return Response{}, err
	}
	if err := c.upstreamError(cr.Error); err != nil {
		return Response{}, err
	}
	if len(cr.Choices) == 0 {
		return Response{}, errors.New("llm: upstream response has no choices")
	}
	ch := cr.Choices[0]
	for i := range cr.Choices {
		if cr.Choices[i].Index == 0 {
			ch = cr.Choices[i]
			break
		}
	}
	if len(ch.Message.ToolCalls) > maxToolCalls {
		return Response{}, fmt.Errorf("llm: upstream response has more than %d tool calls", maxToolCalls)
	}
	resp := Response{Message: Message{Role: "assistant"}, Model: cr.Model, SystemFingerprint: cr.SystemFingerprint}
	if ch.Message.Content != nil {
		resp.Message.Content = *ch.Message.Content
	}
	if ch.FinishReason != nil {
		resp.FinishReason = *ch.FinishReason
	}
	if cr.Usage != nil {
		resp.Usage = *cr.Usage
	}
	for i, tc := range ch.Message.ToolCalls {
		resp.Message.ToolCalls = append(resp.Message.ToolCalls, normalizeCall(tc, i))
	}
	if onDelta != nil && resp.Message.Content != "" {
		if err := onDelta(resp.Message.Content); err != nil {
			return Response{}, err
		}
	}
	return resp, nil
}

// normalizeCall fills a missing type and id; some servers omit them.
func normalizeCall(tc ToolCall, i int) ToolCall {
	if tc.Type == "" {
		tc.Type = "function"
	}
	if tc.ID == "" {
		tc.ID = "call_" + strconv.Itoa(i+1)
	}
	return tc
}

// callAcc accumulates one streamed tool call.
type callAcc struct {
	index int
	call  ToolCall
	args  strings.Builder
}

func (c *OpenAI) readStream(actx context.Context, body io.Reader, onDelta func(string) error) (Response, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELineBytes)

	var (
		content strings.Builder
		calls   []*callAcc
		byIndex = map[int]*callAcc{}
		resp    = Response{Message: Message{Role: "assistant"}}
		total   int
		done    bool
	)
	for !done && sc.Scan() {
		data, ok := sseData(sc.Bytes())
		if !ok {
			continue
		}
		if string(bytes.TrimSpace(data)) == "[DONE]" {
			done = true
			break
		}
		var chunk streamChunk
		if err := json.Unmarshal(data, &chunk); err != nil {
			return Response{}, errors.New("llm: malformed stream chunk")
		}
		if m := upstream.ErrorMessage(chunk.Error); m != "" {
			return Response{}, fmt.Errorf("llm: upstream stream error: %s", upstream.Clean(m, maxErrorMessage, c.redactor))
		}
		if chunk.Usage != nil {
			resp.Usage = *chunk.Usage
		}
		resp.Model = cmp.Or(chunk.Model, resp.Model)
		resp.SystemFingerprint = cmp.Or(chunk.SystemFingerprint, resp.SystemFingerprint)
		for _, ch := range chunk.Choices {
			if ch.Index != 0 {
				continue
			}
			if ch.FinishReason != nil && *ch.FinishReason != "" {
				resp.FinishReason = *ch.FinishReason
			}
			if ch.Delta.Content != nil && *ch.Delta.Content != "" {
				piece := *ch.Delta.Content
				if total += len(piece); total > maxResponseBytes {
					return Response{}, errors.New("llm: streamed response exceeds 8 MiB")
				}
				content.WriteString(piece)
				if err := onDelta(piece); err != nil {
					return Response{}, err
				}
			}
			for _, d := range ch.Delta.ToolCalls {
				idx := 0
				switch {
				case d.Index != nil:
					idx = *d.Index
				case d.ID != "" || len(calls) == 0:
					idx = len(calls) // no index: a new id starts a new call
					for byIndex[idx] != nil {
						idx++
					}
				default:
					idx = calls[len(calls)-1].index
				}
				a := byIndex[idx]
				if a == nil {
					if len(calls) >= maxToolCalls {
						return Response{}, fmt.Errorf("llm: upstream response has more than %d tool calls", maxToolCalls)
					}
					a = &callAcc{index: idx}
					byIndex[idx] = a
					calls = append(calls, a)
				}
				if a.call.ID == "" {
					a.call.ID = d.ID
				}
				if a.call.Type == "" {
					a.call.Type = d.Type
				}
				if a.call.Function.Name == "" {
					a.call.Function.Name = d.Function.Name
				}
				if total += len(d.Function.Arguments) + len(d.Function.Name) + len(d.ID); total > maxResponseBytes {
					return Response{}, errors.New("llm: streamed response exceeds 8 MiB")
				}
				a.args.WriteString(d.Function.Arguments)
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Response{}, errors.New("llm: stream line exceeds 1 MiB")
		}
		return Response{}, c.readError(actx, "read stream", err)
	}
	if !done && resp.FinishReason == "" {
		return Response{}, fmt.Errorf("llm: read stream: %w", io.ErrUnexpectedEOF)
	}
	resp.Message.Content = content.String()
	slices.SortStableFunc(calls, func(a, b *callAcc) int { return cmp.Compare(a.index, b.index) })
	for i, a := range calls {
		a.call.Function.Arguments = a.args.String()
		resp.Message.ToolCalls = append(resp.Message.ToolCalls, normalizeCall(a.call, i))
	}
	return resp, nil
}

// sseData returns the value of a "data:" line; other fields, comments and
// blank lines report false.
func sseData(line []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok {
		return nil, false
	}
	rest = bytes.TrimPrefix(rest, []byte(" "))
	if len(bytes.TrimSpace(rest)) == 0 {
		return nil, false
	}
	return rest, true
}
