package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tools"
)

func httpTool(name string, owner string) tools.Definition {
	return tools.Definition{Name: name, Description: "d", Scope: tools.ScopeTenant, Owner: tenantID(owner),
		Parameters: json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"}}}`),
		HTTP:       &tools.HTTPSpec{Method: "POST", URL: "http://127.0.0.1:9/x"}}
}

func TestToolCatalog(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "control.db")
	p := open(t, path)
	for _, id := range []string{"acme", "globex"} {
		if _, err := p.CreateTenant(ctx, newTenant(tenantID(id), "")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.CreateTool(ctx, httpTool("crm_lookup", "")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateTool(ctx, httpTool("globex_export", "globex")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		def  tools.Definition
		want error
	}{
		{"same name as the operator's tool", httpTool("crm_lookup", "acme"), kind.Conflict},
		{"same name as globex's tool", httpTool("globex_export", "acme"), kind.Conflict},
		{"unknown owner", httpTool("x", "initech"), kind.Invalid},
		{"invalid definition", tools.Definition{Name: "bad name"}, kind.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := p.CreateTool(ctx, tt.def); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}

	p.Close()
	p = open(t, path)
	if got := len(p.Tools()); got != 2 {
		t.Fatalf("after reopen: %d tools, want 2", got)
	}
	if tool, ok := p.Tool("globex_export"); !ok || tool.Owner != "globex" {
		t.Fatalf("Tool(globex_export) = %+v, %v", tool, ok)
	}
	// A tenant's own tools go with it.
	if _, err := p.DeleteTenant(ctx, "globex"); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Tool("globex_export"); ok {
		t.Fatal("deleted tenant's tool still in the catalog")
	}
	p.Close()
	p = open(t, path)
	if _, ok := p.Tool("globex_export"); ok {
		t.Fatal("deleted tenant's tool back after reopen")
	}
	if err := p.DeleteTool(ctx, "crm_lookup"); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteTool(ctx, "crm_lookup"); !errors.Is(err, kind.NotFound) {
		t.Fatalf("second delete: err = %v, want NotFound", err)
	}
}
