package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// adminTenant decodes the admin API's tenant view.
type adminTenant struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Status       string `json:"status"`
	SystemPrompt string `json:"system_prompt"`
	Model        string `json:"model"`
	Tools        []string
	Profiles     map[string]struct {
		SystemPrompt string   `json:"system_prompt"`
		Model        string   `json:"model"`
		Tools        []string `json:"tools"`
	} `json:"profiles"`
	Limits struct {
		RequestsPerMinute int `json:"requests_per_minute"`
		TokensPerMinute   int `json:"tokens_per_minute"`
		MaxConcurrent     int `json:"max_concurrent"`
	} `json:"limits"`
}

func (e *testEnv) getTenant(t *testing.T, id string) adminTenant {
	t.Helper()
	r := e.admin(t, "GET", "/admin/v1/tenants/"+id, nil, http.StatusOK)
	var v adminTenant
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode tenant: %v (%s)", err, r.body)
	}
	return v
}

func (e *testEnv) tenantIDs(t *testing.T) []string {
	t.Helper()
	r := e.admin(t, "GET", "/admin/v1/tenants", nil, http.StatusOK)
	var list struct {
		Object string        `json:"object"`
		Data   []adminTenant `json:"data"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil || list.Object != "list" {
		t.Fatalf("decode tenant list: %v (%s)", err, r.body)
	}
	ids := []string{}
	for _, v := range list.Data {
		ids = append(ids, v.ID)
	}
	return ids
}

func TestAdminCreateTenant(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	r := env.admin(t, "POST", "/admin/v1/tenants", map[string]any{
		"id": "acme", "name": "Acme Corp", "system_prompt": acmePrompt,
		"profiles": map[string]any{"support": map[string]any{"system_prompt": acmeSupportPrompt}},
		"limits":   map[string]any{"requests_per_minute": 60, "max_concurrent": 4},
	}, http.StatusCreated)
	var created adminTenant
	if err := json.Unmarshal(r.body, &created); err != nil {
		t.Fatal(err)
	}
	got := env.getTenant(t, "acme")
	for _, v := range []adminTenant{created, got} {
		if v.ID != "acme" || v.Name != "Acme Corp" || v.Status != "active" || v.SystemPrompt != acmePrompt {
			t.Errorf("got tenant %+v, want acme, Acme Corp, active, %q", v, acmePrompt)
		}
		if v.Model != "offline/default" || v.Profiles["support"].Model != "offline/default" {
			t.Errorf("got models %q and %q, want the default offline/default for both", v.Model, v.Profiles["support"].Model)
		}
		if v.Profiles["support"].SystemPrompt != acmeSupportPrompt || len(v.Profiles) != 1 {
			t.Errorf("got profiles %+v, want support only", v.Profiles)
		}
		if v.Limits.RequestsPerMinute != 60 || v.Limits.MaxConcurrent != 4 {
			t.Errorf("got limits %+v, want 60 rpm and 4 concurrent", v.Limits)
		}
	}
	if ids := env.tenantIDs(t); !slices.Equal(ids, []string{"acme"}) {
		t.Errorf("got tenants %v, want [acme]", ids)
	}
}

func TestAdminCreateTenantErrors(t *testing.T) {
	env := newTestEnv(t, envOptions{maxBodyBytes: 8 << 10})
	env.createTenant(t, map[string]any{"id": "acme", "system_prompt": acmePrompt})
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"no id", `{"name":"x"}`, 400, "invalid_request"},
		{"null id", `{"id":null}`, 400, "invalid_request"},
		{"empty id", `{"id":""}`, 400, "invalid_request"},
		{"id not a string", `{"id":5}`, 400, "invalid_request"},
		{"uppercase id", `{"id":"Acme2"}`, 400, "invalid_request"},
		{"path traversal id", `{"id":"../acme"}`, 400, "invalid_request"},
		{"id with slash", `{"id":"a/b"}`, 400, "invalid_request"},
		{"id with space", `{"id":"a b"}`, 400, "invalid_request"},
		{"id starting with dash", `{"id":"-ab"}`, 400, "invalid_request"},
		{"id too long", `{"id":"` + strings.Repeat("a", 64) + `"}`, 400, "invalid_request"},
		{"duplicate", `{"id":"acme","system_prompt":"hijacked"}`, 409, "conflict"},
		{"unknown field", `{"id":"newco","tenant_id":"acme"}`, 400, "invalid_request"},
		{"unknown profile field", `{"id":"newco","profiles":{"p":{"prompt":"x"}}}`, 400, "invalid_request"},
		{"unknown model provider", `{"id":"newco","model":"nope/gpt"}`, 400, "invalid_request"},
		{"model without provider", `{"id":"newco","model":"gpt-4o"}`, 400, "invalid_request"},
		{"model with empty name", `{"id":"newco","model":"offline/"}`, 400, "invalid_request"},
		{"profile with unknown provider", `{"id":"newco","profiles":{"p":{"model":"nope/gpt"}}}`, 400, "invalid_request"},
		{"default under profiles", `{"id":"newco","profiles":{"default":{"system_prompt":"x"}}}`, 400, "invalid_request"},
		{"bad profile name", `{"id":"newco","profiles":{"Bad Name":{}}}`, 400, "invalid_request"},
		{"bad status", `{"id":"newco","status":"deleted"}`, 400, "invalid_request"},
		{"negative limits", `{"id":"newco","limits":{"max_concurrent":-1}}`, 400, "invalid_request"},
		{"name too long", `{"id":"newco","name":"` + strings.Repeat("n", 201) + `"}`, 400, "invalid_request"},
		{"malformed JSON", `{"id":`, 400, "invalid_request"},
		{"empty body", ``, 400, "invalid_request"},
		{"two JSON values", `{"id":"newco"}{"id":"newco2"}`, 400, "invalid_request"},
		{"body over the cap", `{"id":"newco","system_prompt":"` + strings.Repeat("p", 8<<10) + `"}`, 413, "request_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.do(t, "POST", "/admin/v1/tenants", testAdminToken, tt.body, nil)
			checkAPIError(t, r, tt.wantStatus, tt.wantCode)
		})
	}
	if ids := env.tenantIDs(t); !slices.Equal(ids, []string{"acme"}) {
		t.Errorf("got tenants %v after refused creations, want [acme]", ids)
	}
	if got := env.getTenant(t, "acme").SystemPrompt; got != acmePrompt {
		t.Errorf("acme's prompt after a duplicate create: got %q, want %q", got, acmePrompt)
	}
}

func TestAdminPatchTenant(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _ := twoTenants(t, env)
	steps := []struct {
		name       string
		path       string
		body       string
		wantStatus int
		check      func(t *testing.T, v adminTenant)
	}{
		{"change id", "acme", `{"id":"globex"}`, 400, nil},
		{"change id to a new one", "acme", `{"id":"acme2"}`, 400, nil},
		{"same id", "acme", `{"id":"acme","name":"Acme Inc"}`, 200, func(t *testing.T, v adminTenant) {
			if v.Name != "Acme Inc" || v.SystemPrompt != acmePrompt {
				t.Errorf("got %+v, want name Acme Inc and the prompt unchanged", v)
			}
		}},
		{"unknown tenant", "nobody", `{"name":"x"}`, 404, nil},
		{"invalid tenant in path", "Acme", `{"name":"x"}`, 404, nil},
		{"unknown field", "acme", `{"tenant":"globex"}`, 400, nil},
		{"bad status", "acme", `{"status":"gone"}`, 400, nil},
		{"unknown model provider", "acme", `{"model":"nope/gpt"}`, 400, func(t *testing.T, v adminTenant) {
			if v.Model != "offline/default" {
				t.Errorf("got model %q after a refused change, want offline/default", v.Model)
			}
		}},
		{"default under profiles", "acme", `{"profiles":{"default":{}}}`, 400, nil},
		{"system prompt", "acme", `{"system_prompt":"ACME-NEW-PROMPT"}`, 200, func(t *testing.T, v adminTenant) {
			msgs := env.echo(t, chatCall{key: acmeKey})
			if msgs[0].Content != "ACME-NEW-PROMPT" {
				t.Errorf("got system prompt %q in the model's context, want ACME-NEW-PROMPT", msgs[0].Content)
			}
			if len(v.Profiles) != 1 || v.Profiles["support"].SystemPrompt != acmeSupportPrompt {
				t.Errorf("got profiles %+v, want support unchanged", v.Profiles)
			}
		}},
		{"replace profiles", "acme", `{"profiles":{"extra":{"system_prompt":"E"}}}`, 200, func(t *testing.T, v adminTenant) {
			if _, ok := v.Profiles["support"]; ok || v.Profiles["extra"].Model != "offline/default" || v.SystemPrompt != "ACME-NEW-PROMPT" {
				t.Errorf("got %+v, want profiles default and extra", v)
			}
			checkModels(t, env, acmeKey, []string{"default", "extra"})
		}},
		{"clear profiles", "acme", `{"profiles":{}}`, 200, func(t *testing.T, v adminTenant) {
			checkModels(t, env, acmeKey, []string{"default"})
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := env.do(t, "PATCH", "/admin/v1/tenants/"+st.path, testAdminToken, st.body, nil)
			if st.wantStatus == 200 {
				if r.status != 200 {
					t.Fatalf("got %v, want 200", r)
				}
			} else {
				checkAPIError(t, r, st.wantStatus, "")
			}
			if st.check != nil {
				st.check(t, env.getTenant(t, "acme"))
			}
		})
	}
	if ids := env.tenantIDs(t); !slices.Equal(ids, []string{"acme", "globex"}) {
		t.Errorf("got tenants %v, want [acme globex]", ids)
	}
	if v := env.getTenant(t, "globex"); v.SystemPrompt != globexPrompt || v.Name != "globex" {
		t.Errorf("globex after patches of acme: got %+v, want it unchanged", v)
	}
}

func checkModels(t *testing.T, env *testEnv, key string, want []string) {
	t.Helper()
	r := env.do(t, "GET", "/v1/models", key, nil, nil)
	var list struct {
		Data []struct{ ID string } `json:"data"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatalf("decode models: %v (%s)", err, r.body)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("got models %v, want %v", ids, want)
	}
}

func TestAdminKeys(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	keyID, key := env.newKey(t, "acme")
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(keyID) || !strings.HasPrefix(key, "bk_"+keyID+"_") {
		t.Errorf("got key id %q and key %q, want 16 hex digits and bk_<id>_…", keyID, key)
	}
	tests := []struct {
		name, method, path string
		wantStatus         int
	}{
		{"key for unknown tenant", "POST", "/admin/v1/tenants/nobody/keys", 404},
		{"key for invalid tenant", "POST", "/admin/v1/tenants/No%20Body/keys", 404},
		{"revoke unknown key", "DELETE", "/admin/v1/tenants/acme/keys/0123456789abcdef", 404},
		{"revoke key under unknown tenant", "DELETE", "/admin/v1/tenants/nobody/keys/" + keyID, 404},
		{"list keys of unknown tenant", "GET", "/admin/v1/tenants/nobody/keys", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkAPIError(t, env.do(t, tt.method, tt.path, testAdminToken, nil, nil), tt.wantStatus, "not_found")
		})
	}
	// The list: acme's keys, oldest first, revoked ones marked; never
	// another tenant's, never a key's secret.
	env.createTenant(t, map[string]any{"id": "globex"})
	globexKeyID, _ := env.newKey(t, "globex")
	revokedID, _ := env.newKey(t, "acme")
	env.admin(t, "DELETE", "/admin/v1/tenants/acme/keys/"+revokedID, nil, http.StatusNoContent)
	r := env.admin(t, "GET", "/admin/v1/tenants/acme/keys", nil, http.StatusOK)
	var list struct {
		Object string
		Data   []struct {
			ID, Object, Tenant string
			CreatedAt          time.Time  `json:"created_at"`
			RevokedAt          *time.Time `json:"revoked_at"`
		}
	}
	if err := json.Unmarshal(r.body, &list); err != nil || list.Object != "list" || len(list.Data) != 2 {
		t.Fatalf("GET /admin/v1/tenants/acme/keys: %s (%v), want a list of 2", r.body, err)
	}
	if k := list.Data[0]; k.ID != keyID || k.Object != "api_key" || k.Tenant != "acme" || k.CreatedAt.IsZero() || k.RevokedAt != nil {
		t.Errorf("first key: %+v, want live %s", k, keyID)
	}
	if k := list.Data[1]; k.ID != revokedID || k.RevokedAt == nil {
		t.Errorf("second key: %+v, want revoked %s", k, revokedID)
	}
	if strings.Contains(string(r.body), globexKeyID) || strings.Contains(string(r.body), key[len("bk_")+17:]) || strings.Contains(string(r.body), "hash") {
		t.Errorf("acme's key list shows globex's key, a secret or a hash: %s", r.body)
	}
	if r := env.do(t, "GET", "/admin/v1/tenants/acme/keys", key, nil, nil); r.status != http.StatusUnauthorized {
		t.Errorf("key list with a tenant key: %v, want 401", r)
	}

	// The key is never shown again.
	for _, path := range []string{"/admin/v1/tenants/acme", "/admin/v1/tenants"} {
		if r := env.admin(t, "GET", path, nil, http.StatusOK); strings.Contains(string(r.body), key[len("bk_")+17:]) {
			t.Errorf("GET %s shows the key's secret: %s", path, r.body)
		}
	}
	if got := env.say(t, chatCall{key: key, content: "/say ok"}); got != "ok" {
		t.Errorf("key after failed revocations: got %q, want ok", got)
	}
}

