package agent

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/llm"
)

func TestOfferedOptions(t *testing.T) {
	crm := []llm.Tool{{Type: "function", Function: llm.FunctionDef{Name: "crm_lookup"}}}
	yes := true
	tests := []struct {
		name       string
		choice     string // raw tool_choice; empty: unset
		offered    []llm.Tool
		wantChoice string // sent; empty: not sent
		wantPTC    bool   // parallel_tool_calls sent
		wantErr    bool
	}{
		{name: "unset, tools", offered: crm, wantPTC: true},
		{name: "unset, no tools", offered: nil},
		{name: "auto, tools", choice: `"auto"`, offered: crm, wantChoice: `"auto"`, wantPTC: true},
		{name: "none, no tools", choice: `"none"`},
		{name: "auto, no tools", choice: `"auto"`},
		{name: "required, tools", choice: `"required"`, offered: crm, wantChoice: `"required"`, wantPTC: true},
		{name: "required, no tools", choice: `"required"`, wantErr: true},
		{name: "server tool named", choice: `{"type":"function","function":{"name":"crm_lookup"}}`, offered: crm,
			wantChoice: `{"type":"function","function":{"name":"crm_lookup"}}`, wantPTC: true},
		{name: "client tool named", choice: `{"type":"function","function":{"name":"my_tool"}}`, offered: crm, wantErr: true},
		{name: "tool named, no tools", choice: `{"type":"function","function":{"name":"crm_lookup"}}`, wantErr: true},
		{name: "unknown mode", choice: `"sometimes"`, offered: crm, wantErr: true},
		{name: "malformed object", choice: `{"type":"function"}`, offered: crm, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := llm.Options{ParallelToolCalls: &yes}
			if tt.choice != "" {
				in.ToolChoice = json.RawMessage(tt.choice)
			}
			got, err := offeredOptions(in, tt.offered)
			if tt.wantErr {
				if !errors.Is(err, kind.Invalid) {
					t.Fatalf("err %v, want kind.Invalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got.ToolChoice) != tt.wantChoice || (got.ParallelToolCalls != nil) != tt.wantPTC {
				t.Errorf("tool_choice %s, parallel_tool_calls %v; want %s, sent %v", got.ToolChoice, got.ParallelToolCalls, tt.wantChoice, tt.wantPTC)
			}
		})
	}
}
