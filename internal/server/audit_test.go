package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/store"
)

func auditLog(t *testing.T, env *testEnv, path, token string) []store.AuditRecord {
	t.Helper()
	r := env.do(t, "GET", path, token, nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %v", path, r)
	}
	var page struct{ Data []store.AuditRecord }
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatal(err)
	}
	return page.Data
}

// TestAuditLog checks that tool decisions and admin changes land in the
// tenant's own chained log, that each tenant reads only its own, and that
// secret values never appear in it.
func TestAuditLog(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	crm := newFakeCRM(t)
	acmeKey, globexKey := toolTenants(t, env, crm)
	env.say(t, chatCall{key: acmeKey, content: "/call crm_lookup {\"customer\":\"c-1\"}\n/call globex_notes {}\n/call crm_lookup {\"customer\":\"c-2\",\"tenant_id\":\"globex\"}"})

	acme := auditLog(t, env, "/v1/audit", acmeKey)
	if err := audit.Verify(acme); err != nil {
		t.Fatalf("acme's log does not verify: %v", err)
	}
	var types []string
	var all strings.Builder
	for _, r := range acme {
		types = append(types, r.Type)
		all.Write(r.Data)
	}
	joined := strings.Join(types, " ")
	for _, want := range []string{"tenant.create", "secret.set", "key.create", "tool.call"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("acme's log %q lacks %s", joined, want)
		}
	}
	for _, want := range []string{`"decision":"allow"`, `"decision":"deny"`, "global/forbid", "bound parameter", `"customer:string"`} {
		if !strings.Contains(all.String(), want) && !strings.Contains(all.String(), strings.ReplaceAll(want, "global/forbid", "not offered")) {
			t.Fatalf("acme's log lacks %s: %s", want, all.String())
		}
	}
	for _, leak := range []string{acmeCRMToken, globexCRMToken, "c-1", "c-2"} {
		if strings.Contains(all.String(), leak) {
			t.Fatalf("acme's log holds the value %q: %s", leak, all.String())
		}
	}
	// globex's log (by its key, and by the admin API) has none of acme's events.
	for _, recs := range [][]store.AuditRecord{auditLog(t, env, "/v1/audit", globexKey), auditLog(t, env, "/admin/v1/tenants/globex/audit", testAdminToken)} {
		for _, r := range recs {
			if strings.Contains(string(r.Data), "c-1") || r.Type == "tool.call" {
				t.Fatalf("globex's log holds acme's event: %+v", r)
			}
		}
		if err := audit.Verify(recs); err != nil {
			t.Fatalf("globex's log does not verify: %v", err)
		}
	}
	if r := env.do(t, "GET", "/admin/v1/tenants/acme/audit", acmeKey, nil, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("acme's key on the admin audit: %v", r)
	}
	if r := env.do(t, "GET", "/v1/audit?after=-1", acmeKey, nil, nil); r.status != http.StatusBadRequest {
		t.Fatalf("bad after: %v", r)
	}
}

// failingAudit is an audit store whose appends fail while fail is set, as
// a full or broken disk would make them.
type failingAudit struct {
	audit.Store
	fail atomic.Bool
}

func (f *failingAudit) AppendAudit(ctx context.Context, scope auth.Scope, recs []store.AuditRecord) error {
	if f.fail.Load() {
		return errors.New("disk I/O error")
	}
	return f.Store.AppendAudit(ctx, scope, recs)
}

// TestAdminChangeFailsUnaudited: while the audit log cannot be written, every
// admin change is refused with a 500 in OpenAI's error shape and is not
// made; once it can, every acknowledged change has its record.
func TestAdminChangeFailsUnaudited(t *testing.T) {
	fa := &failingAudit{}
	env := newTestEnv(t, envOptions{auditStore: func(s audit.Store) audit.Store { fa.Store = s; return fa }})
	env.createTenant(t, map[string]any{"id": "acme"})
	keyID, key := env.newKey(t, "acme")
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/old_token", map[string]string{"value": "old-token-value-123"}, http.StatusNoContent)
	const policy = `forbid (principal, action, resource == Tool::"refund");`
	env.admin(t, "PUT", "/admin/v1/tenants/acme/policy", policy, http.StatusNoContent)

	fa.fail.Store(true)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"PUT", "/admin/v1/tenants/acme/secrets/new_token", map[string]string{"value": "new-token-value-456"}},
		{"DELETE", "/admin/v1/tenants/acme/secrets/old_token", nil},
		{"PUT", "/admin/v1/tenants/acme/policy", `forbid (principal, action, resource == Tool::"other");`},
		{"POST", "/admin/v1/tenants/acme/keys", nil},
		{"DELETE", "/admin/v1/tenants/acme/keys/" + keyID, nil},
		{"PATCH", "/admin/v1/tenants/acme", map[string]any{"status": "suspended"}},
	} {
		r := env.do(t, c.method, c.path, testAdminToken, c.body, nil)
		var e struct {
			Error struct{ Type, Code, Message string }
		}
		json.Unmarshal(r.body, &e)
		if r.status != http.StatusInternalServerError || e.Error.Code != "internal_error" || e.Error.Type != "api_error" {
			t.Errorf("%s %s with the audit log failing: got %v, want 500 internal_error", c.method, c.path, r)
		}
	}
	fa.fail.Store(false)

	// None of the changes was made.
	if r := env.do(t, "GET", "/v1/models", key, nil, nil); r.status != http.StatusOK {
		t.Fatalf("acme's key after refused revoke and suspend: %v, want 200", r)
	}
	exp := env.admin(t, "GET", "/admin/v1/tenants/acme/export", nil, http.StatusOK)
	if s := string(exp.body); !strings.Contains(s, "old_token") || strings.Contains(s, "new_token") {
		t.Fatalf("secrets after refused changes: %s, want old_token only", s)
	}
	if r := env.admin(t, "GET", "/admin/v1/tenants/acme/policy", nil, http.StatusOK); !strings.Contains(string(r.body), "refund") {
		t.Fatalf("policy after a refused change: %s", r.body)
	}

	// Every acknowledged change has its record.
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/new_token", map[string]string{"value": "new-token-value-456"}, http.StatusNoContent)
	env.admin(t, "DELETE", "/admin/v1/tenants/acme/keys/"+keyID, nil, http.StatusNoContent)
	recs := auditLog(t, env, "/admin/v1/tenants/acme/audit", testAdminToken)
	if err := audit.Verify(recs); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range recs {
		count[r.Type]++
	}
	for typ, want := range map[string]int{"key.create": 1, "secret.set": 2, "policy.set": 1, "key.revoke": 1, "tenant.update": 0, "secret.delete": 0} {
		if count[typ] != want {
			t.Errorf("%s records: got %d, want %d (log %v)", typ, count[typ], want, count)
		}
	}
}
