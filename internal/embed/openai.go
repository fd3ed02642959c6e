package embed

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/redact"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
	"github.com/bulkhead-ai/bulkhead/internal/upstream"
)

const (
	defaultTimeout    = 60 * time.Second
	defaultMaxRetries = 2
	defaultBatchSize  = 64
	maxBatchSize      = 2048 // OpenAI's limit on inputs per request
	maxDim            = 1 << 16

	maxResponseBytes = 64 << 20 // one batch's JSON: 2048 inputs × 3072 floats fit
	maxErrorMessage  = 512

	backoffBase = 200 * time.Millisecond

	redacted = "[REDACTED]"
)

// OpenAIOptions configures an Embedder for an OpenAI-compatible endpoint.
type OpenAIOptions struct {
	// BaseURL is the API root, e.g. "https://api.openai.com/v1" or Ollama's
	// "http://127.0.0.1:11434/v1"; requests go to BaseURL+"/embeddings". It
	// must be http or https with a host and may not carry user info, a query
	// or a fragment.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <key>"; empty sends no header.
	// It never appears in errors or in the String and LogValue forms.
	APIKey string
	// Model is the upstream model name, e.g. "text-embedding-3-small"; required.
	Model string
	// Dim is the expected vector length; an answer of another length is an
	// error. 0 takes the length of the first answer.
	Dim int
	// BatchSize is the most texts sent in one request; 0 means 64, at most 2048.
	BatchSize int
	// Timeout bounds one attempt; 0 means 60s.
	Timeout time.Duration
	// MaxRetries is how many times a retryable failure is retried; 0 means 2,
	// negative means none.
	MaxRetries int
	// HTTPClient is used for every request; nil means a client of its own
	// that does not follow redirects.
	HTTPClient *http.Client
	// KeySecret, when set, names the tenant secret holding the API key (bring
	// your own key): the Embedder then refuses to call the endpoint until
	// WithAPIKey gives it the calling tenant's key. APIKey must be empty.
	KeySecret tenant.SecretName
}

// String describes the options with the API key redacted.
func (o OpenAIOptions) String() string {
	key := ""
	if o.APIKey != "" {
		key = redacted
	}
	return fmt.Sprintf("{BaseURL:%s APIKey:%s KeySecret:%s Model:%s Dim:%d BatchSize:%d Timeout:%s MaxRetries:%d}",
		o.BaseURL, key, o.KeySecret, o.Model, o.Dim, o.BatchSize, o.Timeout, o.MaxRetries)
}

// LogValue implements slog.LogValuer with the API key redacted.
func (o OpenAIOptions) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("base_url", o.BaseURL),
		slog.Bool("api_key_set", o.APIKey != ""),
		slog.String("key_secret", string(o.KeySecret)),
		slog.String("model", o.Model),
		slog.Int("dim", o.Dim),
		slog.Int("batch_size", o.BatchSize),
		slog.Duration("timeout", o.Timeout),
		slog.Int("max_retries", o.MaxRetries),
	)
}

// OpenAI is an Embedder for any OpenAI-compatible /embeddings endpoint. It is
// safe for concurrent use.
type OpenAI struct {
	baseURL    string // carries no secret
	endpoint   string
	model      string
	id         string // Model()
	apiKey     string
	keySecret  tenant.SecretName // set: apiKey must come from WithAPIKey
	batch      int
	timeout    time.Duration
	maxRetries int
	client     *http.Client
	redactor   *redact.Redactor
	base       time.Duration // backoff base; tests shrink it
	dim        atomic.Int64  // 0 until known
}

