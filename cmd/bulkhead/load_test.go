package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestLoadCheck makes sure the load's checker sees each kind of mismatch.
func TestLoadCheck(t *testing.T) {
	own := &loadTenant{id: "lt-abc-001"}
	reply := func(said, earlier string) string {
		return `Scripted reply. System: "You are the agent of lt-abc-001.". You said: "question ` + said + `". Earlier you said: ` + earlier + `.`
	}
	for _, tc := range []struct {
		name       string
		req        loadRequest
		answer     string
		before     []string
		done       map[string]bool
		partial    bool
		mismatched bool
	}{
		{"own answer", loadRequest{n: 7, tenant: own}, reply("mk7x", "nothing"), nil, nil, false, false},
		{"another request's answer", loadRequest{n: 7, tenant: own}, reply("mk8x", "nothing"), nil, nil, false, true},
		{"another tenant's prompt", loadRequest{n: 7, tenant: own}, strings.Replace(reply("mk7x", "nothing"), "lt-abc-001", "lt-abc-002", 1), nil, nil, false, true},
		{"history in order", loadRequest{n: 7, tenant: own, session: true}, reply("mk7x", `"question mk1x | question mk3x"`), []string{"mk1x", "mk3x"}, map[string]bool{"mk1x": true, "mk3x": true}, false, false},
		{"history out of order", loadRequest{n: 7, tenant: own, session: true}, reply("mk7x", `"question mk3x | question mk1x"`), []string{"mk1x", "mk3x"}, map[string]bool{"mk1x": true, "mk3x": true}, false, true},
		{"history lacks a completed turn", loadRequest{n: 7, tenant: own, session: true}, reply("mk7x", `"question mk1x"`), []string{"mk1x", "mk3x"}, map[string]bool{"mk1x": true, "mk3x": true}, false, true},
		{"history window cut", loadRequest{n: 7, tenant: own, session: true}, reply("mk7x", `"question mk3x"`), []string{"mk1x", "mk3x"}, map[string]bool{"mk1x": true, "mk3x": true}, false, false},
		{"cancelled turn anywhere", loadRequest{n: 7, tenant: own, session: true}, reply("mk7x", `"question mk3x | question mk1x"`), []string{"mk1x", "mk3x"}, map[string]bool{"mk3x": true}, false, false},
		{"another session's turn", loadRequest{n: 7, tenant: own, session: true}, reply("mk7x", `"question mk1x | question mk2x"`), []string{"mk1x"}, map[string]bool{"mk1x": true}, false, true},
		{"history without a session", loadRequest{n: 7, tenant: own}, reply("mk7x", `"question mk1x"`), nil, nil, false, true},
		{"partial answer of its own", loadRequest{n: 7, tenant: own, cancel: true}, "Scripted reply. ", nil, nil, true, false},
		{"partial answer of another", loadRequest{n: 7, tenant: own, cancel: true}, "You said: \"question mk9x", nil, nil, true, true},
		{"tool result of its own", loadRequest{n: 7, tenant: own, tool: true}, "Tool results:\ncall_1: the load fact of lt-abc-001", nil, nil, false, false},
		{"tool result of another tenant", loadRequest{n: 7, tenant: own, tool: true}, "Tool results:\ncall_1: the load fact of lt-abc-002", nil, nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &loadResult{errors: map[string]int{}}
			(&loader{}).check(tc.req, "mk7x", tc.answer, tc.before, tc.done, tc.partial, res)
			if got := res.mismatches.Load() > 0; got != tc.mismatched {
				t.Errorf("mismatched = %v, want %v (%v)", got, tc.mismatched, res.examples)
			}
		})
	}
}

// TestLoad runs a short mixed load against an in-process server: every
// kind of request completes or is cancelled, and none mismatches.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server")
	}
	o := loadOptions{rate: 100, duration: 2 * time.Second, tenants: 5, maxInFlight: 512,
		sessions: 0.4, stream: 0.5, cancel: 0.2, tools: 0.1, seed: 3, dataDir: t.TempDir()}
	res, err := runLoad(t.Context(), o, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	res.print(&out)
	t.Log(out.String())
	if res.mismatches.Load() != 0 || res.errCount.Load() != 0 || res.completed.Load() == 0 || res.cancelled.Load() == 0 {
		t.Fatalf("load: %s", out.String())
	}
}
