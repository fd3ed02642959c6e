package auth_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

type keyMap map[tenant.KeyID]auth.KeyRecord

func (m keyMap) KeyRecord(id tenant.KeyID) (auth.KeyRecord, bool) {
	r, ok := m[id]
	return r, ok
}

const adminToken = "admin-token-for-tests"

// fixture has an active key for acme, one for suspended globex, and a key
// that was issued but never stored (as if revoked).
func fixture(t *testing.T) (*auth.Authenticator, map[string]string) {
	t.Helper()
	keys := keyMap{}
	tokens := map[string]string{}
	for _, k := range []struct {
		name   string
		tenant tenant.ID
		status tenant.Status
		stored bool
	}{
		{"acme", "acme", tenant.StatusActive, true},
		{"globex-suspended", "globex", tenant.StatusSuspended, true},
		{"revoked", "acme", tenant.StatusActive, false},
	} {
		id, secret, hash, err := auth.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if k.stored {
			keys[id] = auth.KeyRecord{Tenant: k.tenant, Incarnation: tenant.NewIncarnation(k.tenant, "0a"), Hash: hash, Status: k.status}
		}
		tokens[k.name] = secret.Reveal()
	}
	a, err := auth.New(keys, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	return a, tokens
}

func TestTenant(t *testing.T) {
	a, tokens := fixture(t)
	acme := tokens["acme"]
	// A key with acme's id but a different secret must not pass.
	forged := acme[:len(acme)-4] + "AAAA"
	if forged == acme {
		forged = acme[:len(acme)-4] + "BBBB"
	}
	tests := []struct {
		name       string
		header     string
		extra      map[string]string
		wantTenant tenant.ID
		wantErr    error
	}{
		{"valid key", "Bearer " + acme, nil, "acme", nil},
		{"tenant header ignored", "Bearer " + acme, map[string]string{"X-Tenant-Id": "globex"}, "acme", nil},
		{"missing header", "", nil, "", kind.Unauthenticated},
		{"not bearer", "Basic " + acme, nil, "", kind.Unauthenticated},
		{"malformed", "Bearer bk_nothex", nil, "", kind.Unauthenticated},
		{"admin token as tenant key", "Bearer " + adminToken, nil, "", kind.Unauthenticated},
		{"forged secret", "Bearer " + forged, nil, "", kind.Unauthenticated},
		{"revoked", "Bearer " + tokens["revoked"], nil, "", kind.Unauthenticated},
		{"suspended tenant", "Bearer " + tokens["globex-suspended"], nil, "", kind.Denied},
		{"api-key header", "", map[string]string{"api-key": acme}, "acme", nil},
		{"x-api-key header", "", map[string]string{"x-api-key": acme}, "acme", nil},
		{"all three agree", "Bearer " + acme, map[string]string{"api-key": acme, "x-api-key": acme}, "acme", nil},
		{"empty api-key beside bearer", "Bearer " + acme, map[string]string{"api-key": ""}, "acme", nil},
		{"bearer and api-key differ", "Bearer " + acme, map[string]string{"api-key": tokens["globex-suspended"]}, "", kind.Unauthenticated},
		{"api-key and x-api-key differ", "", map[string]string{"api-key": acme, "x-api-key": forged}, "", kind.Unauthenticated},
		{"forged bearer, good api-key", "Bearer " + forged, map[string]string{"x-api-key": acme}, "", kind.Unauthenticated},
		{"not bearer beside api-key", "Basic " + acme, map[string]string{"api-key": acme}, "", kind.Unauthenticated},
		{"api-key carries the admin token", "", map[string]string{"api-key": adminToken}, "", kind.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/models?tenant=globex", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			for k, v := range tt.extra {
				r.Header.Set(k, v)
			}
			scope, err := a.Tenant(r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if scope.Tenant() != tt.wantTenant {
				t.Fatalf("tenant = %q, want %q", scope.Tenant(), tt.wantTenant)
			}
			if tt.wantErr != nil && scope.Valid() {
				t.Fatal("a failed authentication returned a valid Scope")
			}
		})
	}
}

