package server

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func TestConsolePagesRender(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	c := env.consoleClient()
	c.signIn(t, testAdminToken)

	r := c.post(t, "/console/tenants", url.Values{"id": {"acme"}, "name": {"Acme Corp"}, "system_prompt": {"You help Acme's customers."}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/console/tenants/acme?done=created" {
		t.Fatalf("create tenant: %v", r)
	}
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/crm_token", map[string]any{"value": "s3cr3t-value-0123456789"}, http.StatusNoContent)
	// A bad id is shown on the page, not created.
	if r := c.post(t, "/console/tenants", url.Values{"id": {"Bad Id!"}}); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `id="error"`) {
		t.Errorf("create with a bad id: %v, want 400 with the error shown", r.status)
	}

	for _, tc := range []struct {
		path string
		want []string
		not  []string
	}{
		{"/console/tenants", []string{"acme", "Acme Corp", "Suspend", "Create a tenant"}, nil},
		{"/console/tenants/acme?done=created", []string{"Tenant created.", "You help Acme&#39;s customers.", "crm_token", "Profiles", "Limits", "Save policy"},
			[]string{"s3cr3t-value"}},
		{"/console/tenants/acme?done=<script>", nil, []string{"<script>"}},
		{"/console/tenants/acme/keys", []string{"No keys yet.", "Create key"}, nil},
		{"/console/tenants/acme/usage", []string{`id="no-usage"`}, nil},
		{"/console/usage", []string{"every tenant", `id="no-usage"`}, nil},
		{"/console/tenants/acme/audit", []string{"tenant.create", "secret.set", "Verify chain"}, []string{"s3cr3t-value"}},
		{"/console/tenants/acme/audit?type=secret.set", []string{"secret.set", "crm_token"}, []string{"<td>tenant.create</td>"}},
		{"/console/tenants/acme/audit?verify=1", []string{`id="verify-result"`, "Chain verified: 2 records"}, nil},
		{"/console/tenants/acme/guard", []string{"Guard blocks and denied tool calls", "Nothing blocked or denied."}, nil},
	} {
		r := c.get(t, tc.path)
		if r.status != http.StatusOK {
			t.Errorf("GET %s: %v", tc.path, r)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(string(r.body), w) {
				t.Errorf("GET %s: no %q in the page", tc.path, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(string(r.body), n) {
				t.Errorf("GET %s: %q in the page", tc.path, n)
			}
		}
	}
}

func TestConsoleKeys(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	c := env.consoleClient()
	c.signIn(t, testAdminToken)

	r := c.post(t, "/console/tenants/acme/keys", url.Values{"name": {"backend"}, "expires_days": {"30"}})
	m := regexp.MustCompile(`id="new-key-value">(bk_[^<]+)<`).FindSubmatch(r.body)
	if r.status != http.StatusCreated || m == nil {
		t.Fatalf("create key: %v, want 201 showing the key", r)
	}
	key := string(m[1])
	if got := env.do(t, "GET", "/v1/models", key, nil, nil); got.status != http.StatusOK {
		t.Fatalf("the new key: %v", got)
	}
	page := c.get(t, "/console/tenants/acme/keys")
	if strings.Contains(string(page.body), key) {
		t.Error("the keys page shows the key again")
	}
	keys, _ := env.plane.Keys(t.Context(), "acme")
	if len(keys) != 1 || keys[0].Name != "backend" || keys[0].ExpiresAt == nil {
		t.Fatalf("keys %+v, want one named backend with an expiry", keys)
	}
	for _, want := range []string{"backend", string(keys[0].ID), "Revoke"} {
		if !strings.Contains(string(page.body), want) {
			t.Errorf("keys page: no %q", want)
		}
	}
	if r := c.post(t, "/console/tenants/acme/keys", url.Values{"expires_days": {"-1"}}); r.status != http.StatusBadRequest {
		t.Errorf("a past expiry: %v, want 400", r.status)
	}
	r = c.post(t, "/console/tenants/acme/keys/"+string(keys[0].ID)+"/revoke", url.Values{})
	if r.status != http.StatusSeeOther {
		t.Fatalf("revoke: %v", r)
	}
	if got := env.do(t, "GET", "/v1/models", key, nil, nil); got.status != http.StatusUnauthorized {
		t.Errorf("the revoked key: %v, want 401", got.status)
	}
	if page := c.get(t, "/console/tenants/acme/keys?done=revoked"); !strings.Contains(string(page.body), "revoked ") {
		t.Error("the keys page does not show the key revoked")
	}
}

func TestConsolePolicyError(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	c := env.consoleClient()
	c.signIn(t, testAdminToken)

	bad := "// refunds\r\nforbid (principal, action, resource) when { context.amount >= };\r\n"
	r := c.post(t, "/console/tenants/acme/policy", url.Values{"policy": {bad}})
	if r.status != http.StatusBadRequest {
		t.Fatalf("bad policy: %v, want 400", r)
	}
	body := string(r.body)
	if !strings.Contains(body, `id="policy-error"`) || !strings.Contains(body, "line 2, column") {
		t.Errorf("bad policy: the error with its line is not shown:\n%s", body)
	}
	if !strings.Contains(body, `<li class="bad" id="policy-bad-line">2</li>`) {
		t.Errorf("bad policy: line 2 is not marked in the editor")
	}
	if !strings.Contains(body, "context.amount &gt;= }") {
		t.Error("bad policy: the text is not kept in the editor")
	}
	if tn, _ := env.plane.Tenant("acme"); tn.Policy != "" {
		t.Errorf("a bad policy was stored: %q", tn.Policy)
	}
	good := "forbid (principal, action, resource) when { context.amount >= 500 };"
	if r := c.post(t, "/console/tenants/acme/policy", url.Values{"policy": {good}}); r.status != http.StatusSeeOther {
		t.Fatalf("good policy: %v", r)
	}
	if tn, _ := env.plane.Tenant("acme"); tn.Policy != good {
		t.Errorf("stored policy %q, want %q", tn.Policy, good)
	}
}

func TestConsoleSuspendAndDelete(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	c := env.consoleClient()
	c.signIn(t, testAdminToken)

	if r := c.post(t, "/console/tenants/acme/status", url.Values{"status": {"suspended"}}); r.status != http.StatusSeeOther {
		t.Fatalf("suspend: %v", r)
	}
	if tn, _ := env.plane.Tenant("acme"); tn.Status != "suspended" {
		t.Errorf("status %q, want suspended", tn.Status)
	}
	if r := c.post(t, "/console/tenants/acme/status", url.Values{"status": {"active"}}); r.status != http.StatusSeeOther {
		t.Fatalf("resume: %v", r)
	}
	// Deleting needs the tenant's id typed in.
	for _, confirm := range []string{"", "acm", "globex"} {
		if r := c.post(t, "/console/tenants/acme/delete", url.Values{"confirm": {confirm}}); r.status != http.StatusBadRequest {
			t.Errorf("delete confirmed with %q: %v, want 400", confirm, r.status)
		}
	}
	if _, err := env.plane.Tenant("acme"); err != nil {
		t.Fatalf("deleted without confirmation: %v", err)
	}
	if r := c.post(t, "/console/tenants/acme/delete", url.Values{"confirm": {"acme"}}); r.status != http.StatusSeeOther {
		t.Fatalf("delete: %v", r)
	}
	if _, err := env.plane.Tenant("acme"); err == nil {
		t.Error("acme still exists")
	}
}

func TestConsoleGuardPage(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	_, key := env.newKey(t, "acme")
	// The model asks for a tool the profile does not offer: denied, audited.
	env.chat(t, chatCall{key: key, content: `/call no_such_tool {"x":1}`})
	c := env.consoleClient()
	c.signIn(t, testAdminToken)
	r := c.get(t, "/console/tenants/acme/guard")
	body := string(r.body)
	if r.status != http.StatusOK || !strings.Contains(body, "<td>tool.call</td>") || !strings.Contains(body, "deny") {
		t.Errorf("guard page: %v, want the denied tool call", r.status)
	}
	if strings.Contains(body, "<td>tenant.create</td>") || strings.Contains(body, "<td>key.create</td>") {
		t.Error("guard page shows events that are neither blocks nor denials")
	}
}
