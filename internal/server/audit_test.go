package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/audit"
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
