package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/redact"
	"github.com/bulkhead-ai/bulkhead/internal/upstream"
)

// httpModel is what the HTTP model clients (OpenAI, Anthropic) share: where
// they post, with which key, and how long and how often they try.
type httpModel struct {
	baseURL    string // for String; carries no secret
	endpoint   string
	apiKey     string
	timeout    time.Duration // one attempt
	deadline   time.Duration // all attempts of one call
	maxRetries int
	client     *http.Client
	redactor   *redact.Redactor // removes the API key (and encodings of it)
	base       time.Duration    // backoff base; tests shrink it
}

// newHTTPModel fills in the defaults: a timeout of defaultTimeout, a
// deadline of two timeouts, defaultMaxRetries (none if maxRetries is
// negative) and a client that does not follow redirects (a redirect is
// reported as a StatusError rather than replaying the request, and its
// credentials, somewhere else).
func newHTTPModel(baseURL, endpoint, apiKey string, timeout, deadline time.Duration, maxRetries int, client *http.Client) httpModel {
	m := httpModel{baseURL: baseURL, endpoint: endpoint, apiKey: apiKey, timeout: timeout, deadline: deadline,
		maxRetries: maxRetries, client: client, redactor: keyRedactor(apiKey), base: backoffBase}
	if m.timeout == 0 {
		m.timeout = defaultTimeout
	}
	if m.deadline == 0 {
		m.deadline = 2 * m.timeout
	}
	switch {
	case m.maxRetries == 0:
		m.maxRetries = defaultMaxRetries
	case m.maxRetries < 0:
		m.maxRetries = 0
	}
	if m.client == nil {
		m.client = upstream.NewClient(m.timeout)
	}
	return m
}

// withKey returns m with the caller's key (a tenant's own, BYOK) in place of
// the configured one, when there is one: for one call only.
func (m httpModel) withKey(key Credential) (httpModel, bool) {
	if key.IsZero() {
		return m, false
	}
	m.apiKey = key.Reveal()
	m.redactor = keyRedactor(m.apiKey)
	return m, true
}

// retry runs attempt with m's retries (none with noRetry) within m's
// deadline.
func (m *httpModel) retry(ctx context.Context, noRetry bool, attempt func(ctx context.Context) (Response, *upstream.Hint, error)) (Response, error) {
	retries := m.maxRetries
	if noRetry {
		retries = 0
	}
	ctx, cancel := context.WithTimeout(ctx, m.deadline)
	defer cancel()
	return upstream.Retry(ctx, retries, m.base, func() (Response, *upstream.Hint, error) {
		return attempt(ctx)
	})
}

// post sends body to the endpoint within actx, with the headers auth sets,
// and returns the response when it is a 2xx (the caller closes its body).
// Otherwise it returns a StatusError with the hint to retry by: none for a
// 429, whose Retry-After the client honours.
func (m *httpModel) post(actx context.Context, body []byte, stream bool, auth func(http.Header)) (*http.Response, *upstream.Hint, error) {
	hreq, err := http.NewRequestWithContext(actx, http.MethodPost, m.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("llm: build request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	if stream {
		hreq.Header.Set("Accept", "text/event-stream")
	} else {
		hreq.Header.Set("Accept", "application/json")
	}
	hreq.Header.Set("User-Agent", "bulkhead")
	auth(hreq.Header)
	hresp, err := m.client.Do(hreq)
	if err != nil {
		return nil, &upstream.Hint{}, m.readError(actx, "send request", err)
	}
	if hresp.StatusCode >= 200 && hresp.StatusCode <= 299 {
		return hresp, nil, nil
	}
	defer hresp.Body.Close()
	serr := &StatusError{StatusCode: hresp.StatusCode, Message: upstream.StatusMessage(hresp, maxErrorMessage, m.redactor)}
	serr.RetryAfter, serr.HasRetryAfter = upstream.RetryAfter(hresp.Header.Get("Retry-After"))
	if hresp.StatusCode == http.StatusTooManyRequests {
		return nil, nil, serr
	}
	return nil, upstream.StatusHint(hresp), serr
}

// readError turns an I/O failure into the error to return, telling apart the
// attempt timeout from other failures. Parent cancellation is handled by the
// caller's retry.
func (m *httpModel) readError(actx context.Context, op string, err error) error {
	if context.Cause(actx) == errAttemptTimeout {
		return fmt.Errorf("llm: upstream timed out after %s: %w", m.timeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("llm: %s: %w", op, err)
}

// readBody decodes a non-streamed response into v, refusing one over
// maxResponseBytes or malformed.
func (m *httpModel) readBody(actx context.Context, body io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(body, maxResponseBytes+1))
	if err != nil {
		return m.readError(actx, "read response", err)
	}
	if len(data) > maxResponseBytes {
		return errors.New("llm: upstream response exceeds 8 MiB")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return errors.New("llm: malformed upstream response")
	}
	return nil
}

// upstreamError is the error an "error" member of a 2xx response reports,
// its text cleaned and the API key removed; nil when there is none.
func (m *httpModel) upstreamError(raw json.RawMessage) error {
	if msg := upstream.ErrorMessage(raw); msg != "" {
		return fmt.Errorf("llm: upstream error: %s", upstream.Clean(msg, maxErrorMessage, m.redactor))
	}
	return nil
}
