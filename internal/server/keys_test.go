package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/control"
)

type listedKey struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Tenant     string     `json:"tenant"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func listKeys(t *testing.T, env *testEnv, id string) map[string]listedKey {
	t.Helper()
	r := env.admin(t, "GET", "/admin/v1/tenants/"+id+"/keys", nil, http.StatusOK)
	var list struct{ Data []listedKey }
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]listedKey{}
	for _, k := range list.Data {
		out[k.ID] = k
	}
	return out
}

// TestKeyNameExpiryAndLastUse: a key made with a name and expiry lists
// them; using it sets its last-used time and no other key's (not another
// tenant's); an expired key is a 401 that says it expired.
func TestKeyNameExpiryAndLastUse(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	env.createTenant(t, map[string]any{"id": "globex"})
	expires := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	r := env.admin(t, "POST", "/admin/v1/tenants/acme/keys", map[string]any{"name": "support bot", "expires_at": expires}, http.StatusCreated)
	var made struct {
		ID, Key, Name string
		ExpiresAt     *time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(r.body, &made); err != nil || made.Name != "support bot" || made.ExpiresAt == nil || !made.ExpiresAt.Equal(expires) {
		t.Fatalf("create key: %v (%v)", r, err)
	}
	globexID, _ := env.newKey(t, "globex")

	if r := env.do(t, "GET", "/v1/models", made.Key, nil, nil); r.status != http.StatusOK {
		t.Fatalf("the new key: %v", r)
	}
	acme := listKeys(t, env, "acme")
	k := acme[made.ID]
	if k.Name != "support bot" || k.ExpiresAt == nil || !k.ExpiresAt.Equal(expires) || k.LastUsedAt == nil {
		t.Errorf("listed key = %+v, want name, expiry and a last use", k)
	}
	if g := listKeys(t, env, "globex")[globexID]; g.LastUsedAt != nil || g.Name != "" {
		t.Errorf("globex's key after acme's use = %+v, want never used", g)
	}

	for _, bad := range []map[string]any{
		{"expires_at": time.Now().Add(-time.Minute)},
		{"name": strings.Repeat("n", control.MaxKeyName+1)},
		{"tenant": "globex"},
	} {
		env.admin(t, "POST", "/admin/v1/tenants/acme/keys", bad, http.StatusBadRequest)
	}

	// An expired key (made in the past, as the API never would).
	keyID, secret, hash, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := env.plane.AddKeyWith(t.Context(), "acme", keyID, hash, control.KeyOptions{ExpiresAt: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	r = env.do(t, "GET", "/v1/models", secret.Reveal(), nil, nil)
	if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "expired") {
		t.Errorf("expired key: got %v, want 401 saying it expired", r)
	}
	if k := listKeys(t, env, "acme")[string(keyID)]; k.LastUsedAt != nil {
		t.Errorf("expired key's last use = %v, want none", k.LastUsedAt)
	}
}
