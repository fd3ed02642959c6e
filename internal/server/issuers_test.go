package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-ai/bulkhead/internal/auth/authtest"
)

// registerIssuer registers iss for tenant id with audience aud and returns
// the registration's id.
func (e *testEnv) registerIssuer(t testing.TB, id string, iss *authtest.Issuer, aud string, wantStatus int) string {
	t.Helper()
	r := e.admin(t, "POST", "/admin/v1/tenants/"+id+"/issuers", map[string]any{
		"issuer": iss.URL, "audience": aud, "jwks": iss.JWKS(), "algorithms": []string{"RS256"}}, wantStatus)
	var v struct{ ID string }
	if wantStatus == http.StatusCreated {
		if err := json.Unmarshal(r.body, &v); err != nil || v.ID == "" {
			t.Fatalf("issuer registration: %v (%v)", r, err)
		}
	}
	return v.ID
}

func TestEndUserTokens(t *testing.T) {
	env := newTestEnv(t, envOptions{})
	env.createTenant(t, map[string]any{"id": "acme"})
	env.createTenant(t, map[string]any{"id": "globex"})
	_, acmeKey := env.newKey(t, "acme")
	_, globexKey := env.newKey(t, "globex")
	// Both tenants trust one identity provider, with their own audiences.
	idp := authtest.NewIssuer(t, "https://login.example")
	acmeReg := env.registerIssuer(t, "acme", idp, "acme-app", http.StatusCreated)
	env.registerIssuer(t, "globex", idp, "globex-app", http.StatusCreated)
	t.Run("same issuer and audience in another tenant is a conflict", func(t *testing.T) {
		env.registerIssuer(t, "globex", idp, "acme-app", http.StatusConflict)
		env.registerIssuer(t, "acme", idp, "acme-app", http.StatusConflict)
	})
	alice := idp.Token(t, "alice", "acme-app", time.Hour, nil)

	// Memories made by the tenants' backends with their keys.
	for _, m := range []struct{ key, user, text string }{
		{acmeKey, "alice", "alice likes red rockets"},
		{acmeKey, "bob", "bob's secret: BOB-ONLY-77"},
		{globexKey, "alice", "globex alice: GLOBEX-ONLY-55"},
	} {
		if r := env.do(t, "POST", "/v1/memories", m.key, map[string]string{"user": m.user, "text": m.text}, nil); r.status != http.StatusCreated {
			t.Fatalf("memory: %v", r)
		}
	}

	t.Run("a token authenticates as its tenant and subject", func(t *testing.T) {
		r := env.do(t, "GET", "/v1/memories", alice, nil, nil)
		if r.status != http.StatusOK || !strings.Contains(string(r.body), "red rockets") {
			t.Fatalf("alice's memories: %v", r)
		}
		if s := string(r.body); strings.Contains(s, "BOB-ONLY") || strings.Contains(s, "GLOBEX-ONLY") {
			t.Fatalf("alice's token read another user's or tenant's memory: %s", s)
		}
		if got := env.say(t, chatCall{key: alice, content: "hello"}); got == "" {
			t.Fatal("empty answer")
		}
	})

	t.Run("the body cannot change the token's user", func(t *testing.T) {
		for _, r := range []response{
			env.do(t, "GET", "/v1/memories?user=bob", alice, nil, nil),
			env.do(t, "POST", "/v1/memories", alice, map[string]string{"user": "bob", "text": "planted"}, nil),
			env.chat(t, chatCall{key: alice, user: "bob", content: "what is my secret?"}),
		} {
			checkAPIError(t, r, http.StatusBadRequest, "invalid_request")
			if strings.Contains(string(r.body), "BOB-ONLY") {
				t.Fatalf("bob's memory reached alice: %s", r.body)
			}
		}
		if r := env.do(t, "GET", "/v1/memories?user=alice", alice, nil, nil); r.status != http.StatusOK {
			t.Fatalf("naming the token's own user: %v", r)
		}
	})

	t.Run("tenant A's issuer never reaches tenant B", func(t *testing.T) {
		// globex's audience authenticates as globex, never acme, and back.
		g := env.do(t, "GET", "/v1/memories", idp.Token(t, "alice", "globex-app", time.Hour, nil), nil, nil)
		if g.status != http.StatusOK || !strings.Contains(string(g.body), "GLOBEX-ONLY") || strings.Contains(string(g.body), "red rockets") {
			t.Fatalf("globex-audience token: %v", g)
		}
		other := authtest.NewIssuer(t, "https://login.example") // same iss, a key nobody registered
		for name, tok := range map[string]string{
			"unregistered audience": idp.Token(t, "alice", "initech-app", time.Hour, nil),
			"both audiences":        idp.Token(t, "alice", "", time.Hour, map[string]any{"aud": []string{"acme-app", "globex-app"}}),
			"another key":           other.Token(t, "alice", "acme-app", time.Hour, nil),
		} {
			r := env.do(t, "GET", "/v1/memories", tok, nil, nil)
			checkAPIError(t, r, http.StatusUnauthorized, "invalid_api_key")
			if strings.Contains(string(r.body), "ONLY") {
				t.Fatalf("%s: %s", name, r.body)
			}
		}
	})

	t.Run("expired token", func(t *testing.T) {
		r := env.do(t, "GET", "/v1/models", idp.Token(t, "alice", "acme-app", -time.Hour, nil), nil, nil)
		if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "expired") {
			t.Fatalf("expired token: %v", r)
		}
	})

	t.Run("metadata names the tenant's issuers only", func(t *testing.T) {
		for path, want := range map[string][]string{
			"/.well-known/oauth-protected-resource/mcp/acme":    {"https://login.example"},
			"/.well-known/oauth-protected-resource/mcp/nobody":  {},
			"/.well-known/oauth-protected-resource/mcp":         {},
			"/.well-known/oauth-protected-resource/mcp/globex/": nil, // not a route
		} {
			r := env.do(t, "GET", path, "", nil, nil)
			if want == nil {
				if r.status != http.StatusNotFound {
					t.Fatalf("%s: %v", path, r)
				}
				continue
			}
			var m struct {
				Resource string   `json:"resource"`
				Servers  []string `json:"authorization_servers"`
			}
			if err := json.Unmarshal(r.body, &m); err != nil || r.status != http.StatusOK {
				t.Fatalf("%s: %v", path, r)
			}
			if !slices.Equal(m.Servers, want) || !strings.HasSuffix(m.Resource, strings.TrimPrefix(path, "/.well-known/oauth-protected-resource")) {
				t.Fatalf("%s: got %+v, want servers %v", path, m, want)
			}
		}
		req := httpRequest(t, env.srv.URL+"/mcp/acme")
		if got, want := ProtectedResourceMetadataURL(req, "acme"), env.srv.URL+"/.well-known/oauth-protected-resource/mcp/acme"; got != want {
			t.Fatalf("ProtectedResourceMetadataURL = %s, want %s", got, want)
		}
	})

	t.Run("cors per tenant", func(t *testing.T) {
		env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"cors_origins": []string{"https://App.example"}}, http.StatusOK)
		const app = "https://app.example"
		pre := func(origin string) response {
			return env.do(t, "OPTIONS", "/v1/chat/completions", "", nil, map[string]string{"Origin": origin,
				"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"})
		}
		if r := pre(app); r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != app {
			t.Fatalf("preflight from a listed origin: %v %v", r, r.header)
		}
		if r := pre("https://evil.example"); r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("preflight from an unlisted origin allowed: %v", r.header)
		}
		if r := env.do(t, "GET", "/v1/models", alice, nil, map[string]string{"Origin": app}); r.header.Get("Access-Control-Allow-Origin") != app {
			t.Fatalf("acme's response not readable by acme's origin: %v", r.header)
		}
		// globex does not list acme's origin: its answers stay unreadable there.
		if r := env.do(t, "GET", "/v1/models", globexKey, nil, map[string]string{"Origin": app}); r.status != http.StatusOK || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("globex's response readable by acme's origin: %v", r.header)
		}
		env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"cors_origins": []string{"https://*.example"}}, http.StatusBadRequest)
	})

	t.Run("a suspended tenant's token is refused", func(t *testing.T) {
		env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"status": "suspended"}, http.StatusOK)
		if r := env.do(t, "GET", "/v1/models", alice, nil, nil); r.status == http.StatusOK {
			t.Fatalf("suspended tenant's token: %v", r)
		}
		env.admin(t, "PATCH", "/admin/v1/tenants/acme", map[string]any{"status": "active"}, http.StatusOK)
		if r := env.do(t, "GET", "/v1/models", alice, nil, nil); r.status != http.StatusOK {
			t.Fatalf("reactivated tenant's token: %v", r)
		}
	})

	t.Run("a deleted issuer's tokens are refused", func(t *testing.T) {
		r := env.admin(t, "GET", "/admin/v1/tenants/acme/issuers", nil, http.StatusOK)
		if !strings.Contains(string(r.body), acmeReg) {
			t.Fatalf("issuer list: %v", r)
		}
		env.admin(t, "DELETE", "/admin/v1/tenants/globex/issuers/"+acmeReg, nil, http.StatusNotFound)
		env.admin(t, "DELETE", "/admin/v1/tenants/acme/issuers/"+acmeReg, nil, http.StatusNoContent)
		checkAPIError(t, env.do(t, "GET", "/v1/models", alice, nil, nil), http.StatusUnauthorized, "invalid_api_key")
	})

	t.Run("changes are audited", func(t *testing.T) {
		r := env.admin(t, "GET", "/admin/v1/tenants/acme/audit", nil, http.StatusOK)
		for _, typ := range []string{"issuer.create", "issuer.delete"} {
			if !strings.Contains(string(r.body), typ) {
				t.Fatalf("audit lacks %s: %s", typ, r.body)
			}
		}
	})
}

func httpRequest(t testing.TB, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestIssuerDeletedOnOtherReplica: an issuer registered or deleted through
// one replica is in force on the other.
func TestIssuerDeletedOnOtherReplica(t *testing.T) {
	r := twoReplicas(t)
	r[0].createTenant(t, map[string]any{"id": "acme"})
	idp := authtest.NewIssuer(t, "https://login.example")
	reg := r[0].registerIssuer(t, "acme", idp, "acme-app", http.StatusCreated)
	tok := idp.Token(t, "alice", "acme-app", time.Hour, nil)
	status := func() int { return r[1].do(t, "GET", "/v1/models", tok, nil, nil).status }
	if took, ok := within(t, 5*time.Second, func() bool { return status() == http.StatusOK }); !ok {
		t.Fatalf("issuer registered on replica 1 not in force on replica 2 after %v", took)
	}
	r[0].admin(t, "DELETE", "/admin/v1/tenants/acme/issuers/"+reg, nil, http.StatusNoContent)
	if took, ok := within(t, 5*time.Second, func() bool { return status() == http.StatusUnauthorized }); !ok {
		t.Fatalf("issuer deleted on replica 1 still accepted by replica 2 after %v", took)
	}
}
