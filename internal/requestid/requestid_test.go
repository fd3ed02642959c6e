package requestid

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"req_0123abcd", true},
		{"A.b-c_9", true},
		{strings.Repeat("x", MaxLen), true},
		{"", false},
		{strings.Repeat("x", MaxLen+1), false},
		{"a b", false},
		{"a\nlevel=ERROR", false},
		{`a"b`, false},
		{"é", false},
		{"a/b", false},
	}
	for _, tt := range tests {
		if got := Valid(tt.id); got != tt.want {
			t.Errorf("Valid(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
	if id := New(); !Valid(id) || id == New() {
		t.Errorf("New() = %q: want a valid id, different each time", id)
	}
	if got := Pick("mine-1"); got != "mine-1" {
		t.Errorf("Pick(valid) = %q, want it back", got)
	}
	if got := Pick("bad id"); got == "bad id" || !Valid(got) {
		t.Errorf("Pick(invalid) = %q, want a fresh valid id", got)
	}
}

func TestHandlerAddsID(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Handler(slog.NewTextHandler(&buf, nil))).With("tenant", "acme")
	log.InfoContext(NewContext(context.Background(), "req_1"), "with id")
	log.InfoContext(context.Background(), "without id")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "request_id=req_1") || strings.Contains(lines[1], "request_id") {
		t.Errorf("log lines %q: want request_id=req_1 on the first only", lines)
	}
	if h := Handler(Handler(slog.DiscardHandler)); h.(handler).Handler != slog.DiscardHandler {
		t.Error("Handler wraps twice")
	}
}

func TestAnnotate(t *testing.T) {
	if got := Annotate(context.Background(), nil); got != nil {
		t.Errorf("no id: got %v, want nil", got)
	}
	got := Annotate(NewContext(context.Background(), "req_2"), map[string]any{"k": 1})
	if got["request_id"] != "req_2" || got["k"] != 1 {
		t.Errorf("got %v", got)
	}
}
