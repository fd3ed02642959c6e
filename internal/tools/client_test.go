package tools

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
)

func TestCompileClient(t *testing.T) {
	runtime := []string{"tenant_id", "account"}
	tests := []struct {
		name, tool, params string
		want               string // "" means valid
	}{
		{"valid", "send_email", `{"type":"object","properties":{"to":{"type":"string"}},"required":["to"]}`, ""},
		{"no parameters", "ping", ``, ""},
		{"bad name", "send email", `{"type":"object"}`, "name"},
		{"not an object", "f", `{"type":"string"}`, "object"},
		{"malformed", "f", `{"type":`, "parameters"},
		{"bound parameter", "f", `{"type":"object","properties":{"tenant_id":{"type":"string"}}}`, "runtime fills"},
		{"bound parameter, other case", "f", `{"type":"object","properties":{"TENANT_ID":{"type":"string"}}}`, "runtime fills"},
		{"bound parameter, camelCase", "f", `{"type":"object","properties":{"tenantId":{"type":"string"}}}`, "runtime fills"},
		{"bound parameter, dotless i", "f", `{"type":"object","properties":{"tenant_ıd":{"type":"string"}}}`, "runtime fills"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CompileClient("acme", tt.tool, "", json.RawMessage(tt.params), runtime)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CompileClient: %v", err)
				}
				return
			}
			if !errors.Is(err, kind.Invalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CompileClient err = %v, want Invalid mentioning %q", err, tt.want)
			}
		})
	}
}

// TestClientToolArguments checks a client tool's calls take the same path
// as a server-side tool's: strict decoding, the schema, and no runtime
// parameter even where undeclared keys are allowed.
func TestClientToolArguments(t *testing.T) {
	open, err := CompileClient("acme", "note", "", json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}},"required":["text"],"additionalProperties":true}`), []string{"tenant_id"})
	if err != nil {
		t.Fatal(err)
	}
	if open.Scope != ScopeClient || open.Owner != "acme" || open.Name != "client/note" {
		t.Fatalf("got name %q scope %q owner %q, want client/note, client and acme", open.Name, open.Scope, open.Owner)
	}
	tests := []struct {
		name, args, reason string // reason "" means accepted
	}{
		{"valid", `{"text":"hi"}`, ""},
		{"undeclared allowed", `{"text":"hi","mood":"ok"}`, ""},
		{"bound key", `{"text":"hi","tenant_id":"globex"}`, ReasonBound},
		{"bound look-alike", `{"text":"hi","TENANT_ID":"globex"}`, ReasonLookAlike},
		{"duplicate", `{"text":"a","text":"b"}`, ReasonDuplicate},
		{"schema", `{"text":1}`, ReasonSchema},
		{"missing required", `{}`, ReasonSchema},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, err := open.Decode(tt.args)
			if err == nil {
				_, err = open.Complete(model, nil)
			}
			var ae *ArgumentError
			switch {
			case tt.reason == "" && err != nil:
				t.Fatalf("got %v, want accepted", err)
			case tt.reason != "" && (!errors.As(err, &ae) || ae.Reason != tt.reason):
				t.Fatalf("got %v, want reason %q", err, tt.reason)
			}
		})
	}
}
