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
	return Scope{tenant: id, user: user}
}