func TestAdminDeleteTenant(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := twoTenants(t, env)
	env.say(t, chatCall{key: acmeKey, user: "alice", session: "s1", content: "remember " + acmeFact})
	env.say(t, chatCall{key: globexKey, user: "alice", session: "s1", content: "remember " + globexFact})
	acme, err := env.plane.Tenant("acme")
	if err != nil {
		t.Fatal(err)
	}
	globex, err := env.plane.Tenant("globex")
	if err != nil {
		t.Fatal(err)
	}
	acmeDir := filepath.Join(env.dataDir, "tenants", acme.StorageID)
	globexDir := filepath.Join(env.dataDir, "tenants", globex.StorageID)
	for _, dir := range []string{acmeDir, globexDir} {
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("tenant data before deletion: %v", err)
		}
	}

	checkAPIError(t, env.do(t, "DELETE", "/admin/v1/tenants/nobody", testAdminToken, nil, nil), 404, "not_found")
	env.admin(t, "DELETE", "/admin/v1/tenants/acme", nil, http.StatusNoContent)
	checkAPIError(t, env.do(t, "DELETE", "/admin/v1/tenants/acme", testAdminToken, nil, nil), 404, "not_found")
	checkAPIError(t, env.do(t, "GET", "/admin/v1/tenants/acme", testAdminToken, nil, nil), 404, "not_found")
	checkAPIError(t, env.do(t, "PATCH", "/admin/v1/tenants/acme", testAdminToken, `{"status":"active"}`, nil), 404, "not_found")
	checkAPIError(t, env.chat(t, chatCall{key: acmeKey, content: "hi"}), 401, "invalid_api_key")

	if _, err := os.Stat(acmeDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("acme's data directory after deletion: got %v, want it gone", err)
	}
	if _, err := os.Stat(globexDir); err != nil {
		t.Errorf("globex's data directory after acme's deletion: %v", err)
	}
	msgs := env.echo(t, chatCall{key: globexKey, user: "alice", session: "s1"})
	if all := joinContents(msgs); !strings.Contains(all, globexFact) {
		t.Errorf("globex history after acme's deletion: got %q, want it to hold %s", all, globexFact)
	}
	if ids := env.tenantIDs(t); !slices.Equal(ids, []string{"globex"}) {
		t.Errorf("got tenants %v, want [globex]", ids)
	}
}

