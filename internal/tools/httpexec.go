package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bulkhead-ai/bulkhead/internal/redact"
	"github.com/bulkhead-ai/bulkhead/internal/secret"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Defaults for executor options left zero.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultMaxOutput = 64 << 10
)

// TruncatedMark ends, for the model, output cut at the size limit.
const TruncatedMark = "\n[truncated]"

// HTTPOptions configure an HTTPExecutor. The zero value is ready to use.
type HTTPOptions struct {
	// Client sends the requests; nil means a client with its own transport
	// and timeouts. Its CheckRedirect is replaced: redirects are never
	// followed.
	Client *http.Client
	// Timeout bounds each call, reading the response included; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// MaxOutput bounds the response body returned, in bytes; 0 means
	// DefaultMaxOutput.
	MaxOutput int
}

// HTTPExecutor runs tools declared with an HTTPSpec. It is safe for
// concurrent use.
type HTTPExecutor struct {
	client    *http.Client
	timeout   time.Duration
	maxOutput int
}

// NewHTTP returns an HTTPExecutor.
func NewHTTP(opts HTTPOptions) *HTTPExecutor {
	e := &HTTPExecutor{timeout: opts.Timeout, maxOutput: opts.MaxOutput}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	if e.maxOutput <= 0 {
		e.maxOutput = DefaultMaxOutput
	}
	var c http.Client
	if opts.Client != nil {
		c = *opts.Client
	} else {
		c.Transport = newTransport(e.timeout)
	}
	// The request goes to the spec's host and nowhere else: a redirect
	// would carry the tenant's headers to wherever the upstream points.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	e.client = &c
	return e
}

// newTransport returns a transport of its own, with bounded dial, TLS and
// header waits.
func newTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		ForceAttemptHTTP2:     true,
	}
}

// Execute calls the tool's endpoint with the call's arguments and the
// tenant's credentials. An HTTP error status, or a redirect, is a Result
// with IsError set; a transport failure or timeout is an error. Errors never
// hold the call's secret values.
func (e *HTTPExecutor) Execute(ctx context.Context, call Call) (Result, error) {
	res, err := e.execute(ctx, call)
	if err != nil {
		return Result{}, redactError(err, call.Secrets)
	}
	return res, nil
}

func (e *HTTPExecutor) execute(ctx context.Context, call Call) (Result, error) {
	if call.Tool == nil || call.Tool.HTTP == nil {
		return Result{}, errors.New("http executor: tool has no http spec")
	}
	spec := call.Tool.HTTP
	v := values{secrets: call.Secrets, bound: call.Bound}

	u, err := v.expandURL(spec.URL)
	if err != nil {
		return Result{}, fmt.Errorf("tool %q: %w", call.Tool.Name, err)
	}
	method := strings.ToUpper(spec.Method)
	q := u.Query()
	query := method == http.MethodGet || method == http.MethodDelete
	for name := range call.Args {
		// The model may not replace or add to a parameter the operator
		// fixed in the URL, such as a credential, by any spelling a server
		// would match, and whatever the method: frameworks merge query and
		// body parameters. Decode refuses such keys already; this holds
		// for arguments that did not come through it. A bound parameter
		// is the runtime's own value.
		_, bound := call.Tool.Bound[name]
		if (query && q.Has(name)) || (!bound && call.Tool.reserved.check(name, "") != nil) ||
			call.Tool.checkQueryName(name, "", call.Tool.Declares(name)) != nil {
			return Result{}, fmt.Errorf("tool %q: argument %s collides with a query parameter of the url", call.Tool.Name, call.Tool.keyLabel(name))
		}
	}
	var body io.Reader
	switch method {
	case http.MethodGet, http.MethodDelete:
		for name, arg := range call.Args {
			s, err := queryValue(arg)
			if err != nil {
				return Result{}, fmt.Errorf("tool %q: argument %s: %w", call.Tool.Name, call.Tool.keyLabel(name), err)
			}
			q.Set(name, s)
		}
		u.RawQuery = q.Encode()
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		// The canonical bytes policy and the guard passed, as they are: a
		// re-marshal here could differ from what was checked.
		b := call.Body
		if b == nil {
			var err error
			if b, err = Encode(call.Args); err != nil {
				return Result{}, fmt.Errorf("tool %q: encode arguments: %w", call.Tool.Name, err)
			}
		}
		body = bytes.NewReader(b)
	default:
		return Result{}, fmt.Errorf("tool %q: method %q not allowed", call.Tool.Name, spec.Method)
	}

	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return Result{}, fmt.Errorf("tool %q: build request: %w", call.Tool.Name, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for name, tmpl := range spec.Headers {
		val, err := v.expandHeader(tmpl)
		if err != nil {
			return Result{}, fmt.Errorf("tool %q: header %q: %w", call.Tool.Name, name, err)
		}
		req.Header.Set(name, val)
	}

	resp, err := e.client.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("tool %q: %w", call.Tool.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return Result{IsError: true, Content: fmt.Sprintf("HTTP %d: redirects are not followed", resp.StatusCode)}, nil
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, int64(e.maxOutput)+1))
	if err != nil {
		return Result{}, fmt.Errorf("tool %q: read response: %w", call.Tool.Name, err)
	}
	content, cut := capOutput(string(raw), e.maxOutput)
	if resp.StatusCode >= 400 {
		return Result{IsError: true, Content: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, content), Truncated: cut}, nil
	}
	return Result{Content: content, Truncated: cut}, nil
}

// queryValue renders an argument as a query parameter: scalars as text,
// anything else as JSON.
func queryValue(arg any) (string, error) {
	switch a := arg.(type) {
	case string:
		return a, nil
	case bool:
		return strconv.FormatBool(a), nil
	case json.Number:
		return a.String(), nil
	}
	b, err := Encode(arg)
	return string(b), err
}

// capOutput returns s cut to at most max bytes (on a character boundary),
// with invalid UTF-8 replaced, and whether it was cut.
func capOutput(s string, max int) (string, bool) {
	if len(s) <= max {
		return strings.ToValidUTF8(s, "\uFFFD"), false
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(s[:cut], "\uFFFD"), true
}

// redactedError is an error whose message has had secret values removed. It
// unwraps only to a context error, so callers can still tell a timeout or a
// cancellation, and to ErrPlaceholderValue, so they can tell a refused
// value; never to the original error, which may hold a secret (net/http
// errors hold the URL).
type redactedError struct {
	msg         string
	ctx         error
	placeholder bool
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() []error {
	var errs []error
	if e.ctx != nil {
		errs = append(errs, e.ctx)
	}
	if e.placeholder {
		errs = append(errs, ErrPlaceholderValue)
	}
	return errs
}

// redactError returns err with the values of secrets removed from its
// message.
func redactError(err error, secrets map[tenant.SecretName]secret.Value) error {
	list := make([]redact.Secret, 0, len(secrets))
	for name, val := range secrets {
		list = append(list, redact.Secret{Name: string(name), Value: val.Reveal()})
	}
	msg := redact.New(list).String(err.Error())
	// Values too short for the redactor are cut out bluntly.
	for _, s := range list {
		if s.Value != "" && len(s.Value) < redact.MinLen {
			msg = strings.ReplaceAll(msg, s.Value, "[REDACTED:"+s.Name+"]")
		}
	}
	re := &redactedError{msg: msg, placeholder: errors.Is(err, ErrPlaceholderValue)}
	var netErr net.Error
	switch {
	case errors.Is(err, context.Canceled):
		re.ctx = context.Canceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		re.ctx = context.DeadlineExceeded
	}
	return re
}
