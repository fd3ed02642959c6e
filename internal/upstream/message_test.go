package upstream

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/redact"
)

func TestMessage(t *testing.T) {
	tests := []struct {
		body string
		want string
	}{
		{`{"error":{"message":"bad model name","type":"invalid_request_error"}}`, "bad model name"},
		{`{"error":"no key"}`, "no key"},
		{`{"object":"error","message":"too long"}`, "too long"},
		{`{"error":{"message":"inner"},"message":"outer"}`, "inner"},
		{`{"error":{"message":""},"message":"outer"}`, "outer"},
		{`{"error":null,"message":"outer"}`, "outer"},
		{`{"error":{"code":400}}`, ""},
		{`{"error":42}`, ""},
		{`{}`, ""},
		{`[1,2]`, ""},
		{`busy`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		if got := message([]byte(tt.body)); got != tt.want {
			t.Errorf("message(%s) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		raw  string
		want string
	}{
		{``, ""},
		{`null`, ""},
		{`{"message":"slow down","type":"rate_limit"}`, "slow down"},
		{`{"message":""}`, ""},
		{`{"code":500}`, ""},
		{`"server overloaded"`, "server overloaded"},
		{`""`, ""},
		{`42`, ""},
		{`["x"]`, ""},
	}
	for _, tt := range tests {
		if got := ErrorMessage(json.RawMessage(tt.raw)); got != tt.want {
			t.Errorf("ErrorMessage(%s) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

func TestClean(t *testing.T) {
	red := redact.New([]redact.Secret{{Name: "api_key", Value: testKey}})
	b64 := base64.StdEncoding.EncodeToString([]byte(testKey))
	long := strings.Repeat("é", 400) // 800 bytes
	tests := []struct {
		name  string
		in    string
		limit int
		red   *redact.Redactor
		want  string
	}{
		{name: "plain", in: "input too long", limit: 512, want: "input too long"},
		{name: "trimmed", in: "  \n busy \t\n", limit: 512, want: "busy"},
		{name: "control characters", in: "a\x1b[31mb\nc\x00d", limit: 512, want: "a [31mb c d"},
		{name: "invalid UTF-8", in: "a\xffb", limit: 512, want: "a\uFFFDb"},
		{name: "key", in: "bad key " + testKey, limit: 512, red: red, want: "bad key [REDACTED:api_key]"},
		{name: "key in base64", in: "b64=" + b64, limit: 512, red: red, want: "b64=[REDACTED:api_key]"},
		{name: "nil redactor", in: "key " + testKey, limit: 512, want: "key " + testKey},
		{name: "truncated on a rune boundary", in: long, limit: 511, want: strings.Repeat("é", 255)},
		{name: "truncated exactly", in: long, limit: 512, want: strings.Repeat("é", 256)},
		{name: "zero limit", in: "abc", limit: 0, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Clean(tt.in, tt.limit, tt.red); got != tt.want {
				t.Errorf("Clean(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
			}
		})
	}
}

func TestStatusMessage(t *testing.T) {
	red := redact.New([]redact.Secret{{Name: "api_key", Value: testKey}})
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{name: "error object", status: 400, body: `{"error":{"message":"input too long"}}`, want: "input too long"},
		{name: "error string", status: 401, body: `{"error":"no key"}`, want: "no key"},
		{name: "top-level message", status: 422, body: `{"object":"error","message":"too long"}`, want: "too long"},
		{name: "plain body", status: 503, body: "  busy\n", want: "busy"},
		{name: "JSON without a message", status: 500, body: `{"detail":"x"}`, want: `{"detail":"x"}`},
		{name: "empty body", status: 307, body: "", want: "Temporary Redirect"},
		{name: "blank message", status: 502, body: `{"error":{"message":" \n "}}`, want: "Bad Gateway"},
		{name: "unknown status, empty body", status: 599, body: "", want: ""},
		{name: "key", status: 401, body: "Incorrect API key provided: " + testKey, want: "Incorrect API key provided: [REDACTED:api_key]"},
		{name: "long", status: 400, body: strings.Repeat("é", 400) + "\n\x1b[31m", want: strings.Repeat("é", 256)},
		{name: "past the read limit", status: 400, body: strings.Repeat(" ", 64<<10) + "hidden", want: "Bad Request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Body: io.NopCloser(strings.NewReader(tt.body))}
			if got := StatusMessage(resp, 512, red); got != tt.want {
				t.Errorf("StatusMessage(%d, %q) = %q, want %q", tt.status, tt.body, got, tt.want)
			}
		})
	}
}