// TestAdminSecrets checks secrets are write-only and per tenant, and that
// nothing but the admin token can touch them.
func TestAdminSecrets(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _ := twoTenants(t, env)
	const value = "acme-crm-token-5e8d1f"
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/crm_token", map[string]string{"value": value}, http.StatusNoContent)
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/crm_token", map[string]string{"value": value + "-v2"}, http.StatusNoContent)

	tests := []struct {
		name, method, path, token string
		body                      any
		want                      int
	}{
		{"too short", "PUT", "/admin/v1/tenants/acme/secrets/x", testAdminToken, map[string]string{"value": "short"}, 400},
		// Long enough, but the redactor reads its NUL and zero-width
		// characters as nothing and could never find it (FuzzRedactValue).
		{"unredactable", "PUT", "/admin/v1/tenants/acme/secrets/x", testAdminToken, map[string]string{"value": "0000\x00000"}, 400},
		{"unredactable zero-width", "PUT", "/admin/v1/tenants/acme/secrets/x", testAdminToken, map[string]string{"value": "abc\u200b\u200b\u200bdef"}, 400},
		{"no value", "PUT", "/admin/v1/tenants/acme/secrets/x", testAdminToken, map[string]string{}, 400},
		{"bad name", "PUT", "/admin/v1/tenants/acme/secrets/Bad%20Name", testAdminToken, map[string]string{"value": value}, 400},
		{"unknown tenant", "PUT", "/admin/v1/tenants/initech/secrets/x", testAdminToken, map[string]string{"value": value}, 404},
		{"tenant key cannot set", "PUT", "/admin/v1/tenants/acme/secrets/x", acmeKey, map[string]string{"value": value}, 401},
		{"tenant key cannot delete", "DELETE", "/admin/v1/tenants/acme/secrets/crm_token", acmeKey, nil, 401},
		{"no GET of a secret", "GET", "/admin/v1/tenants/acme/secrets/crm_token", testAdminToken, nil, 405},
		{"delete in another tenant", "DELETE", "/admin/v1/tenants/globex/secrets/crm_token", testAdminToken, nil, 404},
		{"delete missing", "DELETE", "/admin/v1/tenants/acme/secrets/nosuch", testAdminToken, nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := env.do(t, tt.method, tt.path, tt.token, tt.body, nil)
			if r.status != tt.want {
				t.Fatalf("got %v, want %d", r, tt.want)
			}
			checkErrorShape(t, r)
		})
	}

	// No endpoint returns the value.
	for _, path := range []string{"/admin/v1/tenants", "/admin/v1/tenants/acme", "/admin/v1/tenants/acme/export"} {
		r := env.admin(t, "GET", path, nil, http.StatusOK)
		if bytes.Contains(r.body, []byte(value)) {
			t.Fatalf("GET %s returns the secret value: %s", path, r.body)
		}
	}
	r := env.admin(t, "GET", "/admin/v1/tenants/acme/export", nil, http.StatusOK)
	if !bytes.Contains(r.body, []byte(`"crm_token"`)) {
		t.Fatalf("export does not list the secret's name: %s", r.body)
	}
	env.admin(t, "DELETE", "/admin/v1/tenants/acme/secrets/crm_token", nil, http.StatusNoContent)
	env.admin(t, "DELETE", "/admin/v1/tenants/acme/secrets/crm_token", nil, http.StatusNotFound)
}

