package main

import (
	"bytes"
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
