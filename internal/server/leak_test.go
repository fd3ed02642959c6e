package server

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestLeaksAreToldToTheVictim plays a model that says globex's canary and
// secret, disguised, in acme's answers. Each answer is withheld; globex's own
// audit log records that its data was caught leaving, without naming acme;
// acme's log records the blocks. A low-entropy secret of globex's is not
// tracked (the check would confirm guesses), and acme's own secret, encoded,
// is redacted from acme's answer.
func TestLeaksAreToldToTheVictim(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := twoTenants(t, env)
	const globexSecret = "gx_live_7Hq2ZxV5nLp0Ws3KaRb9YtU4"
	const acmeSecret = "ac_live_Q8wE4rT6yU2iO9pA7sD5fG3h"
	env.admin(t, "PUT", "/admin/v1/tenants/globex/secrets/crm", map[string]any{"value": globexSecret}, http.StatusNoContent)
	env.admin(t, "PUT", "/admin/v1/tenants/globex/secrets/pin", map[string]any{"value": "passwordpassword"}, http.StatusNoContent)
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/crm", map[string]any{"value": acmeSecret}, http.StatusNoContent)
	globex, err := env.plane.Tenant("globex")
	if err != nil || len(globex.Canaries) == 0 {
		t.Fatalf("globex has no canary: %v", err)
	}
	canary := globex.Canaries[0]
	var fullwidth, hexColons strings.Builder
	for _, r := range canary {
		fullwidth.WriteRune(r + 0xFF01 - '!')
	}
	for i, c := range []byte(globexSecret) {
		if i > 0 {
			hexColons.WriteByte(':')
		}
		fmt.Fprintf(&hexColons, "%02x", c)
	}
	leaks := []struct{ name, say string }{
		{"fullwidth canary", "ref " + fullwidth.String()},
		{"zero-width joined canary", "ref " + strings.Join(strings.Split(canary, ""), "\u200d")},
		{"base64 canary", "ref " + base64.StdEncoding.EncodeToString([]byte(canary))},
		{"secret in hex", "key " + hexColons.String()},
		{"secret spaced out", "key " + strings.Join(strings.Split(globexSecret, ""), " ")},
	}
	for _, l := range leaks {
		for _, stream := range []bool{false, true} {
			got := env.say(t, chatCall{key: acmeKey, content: unseen("/say " + l.say), stream: stream})
			if !strings.Contains(got, "withheld") {
				t.Errorf("%s (stream=%v): got %q, want it withheld", l.name, stream, got)
			}
		}
	}
	if got := env.say(t, chatCall{key: acmeKey, content: "/say guess passwordpassword"}); !strings.Contains(got, "passwordpassword") {
		t.Errorf("a low-entropy secret of another tenant changed the answer: %q", got)
	}
	own := base64.StdEncoding.EncodeToString([]byte("Bearer " + acmeSecret))
	for _, stream := range []bool{false, true} {
		got := env.say(t, chatCall{key: acmeKey, content: "/say auth " + own, stream: stream})
		if strings.Contains(got, own[12:]) || strings.Contains(got, "withheld") || !strings.Contains(got, "[REDACTED:crm]") {
			t.Errorf("own secret (stream=%v): got %q, want it redacted", stream, got)
		}
	}

	kinds := map[string]int{}
	for _, r := range auditLog(t, env, "/v1/audit", globexKey) {
		if r.Type != "guard.foreign_leak" {
			continue
		}
		if strings.Contains(string(r.Data), "acme") {
			t.Errorf("globex's record names the receiver: %s", r.Data)
		}
		switch {
		case strings.Contains(string(r.Data), `"kind":"canary"`):
			kinds["canary"]++
		case strings.Contains(string(r.Data), `"kind":"secret"`):
			kinds["secret"]++
		}
	}
	// Records are aggregated per kind and minute: at least one of each, at
	// most two (the first at once, the rest counted at the window's end).
	if kinds["canary"] < 1 || kinds["canary"] > 2 || kinds["secret"] < 1 || kinds["secret"] > 2 {
		t.Errorf("globex's log holds %v foreign-leak records, want 1-2 of each kind", kinds)
	}
	var blocks int
	for _, r := range auditLog(t, env, "/v1/audit", acmeKey) {
		if r.Type == "guard.block" {
			blocks++
		}
		if r.Type == "guard.foreign_leak" {
			t.Errorf("acme's log holds a foreign-leak record: %s", r.Data)
		}
	}
	if blocks < 10 {
		t.Errorf("acme's log holds %d guard blocks, want 10", blocks)
	}
}