// NewOpenAI returns an Embedder for the endpoint described by opts.
func NewOpenAI(opts OpenAIOptions) (*OpenAI, error) {
	baseURL, err := upstream.BaseURL(opts.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("embed: %w", err)
	}
	switch {
	case opts.Model == "":
		return nil, errors.New("embed: model is required")
	case strings.IndexByte(opts.Model, 0) >= 0:
		return nil, errors.New("embed: model contains a NUL byte")
	case opts.Dim < 0 || opts.Dim > maxDim:
		return nil, fmt.Errorf("embed: dimension must be between 0 and %d", maxDim)
	case opts.BatchSize < 0 || opts.BatchSize > maxBatchSize:
		return nil, fmt.Errorf("embed: batch size must be between 0 and %d", maxBatchSize)
	case opts.Timeout < 0:
		return nil, errors.New("embed: negative timeout")
	case opts.KeySecret != "" && opts.APIKey != "":
		return nil, errors.New("embed: set an API key or a tenant key secret, not both")
	}
	c := &OpenAI{
		baseURL:    baseURL,
		model:      opts.Model,
		apiKey:     opts.APIKey,
		keySecret:  opts.KeySecret,
		batch:      cmp.Or(opts.BatchSize, defaultBatchSize),
		timeout:    cmp.Or(opts.Timeout, defaultTimeout),
		maxRetries: opts.MaxRetries,
		client:     opts.HTTPClient,
		redactor:   redact.New([]redact.Secret{{Name: "api_key", Value: opts.APIKey}}),
		base:       backoffBase,
	}
	c.endpoint = c.baseURL + "/embeddings"
	c.id = "openai:" + c.baseURL + "/" + c.model
	c.dim.Store(int64(opts.Dim))
	switch {
	case c.maxRetries == 0:
		c.maxRetries = defaultMaxRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.client == nil {
		// It does not follow redirects: a redirect is reported as a
		// StatusError rather than replaying the request (and its key)
		// somewhere else.
		c.client = upstream.NewClient(c.timeout)
	}
	return c, nil
}

// KeySecret names the tenant secret holding the API key each call needs, or
// is empty when the configured key (or none) is used.
func (c *OpenAI) KeySecret() tenant.SecretName { return c.keySecret }

// WithAPIKey returns an Embedder that calls the same endpoint and model with
// key, a tenant's own (bring your own key). It shares c's learned dimension
// but not its key: the copy's errors have key removed, c keeps its own.
func (c *OpenAI) WithAPIKey(key secret.Value) Embedder {
	return &keyed{OpenAI: c, key: key, redactor: redact.New([]redact.Secret{{Name: "api_key", Value: key.Reveal()}})}
}

// keyed is an OpenAI embedder calling with a tenant's own key.
type keyed struct {
	*OpenAI
	key      secret.Value // revealed only for the Authorization header
	redactor *redact.Redactor
}

func (k *keyed) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	return k.OpenAI.embed(ctx, texts, k.key.Reveal(), k.redactor)
}

// Dim implements Embedder: the configured dimension, or the length of the
// first answer; 0 before that.
func (c *OpenAI) Dim() int { return int(c.dim.Load()) }

// Model implements Embedder: "openai:<base URL>/<model>".
func (c *OpenAI) Model() string { return c.id }

// String names the endpoint and model; it never includes the API key.
func (c *OpenAI) String() string { return c.id }

// StatusError reports a non-2xx response from the upstream.
type StatusError struct {
	StatusCode int
	// Message is the upstream's error message, or else the start of its body,
	// at most 512 bytes, with the API key removed.
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("upstream returned %d: %s", e.StatusCode, e.Message)
}

type embeddingRequest struct {
	Model string   `json:"model"`
	Input []string `json:"input"`
}

