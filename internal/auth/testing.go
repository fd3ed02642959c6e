package auth

import (
	"testing"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// TestScope returns a Scope for tenant id and end user user. It is the only way
// outside this package to get a Scope without authenticating, and it exists for
// tests alone: production code must never call it, and a test that walks the
// source tree enforces that.
func TestScope(tb testing.TB, id tenant.ID, user tenant.UserID) Scope {
	tb.Helper()
	return Scope{tenant: id, inc: tenant.Incarnation(id), user: user}
}

// TestScopeIn is TestScope for a given incarnation of a tenant, for tests of
// what happens across a delete and re-create. Like TestScope it is for tests
// alone.
func TestScopeIn(tb testing.TB, inc tenant.Incarnation, user tenant.UserID) Scope {
	tb.Helper()
	return Scope{tenant: inc.Tenant(), inc: inc, user: user}
}
