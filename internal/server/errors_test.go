package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

func TestErrorStatus(t *testing.T) {
	wrap := func(k error, msg string) error { return fmt.Errorf("%w: %s", k, msg) }
	tests := []struct {
		name        string
		err         error
		wantStatus  int
		wantType    string
		wantCode    string
		wantMessage string // "": not checked
	}{
		{"invalid", wrap(kind.Invalid, "bad field"), 400, "invalid_request_error", "invalid_request", "invalid request: bad field"},
		{"not found", wrap(kind.NotFound, "no such model"), 404, "invalid_request_error", "not_found", "not found: no such model"},
		{"conflict", wrap(kind.Conflict, "tenant acme"), 409, "invalid_request_error", "conflict", "already exists: tenant acme"},
		{"unauthenticated", wrap(kind.Unauthenticated, "invalid api key"), 401, "authentication_error", "invalid_api_key", "unauthenticated: invalid api key"},
		{"denied", wrap(kind.Denied, "tenant is suspended"), 403, "permission_error", "permission_denied", "permission denied: tenant is suspended"},
		{"limited", wrap(kind.Limited, "slow down"), 429, "rate_limit_error", "rate_limit_exceeded", "rate limited: slow down"},
		{"too large", wrap(kind.TooLarge, "big"), 413, "invalid_request_error", "request_too_large", "request body too large"},
		{"max bytes", fmt.Errorf("decode: %w", &http.MaxBytesError{Limit: 10}), 413, "invalid_request_error", "request_too_large", "request body too large"},
		{"unavailable", wrap(kind.Unavailable, "model provider returned 503"), 502, "api_error", "upstream_error", ""},
		{"deadline", fmt.Errorf("run: %w", context.DeadlineExceeded), 504, "api_error", "timeout", "request timed out"},
		{"internal", errors.New("open /data/tenants/0123abcd/tenant.db: disk I/O error"), 500, "api_error", "internal_error", "internal error"},
		{"lost tenant store", fmt.Errorf("append messages: %w: /data/tenants/0123abcd/tenant.db: no such file", store.ErrLost), 503, "api_error", "storage_unavailable", "the tenant's data is unavailable; the operator has been alerted"},
		{"unknown tenant store", fmt.Errorf("locate: %w", store.ErrUnknownTenant), 500, "api_error", "internal_error", "internal error"},
		{"no scope", fmt.Errorf("run agent: %w", store.ErrNoScope), 500, "api_error", "internal_error", "internal error"},
		// The first kind in errorStatus's order wins for an error of two kinds.
		{"two kinds", fmt.Errorf("%w: %w", kind.NotFound, kind.Invalid), 400, "invalid_request_error", "invalid_request", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, typ, code, message := errorStatus(tt.err)
			if status != tt.wantStatus || typ != tt.wantType || code != tt.wantCode {
				t.Errorf("got %d %s %s, want %d %s %s", status, typ, code, tt.wantStatus, tt.wantType, tt.wantCode)
			}
			if tt.wantMessage != "" && message != tt.wantMessage {
				t.Errorf("got message %q, want %q", message, tt.wantMessage)
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantBody   string
	}{
		{"not found", fmt.Errorf("%w: the model %q does not exist", kind.NotFound, "x"), 404,
			`{"error":{"message":"not found: the model \"x\" does not exist","type":"invalid_request_error","param":null,"code":"not_found"}}`},
		{"internal error hides its text", errors.New("sql: secret table name"), 500,
			`{"error":{"message":"internal error","type":"api_error","param":null,"code":"internal_error"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			writeError(slog.New(slog.DiscardHandler), w, httptest.NewRequest("GET", "/v1/models", nil), tt.err)
			if w.Code != tt.wantStatus {
				t.Errorf("got status %d, want %d", w.Code, tt.wantStatus)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("got Content-Type %q, want application/json", ct)
			}
			var got, want any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("decode %s: %v", w.Body, err)
			}
			if err := json.Unmarshal([]byte(tt.wantBody), &want); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got body %s, want %s", w.Body, tt.wantBody)
			}
		})
	}
}

// TestWriteErrorLogsNoClientText checks that what a client sent (in the path
// or echoed by a 4xx message) never reaches the operator's log verbatim.
func TestWriteErrorLogsNoClientText(t *testing.T) {
	const pasted = "sk-live-PASTED0123456789abcdef"
	mux := http.NewServeMux()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	mux.HandleFunc("GET /v1/documents/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeError(logger, w, r, fmt.Errorf("%w: document %q", kind.NotFound, r.PathValue("id")))
	})
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/v1/documents/"+pasted, nil))
	if w.Code != http.StatusNotFound {
		t.Fatalf("got status %d, want 404", w.Code)
	}
	if strings.Contains(logs.String(), pasted) {
		t.Errorf("the log holds what the client sent: %s", logs.String())
	}
	if !strings.Contains(logs.String(), `"route":"GET /v1/documents/{id}"`) || !strings.Contains(logs.String(), `"code":"not_found"`) {
		t.Errorf("the log lacks the route and code: %s", logs.String())
	}
}
