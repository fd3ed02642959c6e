package testenv

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// recorder captures how Require stops a test without stopping the real one.
// Fatalf and Skipf end the calling goroutine, so Require runs in its own.
type recorder struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = true
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = true
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func call(t *testing.T, ok bool) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Require(r, "widget", ok, "install the widget")
	}()
	<-done
	return r
}

func TestRequire(t *testing.T) {
	tests := []struct {
		name        string
		requireAll  string
		ok          bool
		wantFailed  bool
		wantSkipped bool
		wantMsg     []string
	}{
		{name: "available", ok: true},
		{name: "available, require all", requireAll: "1", ok: true},
		{name: "missing skips", ok: false, wantSkipped: true,
			wantMsg: []string{"SKIPPED", "widget not available", "install the widget", "BULKHEAD_REQUIRE_ALL=1"}},
		{name: "missing, other value skips", requireAll: "true", ok: false, wantSkipped: true,
			wantMsg: []string{"SKIPPED"}},
		{name: "missing, require all fails", requireAll: "1", ok: false, wantFailed: true,
			wantMsg: []string{"widget is required (BULKHEAD_REQUIRE_ALL=1): install the widget"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(RequireAllEnv, tt.requireAll)
			r := call(t, tt.ok)
			if r.failed != tt.wantFailed || r.skipped != tt.wantSkipped {
				t.Fatalf("failed, skipped = %v, %v; want %v, %v (message %q)", r.failed, r.skipped, tt.wantFailed, tt.wantSkipped, r.msg)
			}
			for _, want := range tt.wantMsg {
				if !strings.Contains(r.msg, want) {
					t.Errorf("message = %q, want it to contain %q", r.msg, want)
				}
			}
		})
	}
}
