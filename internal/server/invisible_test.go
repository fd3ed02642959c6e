package server

import (
	"net/http"
	"strings"
	"testing"
)

// TestInvisiblePaddingDoesNotHide pads every character of globex's canary
// and of acme's own secret with more invisible code points than a match may
// skip. The runs are removed before matching, so the canary is still caught
// and the secret still redacted, streamed or not, in an answer and in what a
// tool returns.
func TestInvisiblePaddingDoesNotHide(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _ := twoTenants(t, env)
	const acmeSecret = "ac_live_Q8wE4rT6yU2iO9pA7sD5fG3h"
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/crm", map[string]any{"value": acmeSecret}, http.StatusNoContent)
	globex, err := env.plane.Tenant("globex")
	if err != nil || len(globex.Canaries) == 0 {
		t.Fatalf("globex has no canary: %v", err)
	}
	pad := func(s, run string) string { return strings.Join(strings.Split(s, ""), run) }
	for _, run := range []string{strings.Repeat("\u200b", 6), strings.Repeat("\u2063", 5) + "\u200d", strings.Repeat("\u0301", 9)} {
		for _, stream := range []bool{false, true} {
			got := env.say(t, chatCall{key: acmeKey, content: unseen("/say ref " + pad(globex.Canaries[0], run)), stream: stream})
			if !strings.Contains(got, "withheld") {
				t.Errorf("padded canary (run %q, stream=%v): got %q, want it withheld", run, stream, got)
			}
			got = env.say(t, chatCall{key: acmeKey, content: unseen("/say key " + pad(acmeSecret, run)), stream: stream})
			if !strings.Contains(got, "[REDACTED:crm]") || strings.Contains(strings.ReplaceAll(got, run, ""), acmeSecret) {
				t.Errorf("padded own secret (run %q, stream=%v): got %q, want it redacted", run, stream, got)
			}
		}
	}
}
