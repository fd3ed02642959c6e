// Package auth turns credentials into identity. It is the only package that can
// create a Scope, the value every tenant-data operation requires.
package auth

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/bulkhead-ai/bulkhead/internal/kind"
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
	// fromToken marks a Scope whose end user was proven by a signed
	// end-user token: nothing in the request can change that user.
	fromToken bool
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

// FromToken reports whether the end user was proven by a signed end-user
// token rather than named by the tenant's backend.
func (s Scope) FromToken() bool { return s.fromToken }

// WithUser returns a copy of s acting for end user u of the same tenant. The
// tenant's backend is trusted to name its own end users; it cannot change the
// tenant. On a Scope from an end-user token it returns s unchanged: the
// token's subject is the user, and nothing else may replace it.
func (s Scope) WithUser(u tenant.UserID) Scope {
	if s.fromToken {
		return s
	}
	s.user = u
	return s
}

// ForUser is WithUser for a user named by the request (a body's "user", a
// query's ?user=). A Scope from an end-user token refuses any user other than
// its subject with an invalid-request error, rather than quietly acting for
// someone the caller did not ask for; the empty name means the subject.
func (s Scope) ForUser(u tenant.UserID) (Scope, error) {
	if s.fromToken && u != "" && u != s.user {
		return Scope{}, fmt.Errorf("%w: user: the end user is set by the bearer token and cannot be changed", kind.Invalid)
	}
	return s.WithUser(u), nil
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
