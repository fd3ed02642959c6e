// Package authtest gives tests a Scope the way production gets one: by
// authenticating a request. There is no other way to make a Scope outside
// package auth, so tests exercise the same path as requests do.
package authtest

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/auth"
	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// adminToken only satisfies auth.New; nothing here uses the admin API.
const adminToken = "authtest-admin-token-unused"

// oneKey is a key store holding a single active key.
type oneKey struct {
	id  tenant.KeyID
	rec auth.KeyRecord
}

func (k oneKey) KeyRecord(id tenant.KeyID) (auth.KeyRecord, bool) {
	if id != k.id {
		return auth.KeyRecord{}, false
	}
	return k.rec, true
}

// Scope returns the Scope of a request authenticated with a fresh key of
// tenant id, acting for end user user. It fails the test if authentication
// refuses it (an invalid tenant id, say).
func Scope(tb testing.TB, id tenant.ID, user tenant.UserID) auth.Scope {
	tb.Helper()
	return ScopeIn(tb, tenant.Incarnation(id), user)
}

// ScopeIn is Scope for a given incarnation of a tenant, for tests of what
// happens across a delete and re-create.
func ScopeIn(tb testing.TB, inc tenant.Incarnation, user tenant.UserID) auth.Scope {
	tb.Helper()
	id := inc.Tenant()
	keyID, secret, hash, err := auth.NewKey()
	if err != nil {
		tb.Fatalf("authtest: new key: %v", err)
	}
	a, err := auth.New(oneKey{id: keyID, rec: auth.KeyRecord{Tenant: id, Incarnation: inc, Hash: hash, Status: tenant.StatusActive}}, adminToken)
	if err != nil {
		tb.Fatalf("authtest: %v", err)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+secret.Reveal())
	scope, err := a.Tenant(r)
	if err != nil {
		tb.Fatalf("authtest: authenticate a key of tenant %q: %v", id, err)
	}
	return scope.WithUser(user)
}