// checkErrorShape checks an error response is in OpenAI's shape.
func checkErrorShape(t *testing.T, r response) {
	t.Helper()
	var e struct {
		Error *struct{ Message, Type, Code string } `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not an OpenAI error: %v", r)
	}
}

// TestAdminExport checks the export holds the tenant's own data, decrypted,
// and nothing of another tenant's.
func TestAdminExport(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, globexKey := twoTenants(t, env)
	env.say(t, chatCall{key: acmeKey, session: "s1", user: "alice", content: "acme remembers " + acmeFact})
	env.say(t, chatCall{key: globexKey, session: "s1", user: "alice", content: "globex remembers " + globexFact})

	r := env.admin(t, "GET", "/admin/v1/tenants/acme/export", nil, http.StatusOK)
	var exp struct {
		Tenant struct{ ID string }
		Data   struct {
			Sessions []struct {
				User, Session string
				Messages      []struct{ Role, Content string }
			}
			SecretNames []string `json:"secret_names"`
		}
	}
	if err := json.Unmarshal(r.body, &exp); err != nil {
		t.Fatal(err)
	}
	if exp.Tenant.ID != "acme" || len(exp.Data.Sessions) != 1 || exp.Data.Sessions[0].User != "alice" ||
		len(exp.Data.Sessions[0].Messages) != 2 || !strings.Contains(exp.Data.Sessions[0].Messages[0].Content, acmeFact) {
		t.Fatalf("export = %s", r.body)
	}
	if bytes.Contains(r.body, []byte(globexFact)) || bytes.Contains(r.body, []byte(globexPrompt)) {
		t.Fatalf("acme's export holds globex's data: %s", r.body)
	}
	env.admin(t, "GET", "/admin/v1/tenants/initech/export", nil, http.StatusNotFound)
	if r := env.do(t, "GET", "/admin/v1/tenants/acme/export", acmeKey, nil, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("export with a tenant key: got %v, want 401", r)
	}
}

// TestDeleteTenantLeavesNothing checks that a deleted tenant's files held no
// plaintext while they existed, are gone afterwards, and that a tenant
// re-created under the same id starts empty.
func TestDeleteTenantLeavesNothing(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	acmeKey, _ := twoTenants(t, env)
	const secret = "acme-crm-token-9b2c44"
	env.admin(t, "PUT", "/admin/v1/tenants/acme/secrets/crm", map[string]string{"value": secret}, http.StatusNoContent)
	env.say(t, chatCall{key: acmeKey, session: "s1", user: "alice", content: "remember " + acmeFact})

	storage := env.incarnation(t, "acme").Storage()
	dir := filepath.Join(env.dataDir, "tenants", storage)
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("tenant files: %v, %v", files, err)
	}
	for _, f := range append(files, filepath.Join(env.dataDir, "control.db")) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, plain := range []string{secret, acmeFact} {
			if bytes.Contains(b, []byte(plain)) {
				t.Fatalf("%s holds %q in plaintext", f, plain)
			}
		}
	}

	env.admin(t, "DELETE", "/admin/v1/tenants/acme", nil, http.StatusNoContent)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("tenant directory after delete: %v", err)
	}
	if r := env.chat(t, chatCall{key: acmeKey, content: "hi"}); r.status != http.StatusUnauthorized {
		t.Fatalf("deleted tenant's key: got %v, want 401", r)
	}
	env.createTenant(t, map[string]any{"id": "acme"})
	r := env.admin(t, "GET", "/admin/v1/tenants/acme/export", nil, http.StatusOK)
	if bytes.Contains(r.body, []byte(acmeFact)) || bytes.Contains(r.body, []byte(`"crm"`)) {
		t.Fatalf("re-created tenant sees its predecessor's data: %s", r.body)
	}
}
