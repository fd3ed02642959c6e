// Package auth turns credentials into identity. It is the only package that can
// create a Scope, the value every tenant-data operation requires.
package auth

import (
	"context"
	"log/slog"

	"github.com/bulkhead-ai/bulkhead/internal/tenant"
)

// Scope is the authenticated identity of a request: the tenant, taken from its
// credential, and the end user inside that tenant. Its fields are unexported so
// that no other package can build one; the zero Scope is invalid and every
// store refuses it.
type Scope struct {
	tenant tenant.ID
	// inc is the incarnation of the tenant the credential was checked
	// against: stores refuse the Scope once it is no longer the tenant's
	// current one, so a request authenticated before a delete and re-create
	// cannot touch the new tenant.
	inc  tenant.Incarnation
	user tenant.UserID
	key  tenant.KeyID // the API key that authenticated, empty for the operator
}

// Tenant returns the tenant the credential belongs to.
func (s Scope) Tenant() tenant.ID { return s.tenant }

// Incarnation returns the life of the tenant the credential was checked
// against. Every piece of per-tenant state is keyed by it.
func (s Scope) Incarnation() tenant.Incarnation { return s.inc }

// Key returns the id of the API key that authenticated the request; it is
// empty for the operator's Scopes.
func (s Scope) Key() tenant.KeyID { return s.key }

// User returns the end user inside the tenant.
func (s Scope) User() tenant.UserID { return s.user }

// Valid reports whether s was made by authentication.
func (s Scope) Valid() bool { return s.tenant != "" }

// WithUser returns a copy of s acting for end user u of the same tenant. The
// tenant's backend is trusted to name its own end users; it cannot change the
// tenant.
func (s Scope) WithUser(u tenant.UserID) Scope {
	s.user = u
	return s
}

// LogValue prints the tenant only; end-user ids can be personal data.
func (s Scope) LogValue() slog.Value {
	return slog.StringValue(string(s.tenant))
}

type scopeKey struct{}

// withScope is unexported: only this package's middleware stores a Scope.
func withScope(ctx context.Context, s Scope) context.Context {
	return context.WithValue(ctx, scopeKey{}, s)
}

// FromContext returns the Scope that authentication put in ctx.
func FromContext(ctx context.Context) (Scope, bool) {
	s, ok := ctx.Value(scopeKey{}).(Scope)
	return s, ok && s.Valid()
}