func TestMiddleware(t *testing.T) {
	a, tokens := fixture(t)
	var gotScope auth.Scope
	var reached bool
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = true
		gotScope, _ = auth.FromContext(r.Context())
	})
	var failed error
	fail := func(w http.ResponseWriter, r *http.Request, err error) {
		failed = err
		w.WriteHeader(http.StatusUnauthorized)
	}
	tenantH := a.RequireTenant(fail)(next)
	adminH := a.RequireAdmin(fail)(next)

	tests := []struct {
		name        string
		h           http.Handler
		token       string
		wantReached bool
		wantTenant  tenant.ID
	}{
		{"tenant key on tenant api", tenantH, tokens["acme"], true, "acme"},
		{"admin token on tenant api", tenantH, adminToken, false, ""},
		{"admin token on admin api", adminH, adminToken, true, ""},
		{"tenant key on admin api", adminH, tokens["acme"], false, ""},
		{"no token on admin api", adminH, "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reached, failed, gotScope = false, nil, auth.Scope{}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.token != "" {
				r.Header.Set("Authorization", "Bearer "+tt.token)
			}
			tt.h.ServeHTTP(httptest.NewRecorder(), r)
			if reached != tt.wantReached {
				t.Fatalf("handler reached = %v, want %v (fail: %v)", reached, tt.wantReached, failed)
			}
			if gotScope.Tenant() != tt.wantTenant {
				t.Fatalf("scope tenant = %q, want %q", gotScope.Tenant(), tt.wantTenant)
			}
		})
	}
}

func TestAdminScope(t *testing.T) {
	a, tokens := fixture(t)
	var got auth.Scope
	var gotErr error
	h := a.RequireAdmin(func(w http.ResponseWriter, r *http.Request, err error) {})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, gotErr = auth.AdminScope(r.Context(), "globex")
	}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+adminToken)
	h.ServeHTTP(httptest.NewRecorder(), r)
	if gotErr != nil || got.Tenant() != "globex" {
		t.Fatalf("AdminScope behind RequireAdmin = %q, %v; want globex", got.Tenant(), gotErr)
	}

	// A tenant-authenticated context, or a bare one, gets no admin scope.
	tenantH := a.RequireTenant(func(w http.ResponseWriter, r *http.Request, err error) {})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, gotErr = auth.AdminScope(r.Context(), "globex")
	}))
	r = httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+tokens["acme"])
	tenantH.ServeHTTP(httptest.NewRecorder(), r)
	if !errors.Is(gotErr, kind.Unauthenticated) || got.Valid() {
		t.Fatalf("AdminScope with a tenant key = %v, %v; want Unauthenticated", got, gotErr)
	}
	if s, err := auth.AdminScope(r.Context(), "globex"); err == nil || s.Valid() {
		t.Fatal("AdminScope from a bare context succeeded")
	}
}

func TestNewRefusesWeakAdminToken(t *testing.T) {
	if _, err := auth.New(keyMap{}, ""); err == nil {
		t.Fatal("auth.New accepted an empty admin token")
	}
}

func TestFromContextWithoutScope(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if _, ok := auth.FromContext(r.Context()); ok {
		t.Fatal("FromContext found a scope in a bare context")
	}
}

// BenchmarkTenant measures key verification and Scope creation per request.
func BenchmarkTenant(b *testing.B) {
	keys := keyMap{}
	var token string
	for i := range 10_000 {
		id, secret, hash, err := auth.NewKey()
		if err != nil {
			b.Fatal(err)
		}
		keys[id] = auth.KeyRecord{Tenant: "acme", Incarnation: tenant.NewIncarnation("acme", "0a"), Hash: hash, Status: tenant.StatusActive}
		if i == 0 {
			token = secret.Reveal()
		}
	}
	a, err := auth.New(keys, adminToken)
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Tenant(r); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRefusedTenantAndOperator(t *testing.T) {
	a, tokens := fixture(t)
	acme := tokens["acme"]
	for name, tc := range map[string]struct {
		token string
		want  tenant.ID
		ok    bool
	}{
		"wrong secret of acme's key": {acme[:len(acme)-4] + "ZZZZ", "acme", true},
		"suspended globex":           {tokens["globex-suspended"], "globex", true},
		"unknown key":                {tokens["revoked"], "", false},
	} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Authorization", "Bearer "+tc.token)
			_, err := a.Tenant(r)
			got, ok := auth.RefusedTenant(err)
			if err == nil || got != tc.want || ok != tc.ok {
				t.Fatalf("RefusedTenant = %q, %v (err %v); want %q, %v", got, ok, err, tc.want, tc.ok)
			}
		})
	}
	if _, err := a.OperatorContext(t.Context(), "wrong"); err == nil {
		t.Fatal("OperatorContext accepted a wrong token")
	}
	ctx, err := a.OperatorContext(t.Context(), adminToken)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := auth.AdminScope(ctx, "acme"); err != nil || s.Tenant() != "acme" {
		t.Fatalf("AdminScope with the operator context = %v, %v", s, err)
	}
}
