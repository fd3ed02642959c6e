package auth_test

import (
	"errors"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/kind"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

func TestConsoleSignInAndSession(t *testing.T) {
	id, secret, hash, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	inc := tenant.NewIncarnation("acme", "0a")
	keys := keyMap{id: {Tenant: "acme", Incarnation: inc, Hash: hash, Status: tenant.StatusActive}}
	a, err := auth.New(keys, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	codec := a.ConsoleSessions()

	op, err := a.SignIn(adminToken)
	if err != nil || !op.Operator || op.Tenant != "" {
		t.Fatalf("SignIn(admin token) = %+v, %v; want an operator session", op, err)
	}
	opCookie, _ := codec.Seal(op)
	ctx, _, err := a.Session(t.Context(), opCookie)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.AdminScope(ctx, inc); err != nil {
		t.Errorf("an operator session cannot act as the operator: %v", err)
	}
	if _, ok := auth.FromContext(ctx); ok {
		t.Error("an operator session carries a tenant Scope")
	}

	ts, err := a.SignIn(secret.Reveal())
	if err != nil || ts.Operator || ts.Tenant != "acme" || ts.Key != id || ts.Incarnation != inc {
		t.Fatalf("SignIn(key) = %+v, %v; want acme's session", ts, err)
	}
	tCookie, _ := codec.Seal(ts)
	ctx, _, err = a.Session(t.Context(), tCookie)
	if err != nil {
		t.Fatal(err)
	}
	if scope, ok := auth.FromContext(ctx); !ok || scope.Tenant() != "acme" || scope.Key() != id {
		t.Errorf("tenant session scope = %+v, %v", scope, ok)
	}
	if _, err := auth.AdminScope(ctx, inc); err == nil {
		t.Error("a tenant session can act as the operator")
	}

	for _, bad := range []string{"", "admin-token-for-test", "bk_nope"} {
		if _, err := a.SignIn(bad); !errors.Is(err, kind.Unauthenticated) {
			t.Errorf("SignIn(%q) = %v, want unauthenticated", bad, err)
		}
	}

	// The key's current record decides, on every request.
	for name, change := range map[string]func(){
		"suspended": func() { r := keys[id]; r.Status = tenant.StatusSuspended; keys[id] = r },
		"recreated": func() { r := keys[id]; r.Incarnation = tenant.NewIncarnation("acme", "0b"); keys[id] = r },
		"revoked":   func() { delete(keys, id) },
	} {
		saved, had := keys[id]
		change()
		if _, _, err := a.Session(t.Context(), tCookie); err == nil {
			t.Errorf("%s: the session still works", name)
		}
		if had {
			keys[id] = saved
		}
	}
	if _, _, err := a.Session(t.Context(), "forged.cookie"); !errors.Is(err, kind.Unauthenticated) {
		t.Errorf("forged cookie: %v, want unauthenticated", err)
	}
}
