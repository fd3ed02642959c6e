package main

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// TestPolicyTemplate checks `bulkhead policy template` prints the shipped
// label templates offline and refuses an unknown name.
func TestPolicyTemplate(t *testing.T) {
	getenv := func(string) string { return "" }
	for name, want := range map[string]string{
		"trusted-action": `resource.consequential && context.integrity == "untrusted"`,
		"permitted-flow": `resource.receives.contains(context.confidentiality)`,
	} {
		var out, errOut bytes.Buffer
		if err := run(t.Context(), []string{"policy", "template", name}, getenv, &out, &errOut); err != nil {
			t.Fatalf("policy template %s: %v (%s)", name, err, errOut.String())
		}
		if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), `@id("`+name+`")`) {
			t.Errorf("policy template %s printed %q", name, out.String())
		}
	}
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"policy", "template", "allow-all"}, getenv, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "trusted-action") || out.Len() > 0 {
		t.Errorf("unknown template: err %v, output %q; want an error naming the templates", err, out.String())
	}
}

func TestUsageCommand(t *testing.T) {
	t.Parallel()
	base, admin := startServer(t)
	acme := createTenantKey(t, base, admin, map[string]any{"id": "acme"})
	globex := createTenantKey(t, base, admin, map[string]any{"id": "globex"})
	for _, key := range []string{acme, globex} {
		chat := map[string]any{"model": "default", "user": "u1", "messages": []map[string]string{{"role": "user", "content": "hello"}}}
		if status, b := call(t, http.MethodPost, base+"/v1/chat/completions", key, chat); status != http.StatusOK {
			t.Fatalf("chat: %d %s", status, b)
		}
	}
	env := envMap(map[string]string{"BULKHEAD_SERVER": base, "BULKHEAD_ADMIN_TOKEN": admin})
	for _, tt := range []struct {
		args          []string
		want, notWant string
	}{
		{[]string{"usage", "--tenant", "acme"}, `"tenant": "acme"`, `"globex"`},
		{[]string{"usage"}, `"tenant": "globex"`, ""},
	} {
		var out bytes.Buffer
		if err := run(t.Context(), tt.args, env, &out, &out); err != nil {
			t.Fatalf("%v: %v\n%s", tt.args, err, out.String())
		}
		if !strings.Contains(out.String(), tt.want) || !strings.Contains(out.String(), `"end_user": "u1"`) ||
			(tt.notWant != "" && strings.Contains(out.String(), tt.notWant)) {
			t.Errorf("%v printed %s; want %s and not %q", tt.args, out.String(), tt.want, tt.notWant)
		}
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"usage", "--from", "yesterday"}, env, &out, &out); err == nil || !strings.Contains(err.Error(), "from") {
		t.Errorf("usage --from yesterday: err = %v, want one naming from", err)
	}
}