type embeddingResponse struct {
	Data []struct {
		Index     *int            `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Error json.RawMessage `json:"error"`
}

// Embed implements Embedder. Texts go upstream in batches of BatchSize, one
// batch at a time; the answers are put back in input order by their "index"
// and L2-normalized. An empty text is not sent (OpenAI refuses it) and gets
// the zero vector. Failures with status 429, 500, 502, 503 or 504, and
// transport failures, are retried with exponential backoff and jitter (or
// after Retry-After, capped at 10s). A non-2xx response is a *StatusError. A
// cancelled ctx returns ctx.Err().
func (c *OpenAI) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if c.keySecret != "" {
		// Never fall back to no key or a shared one: that would bill (and
		// expose) the wrong account.
		return nil, fmt.Errorf("embed: %s needs the tenant's own API key (tenant secret %q)", c.id, c.keySecret)
	}
	return c.embed(ctx, texts, c.apiKey, c.redactor)
}

// embed is Embed with the API key to send and the redactor that removes it
// from upstream messages.
func (c *OpenAI) embed(ctx context.Context, texts []string, apiKey string, red *redact.Redactor) ([][]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]float32, len(texts))
	idx := make([]int, 0, len(texts)) // positions of the texts sent
	for i, t := range texts {
		if t != "" {
			idx = append(idx, i)
		}
	}
	inputs := make([]string, 0, min(len(idx), c.batch))
	for start := 0; start < len(idx); start += c.batch {
		part := idx[start:min(start+c.batch, len(idx))]
		inputs = inputs[:0]
		for _, i := range part {
			inputs = append(inputs, texts[i])
		}
		vecs, err := c.embedBatch(ctx, inputs, apiKey, red)
		if err != nil {
			return nil, err
		}
		for j, i := range part {
			out[i] = vecs[j]
		}
	}
	if len(idx) < len(texts) {
		d := c.Dim()
		if d == 0 {
			return nil, errors.New("embed: cannot embed an empty text before the dimension is known")
		}
		for i := range out {
			if out[i] == nil {
				out[i] = make([]float32, d)
			}
		}
	}
	return out, nil
}

// embedBatch sends one request, retrying as Embed describes.
func (c *OpenAI) embedBatch(ctx context.Context, inputs []string, apiKey string, red *redact.Redactor) ([][]float32, error) {
	body, err := json.Marshal(embeddingRequest{Model: c.model, Input: inputs})
	if err != nil {
		return nil, fmt.Errorf("embed: encode request: %w", err)
	}
	return upstream.Retry(ctx, c.maxRetries, c.base, func() ([][]float32, *upstream.Hint, error) {
		return c.attempt(ctx, body, len(inputs), apiKey, red)
	})
}

var errAttemptTimeout = errors.New("attempt timeout")

// attempt makes one HTTP request. A non-nil hint means the failure may be retried.
func (c *OpenAI) attempt(ctx context.Context, body []byte, n int, apiKey string, red *redact.Redactor) ([][]float32, *upstream.Hint, error) {
	actx, cancel := context.WithTimeoutCause(ctx, c.timeout, errAttemptTimeout)
	defer cancel()

	hreq, err := http.NewRequestWithContext(actx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("embed: build request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("User-Agent", "bulkhead")
	if apiKey != "" {
		hreq.Header.Set("Authorization", "Bearer "+apiKey)
	}

	hresp, err := c.client.Do(hreq)
	if err != nil {
		return nil, &upstream.Hint{}, c.readError(actx, "send request", err)
	}
	defer hresp.Body.Close()

	if hresp.StatusCode < 200 || hresp.StatusCode > 299 {
		serr := &StatusError{StatusCode: hresp.StatusCode, Message: upstream.StatusMessage(hresp, maxErrorMessage, red)}
		return nil, upstream.StatusHint(hresp), fmt.Errorf("embed: %w", serr)
	}
	data, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, &upstream.Hint{}, c.readError(actx, "read response", err)
	}
	if len(data) > maxResponseBytes {
		return nil, nil, errors.New("embed: upstream response exceeds 64 MiB")
	}
	vecs, err := c.decode(data, n, red)
	return vecs, nil, err
}

// decode checks an answer for n inputs and returns its vectors in input
// order, normalized.
func (c *OpenAI) decode(data []byte, n int, red *redact.Redactor) ([][]float32, error) {
	var er embeddingResponse
	if err := json.Unmarshal(data, &er); err != nil {
		return nil, errors.New("embed: malformed upstream response")
	}
	if m := upstream.ErrorMessage(er.Error); m != "" {
		return nil, fmt.Errorf("embed: upstream error: %s", upstream.Clean(m, maxErrorMessage, red))
	}
	if len(er.Data) != n {
		return nil, fmt.Errorf("embed: upstream returned %d embeddings for %d inputs", len(er.Data), n)
	}
	out := make([][]float32, n)
	for pos, d := range er.Data {
		i := pos // servers that omit "index" answer in order
		if d.Index != nil {
			i = *d.Index
		}
		if i < 0 || i >= n {
			return nil, fmt.Errorf("embed: upstream returned index %d for %d inputs", i, n)
		}
		if out[i] != nil {
			return nil, fmt.Errorf("embed: upstream returned index %d twice", i)
		}
		v, err := decodeVector(d.Embedding)
		if err != nil {
			return nil, err
		}
		if err := c.checkDim(len(v)); err != nil {
			return nil, err
		}
		normalize(v)
		out[i] = v
	}
	return out, nil
}

// checkDim learns the dimension from the first answer and holds every later
// answer to it.
func (c *OpenAI) checkDim(got int) error {
	if got == 0 || got > maxDim {
		return fmt.Errorf("embed: upstream returned a vector of %d dimensions", got)
	}
	c.dim.CompareAndSwap(0, int64(got))
	if want := c.dim.Load(); int64(got) != want {
		return fmt.Errorf("embed: upstream returned %d dimensions, want %d", got, want)
	}
	return nil
}

// decodeVector reads an embedding as a JSON array of numbers, or as the
// base64 little-endian float32 form some servers send.
func decodeVector(raw json.RawMessage) ([]float32, error) {
	var v []float32
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, errors.New("embed: malformed embedding")
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b)%4 != 0 {
			return nil, errors.New("embed: malformed base64 embedding")
		}
		v = make([]float32, len(b)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	} else if err := json.Unmarshal(raw, &v); err != nil {
		return nil, errors.New("embed: malformed embedding")
	}
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, errors.New("embed: upstream returned a non-finite value")
		}
	}
	return v, nil
}

// readError turns an I/O failure into the error to return, telling apart the
// attempt timeout from other failures. Parent cancellation is handled by the
// caller.
func (c *OpenAI) readError(actx context.Context, op string, err error) error {
	if context.Cause(actx) == errAttemptTimeout {
		return fmt.Errorf("embed: upstream timed out after %s: %w", c.timeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("embed: %s: %w", op, err)
}
