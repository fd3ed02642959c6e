package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/requestid"
)

// TestUpstream429 checks a provider's 429 reaches the client as a 429 with
// the provider's Retry-After, after exactly one upstream call: the client's
// SDK retries it, honouring the wait, and Bulkhead does not retry it too.
func TestUpstream429(t *testing.T) {
	env, up, key := newFakeEnv(t, 2)
	up.reply = func(w http.ResponseWriter, _ *http.Request, _ map[string]any) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"error":{"message":"slow down, org-secret-id","type":"rate_limit_error"}}`))
	}
	for _, stream := range []bool{false, true} {
		before := up.calls()
		r := env.chat(t, chatCall{key: key, content: "hi", stream: stream})
		checkAPIError(t, r, http.StatusTooManyRequests, "rate_limit_exceeded")
		if got := r.header.Get("Retry-After"); got != "7" {
			t.Errorf("stream=%v: Retry-After = %q, want 7", stream, got)
		}
		if n := up.calls() - before; n != 1 {
			t.Errorf("stream=%v: %d upstream calls, want 1", stream, n)
		}
		if string(r.body) == "" || strings.Contains(string(r.body), "org-secret-id") {
			t.Errorf("stream=%v: body %s repeats the provider's message", stream, r.body)
		}
	}
}

// TestUpstream5xxBounded checks a failing provider costs at most 1+retries
// upstream calls per client request, and that the 502 tells OpenAI's SDKs
// not to retry it again (x-should-retry: false).
func TestUpstream5xxBounded(t *testing.T) {
	const retries = 2
	env, up, key := newFakeEnv(t, retries)
	up.reply = func(w http.ResponseWriter, _ *http.Request, _ map[string]any) {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	r := env.chat(t, chatCall{key: key, content: "hi"})
	checkAPIError(t, r, http.StatusBadGateway, "upstream_error")
	if n := up.calls(); n != 1+retries {
		t.Errorf("%d upstream calls, want %d", n, 1+retries)
	}
	if got := r.header.Get("X-Should-Retry"); got != "false" {
		t.Errorf("X-Should-Retry = %q, want false", got)
	}
	if r.header.Get(requestid.Header) == "" {
		t.Error("error response has no X-Request-Id")
	}
}

// TestClientGoneNotAServerError checks a request whose client cancelled is
// classed as the client's doing (499, logged at info), and one cancelled by
// the server (a tenant deleted) by its cause.
func TestClientGoneNotAServerError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if status, _, code, _ := errorStatus(ctx.Err()); status != statusClientClosed || code != "client_closed_request" {
		t.Errorf("cancelled: got %d %s, want 499 client_closed_request", status, code)
	}
	req, _ := http.NewRequestWithContext(ctx, "POST", "/", nil)
	if err := streamCause(req, ctx.Err()); err != context.Canceled {
		t.Errorf("client cancel: cause %v, want context.Canceled", err)
	}
	gone := errors.New("tenant gone")
	cctx, ccancel := context.WithCancelCause(context.Background())
	ccancel(gone)
	req, _ = http.NewRequestWithContext(cctx, "POST", "/", nil)
	if err := streamCause(req, cctx.Err()); err != gone {
		t.Errorf("server cancel: cause %v, want %v", err, gone)
	}
}

// TestUpstream400PassedOn checks a provider refusing what the client asked
// for is a 400 that says why, in the provider's words without the tenant's
// secrets, after one call.
func TestUpstream400PassedOn(t *testing.T) {
	env, up, key := newFakeEnv(t, 2)
	const secret = "sk-tenant-own-0123456789abcdef"
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/crm_token", map[string]string{"value": secret}, http.StatusNoContent)
	up.reply = func(w http.ResponseWriter, _ *http.Request, _ map[string]any) {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":{"message":"Invalid schema for response_format 'city' near ` + secret + `","type":"invalid_request_error"}}`))
	}
	r := env.chat(t, chatCall{key: key, content: "hi", extra: map[string]any{"response_format": map[string]any{"type": "json_object"}}})
	checkAPIError(t, r, http.StatusBadRequest, "invalid_request")
	if body := string(r.body); !strings.Contains(body, "Invalid schema for response_format") || strings.Contains(body, secret) {
		t.Errorf("body %s: want the provider's reason without the tenant's secret", body)
	}
	if n := up.calls(); n != 1 {
		t.Errorf("%d upstream calls, want 1", n)
	}
}
